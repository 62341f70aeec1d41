// The synthetic embryos: an ellipse cut into Voronoi cells, membranes on the cell walls and the
// outline (channel A), a nucleus clear of the walls inside each cell (channel B), then a
// microscope's blur, background, shot and read noise. Deterministic from (seed, index).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

#define MAX_CELLS 64

synth_config synth_defaults(void) {
    return (synth_config){.min_cells = 2,
                          .max_cells = 50,
                          .supersample = 3,
                          .psf_sigma = 0.7,
                          .photons = 300,
                          .read_noise = 0.02};
}

typedef struct {
    double cx, cy, ra, rb, cos_t, sin_t;
    int n;
    double sx[MAX_CELLS], sy[MAX_CELLS];
    double nucleus_r[MAX_CELLS]; // 0: none in this focal plane
    double nucleus_gain[MAX_CELLS], membrane_gain[MAX_CELLS];
} embryo;

// Ellipse coordinate: < 1 inside. Distance to the outline, approximately, in pixels.
static double ellipse_e(const embryo *e, double x, double y) {
    double dx = x - e->cx, dy = y - e->cy;
    double u = (dx * e->cos_t + dy * e->sin_t) / e->ra,
           v = (-dx * e->sin_t + dy * e->cos_t) / e->rb;
    return u * u + v * v;
}
static double outline_dist(const embryo *e, double x, double y) {
    return fabs(sqrt(ellipse_e(e, x, y)) - 1) * e->rb;
}

static void nearest_two(const embryo *e, const int *cand, int n_cand, double x, double y, int *i1,
                        double *d1, double *d2) {
    *d1 = *d2 = INFINITY;
    *i1 = 0;
    for (int k = 0; k < n_cand; k++) {
        int i = cand[k];
        double d = hypot(x - e->sx[i], y - e->sy[i]);
        if (d < *d1) {
            *d2 = *d1;
            *d1 = d;
            *i1 = i;
        } else if (d < *d2)
            *d2 = d;
    }
}

// The cells that can be nearest or second nearest anywhere within `reach` of (x, y), in index
// order: by the triangle inequality a point that far off sees every cell's distance change by at
// most `reach`, so only cells within the centre's second-nearest distance + 2 reach qualify.
// nearest_two over them gives what it gives over every cell, ties included.
static int candidates(const embryo *e, double x, double y, double reach, int *cand) {
    double d[MAX_CELLS], d1 = INFINITY, d2 = INFINITY;
    for (int i = 0; i < e->n; i++) {
        d[i] = hypot(x - e->sx[i], y - e->sy[i]);
        if (d[i] < d1) {
            d2 = d1;
            d1 = d[i];
        } else if (d[i] < d2)
            d2 = d[i];
    }
    int n = 0;
    for (int i = 0; i < e->n; i++)
        if (d[i] <= d2 + 2 * reach + 1e-9) cand[n++] = i;
    return n;
}

static void make_embryo(rng *r, const synth_config *c, embryo *e) {
    double u[8];
    rng_fill_uniform(r, u, 8, 0, 1);
    e->cx = 32 + (u[0] - 0.5) * 8;
    e->cy = 32 + (u[1] - 0.5) * 8;
    e->ra = 19 + 8 * u[2];
    e->rb = e->ra * (0.62 + 0.23 * u[3]);
    e->cos_t = cos(M_PI * u[4]);
    e->sin_t = sin(M_PI * u[4]);
    int lo = c->min_cells, hi = c->max_cells > MAX_CELLS ? MAX_CELLS : c->max_cells;
    int target = (int)lround(exp(log(lo) + (log(hi) - log(lo)) * u[5]));
    // seeds inside the shrunk ellipse, kept apart (Poisson-disc by rejection)
    double area = M_PI * e->ra * e->rb, min_d = 0.55 * sqrt(area / target);
    e->n = 0;
    for (int attempt = 0; attempt < 4000 && e->n < target; attempt++) {
        double p[2];
        rng_fill_uniform(r, p, 2, -1, 1);
        double x = e->cx + e->ra * p[0], y = e->cy + e->ra * p[1];
        if (ellipse_e(e, x, y) > 0.72) continue;
        bool ok = true;
        for (int i = 0; i < e->n && ok; i++) ok = hypot(x - e->sx[i], y - e->sy[i]) >= min_d;
        if (!ok) continue;
        e->sx[e->n] = x;
        e->sy[e->n] = y;
        e->n++;
    }
    for (int i = 0; i < e->n; i++) {
        double nn = INFINITY;
        for (int j = 0; j < e->n; j++)
            if (j != i) nn = fmin(nn, hypot(e->sx[i] - e->sx[j], e->sy[i] - e->sy[j]));
        if (e->n == 1) nn = 2 * e->rb;
        // clear of every wall: the wall is at least nn/2 away, the outline outline_dist away
        double room = fmin(nn / 2, outline_dist(e, e->sx[i], e->sy[i]));
        double rad = fmin(0.55 * room, room - 1.2);
        double v[3];
        rng_fill_uniform(r, v, 3, 0, 1);
        e->nucleus_r[i] = rad >= 0.7 && v[0] > 0.15 ? rad : 0; // some out of the focal plane
        e->nucleus_gain[i] = 0.35 + 0.65 * v[1];
        e->membrane_gain[i] = 0.7 + 0.3 * v[2];
    }
}

static double soft(double d, double width) { return exp(-d * d / (2 * width * width)); }

// The point-spread blur: a 9-tap Gaussian (the image module's, reflect-101 borders).
static void psf_blur(float *img, double sigma) {
    image im = {.w = BANIS_SIDE, .h = BANIS_SIDE, .c = 1, .data = img};
    image *out = image_gaussian_blur(&im, 9, sigma);
    if (!out) return; // out of memory: the image stays sharp rather than the run failing
    memcpy(img, out->data, sizeof(float) * BANIS_PIXELS);
    image_free(out);
}

static void microscope(float *img, rng *r, const synth_config *c, double background) {
    psf_blur(img, c->psf_sigma);
    double noise[2 * BANIS_PIXELS];
    rng_fill_normal(r, noise, 2 * BANIS_PIXELS, 0, 1);
    for (int i = 0; i < BANIS_PIXELS; i++) {
        double s = background + (1 - background) * img[i];
        double photons = s * c->photons;
        s = (photons + sqrt(photons) * noise[i]) / c->photons +
            c->read_noise * noise[BANIS_PIXELS + i];
        s = s < 0 ? 0 : s > 1 ? 1 : s;
        img[i] = (float)(2 * s - 1);
    }
}

void synth_pair(const synth_config *c, uint64_t seed, int index, float *a, float *b,
                int16_t *labels, uint8_t *membrane, uint8_t *nuclei) {
    rng r = {.seed = seed, .offset = (uint64_t)index << 24}; // 16M draws per pair
    embryo e;
    make_embryo(&r, c, &e);
    const double wall = 0.45; // membrane half-width, 64-scale pixels
    int ss = c->supersample < 1 ? 1 : c->supersample;
    float ma[BANIS_PIXELS] = {0}, nb[BANIS_PIXELS] = {0};
    for (int y = 0; y < BANIS_SIDE; y++)
        for (int x = 0; x < BANIS_SIDE; x++) {
            double am = 0, bn = 0;
            int cand[MAX_CELLS]; // sub-samples lie within 0.5 sqrt(2) of the pixel's centre
            int n_cand = candidates(&e, x + 0.5, y + 0.5, 0.7072, cand);
            for (int sy = 0; sy < ss; sy++)
                for (int sx = 0; sx < ss; sx++) {
                    double px = x + (sx + 0.5) / ss, py = y + (sy + 0.5) / ss;
                    double ee = ellipse_e(&e, px, py), od = outline_dist(&e, px, py);
                    double m = soft(od, wall);
                    if (ee < 1 && e.n > 0) {
                        int i;
                        double d1, d2;
                        nearest_two(&e, cand, n_cand, px, py, &i, &d1, &d2);
                        if (e.n > 1) m = fmax(m, e.membrane_gain[i] * soft((d2 - d1) / 2, wall));
                        if (e.nucleus_r[i] > 0)
                            bn += e.nucleus_gain[i] / (1 + exp((d1 - e.nucleus_r[i]) / 0.35));
                    }
                    am += m;
                }
            ma[y * BANIS_SIDE + x] = (float)(am / (ss * ss));
            nb[y * BANIS_SIDE + x] = (float)(bn / (ss * ss));
            // ground truth at the pixel centre
            double px = x + 0.5, py = y + 0.5;
            double ee = ellipse_e(&e, px, py), od = outline_dist(&e, px, py);
            int i = 0;
            double d1 = INFINITY, d2 = INFINITY;
            if (e.n) nearest_two(&e, cand, n_cand, px, py, &i, &d1, &d2);
            bool inside = ee < 1 && e.n > 0;
            bool on_wall = od < 0.75 || (inside && e.n > 1 && (d2 - d1) / 2 < 0.75);
            if (labels) labels[y * BANIS_SIDE + x] = (int16_t)(inside ? i + 1 : 0);
            if (membrane) membrane[y * BANIS_SIDE + x] = on_wall;
            if (nuclei)
                nuclei[y * BANIS_SIDE + x] = inside && e.nucleus_r[i] > 0 && d1 < e.nucleus_r[i];
        }
    double bg[2];
    rng_fill_uniform(&r, bg, 2, 0.03, 0.12);
    if (a) {
        memcpy(a, ma, sizeof ma);
        microscope(a, &r, c, bg[0]);
    }
    if (b) {
        memcpy(b, nb, sizeof nb);
        microscope(b, &r, c, bg[1]);
    }
}

banis_dataset *banis_synthetic(const synth_config *c, int n, uint64_t seed) {
    banis_dataset *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n = n;
    size_t px = (size_t)n * BANIS_PIXELS;
    d->a = malloc(px * sizeof *d->a);
    d->b = malloc(px * sizeof *d->b);
    d->labels = malloc(px * sizeof *d->labels);
    d->membrane = malloc(px);
    d->nuclei = malloc(px);
    if (!d->a || !d->b || !d->labels || !d->membrane || !d->nuclei) {
        banis_dataset_free(d);
        return NULL;
    }
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < n; i++) {
        size_t o = (size_t)i * BANIS_PIXELS;
        synth_pair(c, seed, i, d->a + o, d->b + o, d->labels + o, d->membrane + o, d->nuclei + o);
    }
    snprintf(d->source, sizeof d->source, "synthetic embryos (seed %llu, %d pairs)",
             (unsigned long long)seed, n);
    return d;
}
