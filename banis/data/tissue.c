// Synthetic tissue (dataset.h): a field filled with cells, the kind of image that needs tiling.
// Cells are the Voronoi regions of jittered grid points that drift from slice to slice; a few
// round lumens hold no cells (their rims are membrane); each cell has an ellipsoidal nucleus
// seen in the slices its z-extent crosses; a third channel stains the cytoplasm. Blurred by a
// point-spread function, with shot and read noise, in 16-bit camera counts.
#include <math.h>
#include <stdlib.h>

#include "../../tensor/error.h"
#include "dataset.h"

tissue_config tissue_defaults(void) {
    return (tissue_config){.size = 512, .slices = 16, .cell_px = 16, .nucleus_px = 5, .lumens = 3};
}

typedef struct {
    int n, cols;
    double *x, *y, *vx, *vy; // seed and its drift per slice
    double *nx, *ny, *nz;    // nucleus offset from the seed, and its z centre (slices)
    double *gain;
    double lx[8], ly[8], lr[8]; // lumens
    int lumens;
} tissue;

static double uniform(const rng *r, uint64_t index) {
    uint32_t w[4];
    rng_block(r, index, 0, w);
    return rng_u01(w[0], w[1]);
}

static int tissue_make(tissue *t, const tissue_config *c, const rng *r) {
    t->cols = (int)ceil(c->size / c->cell_px) + 2;
    t->n = t->cols * t->cols;
    double *all = calloc((size_t)t->n * 8, sizeof(double));
    if (!all) return -1;
    double **f[8] = {&t->x, &t->y, &t->vx, &t->vy, &t->nx, &t->ny, &t->nz, &t->gain};
    for (int k = 0; k < 8; k++) *f[k] = all + (size_t)k * (size_t)t->n;
    uint64_t u = 0;
    for (int i = 0; i < t->n; i++) {
        int gx = i % t->cols - 1, gy = i / t->cols - 1;
        t->x[i] = (gx + 0.5 + 0.7 * (uniform(r, u++) - 0.5)) * c->cell_px;
        t->y[i] = (gy + 0.5 + 0.7 * (uniform(r, u++) - 0.5)) * c->cell_px;
        t->vx[i] = 0.3 * (uniform(r, u++) - 0.5);
        t->vy[i] = 0.3 * (uniform(r, u++) - 0.5);
        t->nx[i] = 0.15 * c->cell_px * (uniform(r, u++) - 0.5);
        t->ny[i] = 0.15 * c->cell_px * (uniform(r, u++) - 0.5);
        t->nz[i] = -2 + (c->slices + 4) * uniform(r, u++);
        t->gain[i] = 0.6 + 0.4 * uniform(r, u++);
    }
    t->lumens = c->lumens < 8 ? c->lumens : 8;
    for (int k = 0; k < t->lumens; k++) {
        t->lx[k] = c->size * (0.15 + 0.7 * uniform(r, u++));
        t->ly[k] = c->size * (0.15 + 0.7 * uniform(r, u++));
        t->lr[k] = c->size * (0.05 + 0.05 * uniform(r, u++));
    }
    return 0;
}

// The noiseless channels of pixel (x, y) of slice z: membrane, nuclei, cytoplasm in [0, 1].
static void tissue_pixel(const tissue *t, const tissue_config *c, double x, double y, int z,
                         double out[3]) {
    out[0] = out[1] = out[2] = 0;
    double rim = INFINITY; // signed distance to the nearest lumen's edge (< 0 inside)
    for (int k = 0; k < t->lumens; k++)
        rim = fmin(rim, hypot(x - t->lx[k], y - t->ly[k]) - t->lr[k]);
    if (rim < -1.5) return;
    int gx = (int)floor(x / c->cell_px) + 1, gy = (int)floor(y / c->cell_px) + 1;
    double d1 = INFINITY, d2 = INFINITY;
    int best = -1;
    for (int j = gy - 2; j <= gy + 2; j++)
        for (int i = gx - 2; i <= gx + 2; i++) {
            if (i < 0 || j < 0 || i >= t->cols || j >= t->cols) continue;
            int s = j * t->cols + i;
            double d = hypot(x - (t->x[s] + t->vx[s] * z), y - (t->y[s] + t->vy[s] * z));
            if (d < d1) {
                d2 = d1;
                d1 = d;
                best = s;
            } else if (d < d2)
                d2 = d;
        }
    double wall = fmin((d2 - d1) / 2, fabs(rim)); // distance to the nearest membrane
    out[0] = t->gain[best] * exp(-wall * wall / (2 * 0.7 * 0.7));
    if (rim < 0) return;
    out[2] = 0.25 + 0.1 * t->gain[best];
    double cx = t->x[best] + t->vx[best] * z + t->nx[best],
           cy = t->y[best] + t->vy[best] * z + t->ny[best], dz = (z - t->nz[best]) / 2.5;
    if (fabs(dz) < 1) {
        double r = c->nucleus_px / 2 * sqrt(1 - dz * dz);
        out[1] = t->gain[best] / (1 + exp((hypot(x - cx, y - cy) - r) / 0.4));
    }
}

image **tissue_stack(const tissue_config *c, uint64_t seed) {
    rng r;
    rng_init(&r, seed);
    tissue t;
    if (tissue_make(&t, c, &r)) return NULL;
    int n = 3 * c->slices;
    image **pages = calloc((size_t)n, sizeof *pages);
    bool ok = pages != NULL;
    for (int p = 0; p < n && ok; p++) ok = (pages[p] = image_new(c->size, c->size, 1)) != NULL;
    for (int z = 0; z < c->slices && ok; z++) {
        for (int y = 0; y < c->size; y++)
            for (int x = 0; x < c->size; x++) {
                double v[3];
                tissue_pixel(&t, c, x, y, z, v);
                for (int ch = 0; ch < 3; ch++) *image_at(pages[3 * z + ch], x, y) = (float)v[ch];
            }
        for (int ch = 0; ch < 3 && ok; ch++) {
            image *psf = image_gaussian_blur(pages[3 * z + ch], 7, 1.0);
            if (!(ok = psf != NULL)) break;
            const double photons = 400, counts = 3000.0 / photons, offset = 100;
            for (size_t i = 0; i < (size_t)c->size * (size_t)c->size; i++) {
                uint32_t shot[4], read[4];
                rng_block(&r, ((uint64_t)(3 * z + ch) << 32) + i, 1, shot);
                rng_block(&r, ((uint64_t)(3 * z + ch) << 32) + i, 2, read);
                double lambda = psf->data[i] * photons;
                double v = offset + counts * (lambda + sqrt(lambda) * rng_box_muller(shot)) +
                           8 * rng_box_muller(read);
                pages[3 * z + ch]->data[i] = (float)(v < 0 ? 0 : v);
            }
            image_free(psf);
        }
    }
    free(t.x);
    if (!ok) {
        for (int p = 0; pages && p < n; p++) image_free(pages[p]);
        free(pages);
        err_set("synthetic tissue: out of host memory");
        return NULL;
    }
    return pages;
}
