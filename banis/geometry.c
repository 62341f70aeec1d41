// The geometry of pairs without ground truth (geometry.h).
//
// Why this segmentation: a membrane image is bright walls on a dark cytoplasm and a dark
// background, so one threshold separates walls from the rest, and Otsu's picks it from each
// image's own histogram (the data are normalised per image, generated images have no fixed
// scale). The smoothing (sigma 0.5 px) keeps shot noise from breaking walls one pixel wide into
// dots, which would join neighbouring cells. The cells are then what the walls enclose: the
// non-wall regions cut off from the border by the embryo's outline, which is itself a wall; the
// background outside the embryo touches the border. No watershed: it would invent a wall
// through every gap, and a gap in a generated membrane is a fault the score should see (two
// cells counted as one). The nuclei are blobs on a dark ground: the same threshold rule.
#include "geometry.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"

const char *const geometry_feature_names[GEOM_FEATURES] = {
    "cells",  "cell area",    "cell area CV",    "wall thickness",
    "nuclei", "nucleus area", "nuclei per cell", "nucleus signal inside cells"};

// A 64x64 image in [-1, 1] as [0, 1], smoothed; its Otsu threshold, the foreground mask, and the
// background level (the mean below the threshold). false: no foreground (too little contrast).
static bool foreground(const float *x, float *v, uint8_t *mask, double *background) {
    image im = {.w = BANIS_SIDE, .h = BANIS_SIDE, .c = 1, .data = v};
    for (int p = 0; p < BANIS_PIXELS; p++) v[p] = fmaxf(0.0f, fminf(1.0f, (x[p] + 1) / 2));
    image *s = image_gaussian_blur(&im, 5, GEOM_SMOOTH);
    if (!s) return false;
    memcpy(v, s->data, sizeof(float) * BANIS_PIXELS);
    image_free(s);
    float t = prepare_otsu(&im);
    double hi = 0, lo = 0;
    int n_hi = 0;
    for (int p = 0; p < BANIS_PIXELS; p++) {
        mask[p] = v[p] > t;
        n_hi += mask[p];
        if (mask[p])
            hi += v[p];
        else
            lo += v[p];
    }
    int n_lo = BANIS_PIXELS - n_hi;
    *background = n_lo ? lo / n_lo : 0;
    bool any = n_hi && n_lo && hi / n_hi - lo / n_lo >= GEOM_MIN_CONTRAST;
    if (!any) memset(mask, 0, BANIS_PIXELS);
    return any;
}

int geometry_measure(const float *a, const float *b, geometry_pair *out, geometry_seg *seg_out) {
    geometry_seg *g = seg_out ? seg_out : malloc(sizeof *g);
    int32_t *lab = malloc(sizeof(int32_t) * BANIS_PIXELS);
    if (!g || !lab) {
        if (!seg_out) free(g);
        free(lab);
        err_set("geometry: out of memory");
        return -1;
    }
    memset(out, 0, sizeof *out);
    float va[BANIS_PIXELS], vb[BANIS_PIXELS];
    uint8_t open[BANIS_PIXELS], mask_b[BANIS_PIXELS];
    double bg_a, bg_b;
    int rc = 0;
    // walls, and the cells they enclose
    foreground(a, va, g->wall, &bg_a);
    for (int p = 0; p < BANIS_PIXELS; p++) open[p] = !g->wall[p];
    int regions = image_label_regions(open, BANIS_SIDE, BANIS_SIDE, false, lab);
    int *area = regions >= 0 ? calloc((size_t)regions + 1, sizeof *area) : NULL;
    int *renum = area ? calloc((size_t)regions + 1, sizeof *renum) : NULL;
    if (!renum) rc = -1;
    g->cells = g->nuclei = 0;
    if (!rc) {
        for (int p = 0; p < BANIS_PIXELS; p++) area[lab[p]]++;
        for (int y = 0; y < BANIS_SIDE; y++) // regions touching the border: outside the embryo
            for (int x = 0; x < BANIS_SIDE; x++)
                if (!x || !y || x == BANIS_SIDE - 1 || y == BANIS_SIDE - 1)
                    area[lab[y * BANIS_SIDE + x]] = 0;
        for (int r = 1; r <= regions; r++) renum[r] = area[r] >= GEOM_MIN_CELL_PX ? ++g->cells : 0;
        for (int p = 0; p < BANIS_PIXELS; p++) {
            g->cell[p] = lab[p] ? renum[lab[p]] : 0;
            // a hole too small to be a cell is wall; the background outside is neither
            if (lab[p] && area[lab[p]] && !renum[lab[p]]) g->wall[p] = 1;
        }
    }
    // nuclei
    bool any_b = !rc && foreground(b, vb, mask_b, &bg_b);
    int n_regions =
        any_b ? image_label_regions(mask_b, BANIS_SIDE, BANIS_SIDE, false, g->nucleus) : 0;
    if (n_regions < 0) rc = -1;
    int *n_area = !rc ? calloc((size_t)n_regions + 1, sizeof *n_area) : NULL;
    int *in_cell = n_area ? calloc((size_t)g->cells + 1, sizeof *in_cell) : NULL;
    if (!rc && !in_cell) rc = -1;
    if (!rc) {
        if (!any_b) memset(g->nucleus, 0, sizeof g->nucleus);
        for (int p = 0; p < BANIS_PIXELS; p++) n_area[g->nucleus[p]]++;
        int kept = 0;
        double nucleus_area = 0;
        for (int r = 1; r <= n_regions; r++) {
            int keep = n_area[r] >= GEOM_MIN_NUCLEUS_PX;
            if (keep) { // in a cell when most of its pixels lie in one cell
                nucleus_area += n_area[r];
                int most = 0;
                for (int p = 0; p < BANIS_PIXELS; p++)
                    if (g->nucleus[p] == r && g->cell[p] && ++in_cell[g->cell[p]] > most)
                        most = in_cell[g->cell[p]];
                out->nuclei_in_cells += 2 * most > n_area[r];
                for (int p = 0; p < BANIS_PIXELS; p++)
                    if (g->nucleus[p] == r) in_cell[g->cell[p]] = 0;
            }
            n_area[r] = keep ? ++kept : 0; // renumbered
        }
        n_area[0] = 0; // off the nuclei
        for (int p = 0; p < BANIS_PIXELS; p++) g->nucleus[p] = n_area[g->nucleus[p]];
        g->nuclei = kept;
        // the nucleus signal: the smoothed image above its background on the pixels above the
        // threshold (a region too small to count as a nucleus still counts where it is)
        for (int p = 0; p < BANIS_PIXELS && any_b; p++) {
            double s = mask_b[p] ? fmax(0.0, vb[p] - bg_b) : 0;
            out->signal += s;
            if (g->cell[p]) out->signal_inside += s;
            if (g->wall[p]) out->signal_on_walls += s;
        }
        // the features
        double sum = 0, sq = 0;
        int *cell_area = calloc((size_t)g->cells + 1, sizeof *cell_area);
        if (!cell_area) rc = -1;
        for (int p = 0; p < BANIS_PIXELS && !rc; p++) cell_area[g->cell[p]]++;
        for (int c = 1; c <= g->cells && !rc; c++) {
            sum += cell_area[c];
            sq += (double)cell_area[c] * cell_area[c];
        }
        free(cell_area);
        long wall_px = 0, edges = 0;
        for (int y = 0; y < BANIS_SIDE; y++)
            for (int x = 0; x < BANIS_SIDE; x++) {
                int p = y * BANIS_SIDE + x;
                wall_px += g->wall[p];
                if (x + 1 < BANIS_SIDE) edges += g->wall[p] != g->wall[p + 1];
                if (y + 1 < BANIS_SIDE) edges += g->wall[p] != g->wall[p + BANIS_SIDE];
            }
        double mean = g->cells ? sum / g->cells : 0;
        out->f[GF_CELLS] = g->cells;
        out->f[GF_CELL_AREA] = mean;
        out->f[GF_CELL_AREA_CV] =
            g->cells ? sqrt(fmax(0.0, sq / g->cells - mean * mean)) / mean : 0;
        out->f[GF_WALL_THICKNESS] = edges ? 2.0 * (double)wall_px / (double)edges : 0;
        out->f[GF_NUCLEI] = kept;
        out->f[GF_NUCLEUS_AREA] = kept ? nucleus_area / kept : 0;
        out->f[GF_NUCLEI_PER_CELL] = g->cells ? (double)out->nuclei_in_cells / g->cells : 0;
        out->f[GF_INSIDE] = out->signal > 0 ? out->signal_inside / out->signal : 0;
    }
    if (rc) err_set("geometry: out of memory");
    free(in_cell);
    free(n_area);
    free(renum);
    free(area);
    free(lab);
    if (!seg_out) free(g);
    return rc;
}

int geometry_measure_set(const float *a, const float *b, int n, double *f, geometry_summary *s) {
    geometry_summary z = {.pairs = n};
    double signal = 0, inside = 0, walls = 0, sq = 0;
    long cells = 0, in_cells = 0;
    int with_cells = 0, with_nuclei = 0;
    for (int i = 0; i < n; i++) {
        geometry_pair g;
        if (geometry_measure(a + (size_t)i * BANIS_PIXELS, b + (size_t)i * BANIS_PIXELS, &g, NULL))
            return -1;
        if (f) memcpy(f + (size_t)i * GEOM_FEATURES, g.f, sizeof g.f);
        z.cells += g.f[GF_CELLS];
        sq += g.f[GF_CELLS] * g.f[GF_CELLS];
        z.no_cells += g.f[GF_CELLS] == 0;
        z.nuclei += g.f[GF_NUCLEI];
        cells += (long)g.f[GF_CELLS];
        in_cells += g.nuclei_in_cells;
        signal += g.signal;
        inside += g.signal_inside;
        walls += g.signal_on_walls;
        if (g.f[GF_CELLS] > 0) {
            with_cells++;
            z.cell_area += g.f[GF_CELL_AREA];
            z.wall_thickness += g.f[GF_WALL_THICKNESS];
        }
        if (g.f[GF_NUCLEI] > 0) {
            with_nuclei++;
            z.nucleus_area += g.f[GF_NUCLEUS_AREA];
        }
    }
    if (s) {
        z.cells = n ? z.cells / n : NAN;
        z.cells_sd = n > 1 ? sqrt(fmax(0.0, (sq - n * z.cells * z.cells) / (n - 1))) : 0;
        z.nuclei = n ? z.nuclei / n : NAN;
        z.nuclei_per_cell = cells ? (double)in_cells / (double)cells : NAN;
        z.inside = signal > 0 ? 100 * inside / signal : NAN;
        z.on_walls = signal > 0 ? 100 * walls / signal : NAN;
        z.cell_area = with_cells ? z.cell_area / with_cells : NAN;
        z.wall_thickness = with_cells ? z.wall_thickness / with_cells : NAN;
        z.nucleus_area = with_nuclei ? z.nucleus_area / with_nuclei : NAN;
        *s = z;
    }
    return 0;
}

// ---- the Frechet distance -------------------------------------------------------------------

// Eigenvalues (into w) and eigenvectors (the columns of v) of the symmetric d x d matrix a
// (destroyed), by cyclic Jacobi rotations.
static void jacobi_eigen(double *a, int d, double *w, double *v) {
    for (int i = 0; i < d * d; i++) v[i] = i % (d + 1) == 0;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) *(i == j ? &diag : &off) += a[i * d + j] * a[i * d + j];
        if (off <= 1e-30 * (diag > 0 ? diag : 1)) break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (apq == 0) continue;
                double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { // a = J^T a J
                    double akp = a[k * d + p], akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) {
                    double apk = a[p * d + k], aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) {
                    double vkp = v[k * d + p], vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < d; i++) w[i] = a[i * d + i];
}

static void mean_cov(const double *x, int n, int d, const double *scale, double *mu, double *cov) {
    for (int j = 0; j < d; j++) {
        mu[j] = 0;
        for (int i = 0; i < n; i++) mu[j] += x[(size_t)i * d + j] / scale[j];
        mu[j] /= n;
    }
    for (int j = 0; j < d; j++)
        for (int k = 0; k < d; k++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += (x[(size_t)i * d + j] / scale[j] - mu[j]) *
                     (x[(size_t)i * d + k] / scale[k] - mu[k]);
            cov[j * d + k] = s / (n - 1);
        }
}

static double frechet_scaled(const double *ref, int n_ref, const double *x, int n_x, int d,
                             const double *scale) {
    if (n_ref < 2 || n_x < 2) return NAN;
    size_t dd = (size_t)d * (size_t)d;
    double *buf = malloc(sizeof(double) * (6 * dd + 4 * (size_t)d));
    if (!buf) return NAN;
    double *sr = buf, *sx = sr + dd, *v = sx + dd, *root = v + dd, *m = root + dd, *t = m + dd;
    double *mr = t + dd, *mx = mr + d, *w = mx + d;
    mean_cov(ref, n_ref, d, scale, mr, sr);
    mean_cov(x, n_x, d, scale, mx, sx);
    double dist = 0;
    for (int j = 0; j < d; j++)
        dist += (mx[j] - mr[j]) * (mx[j] - mr[j]) + sr[j * d + j] + sx[j * d + j];
    // root = S_r^1/2 (eigenvalues clamped at 0: a covariance is positive semidefinite)
    memcpy(m, sr, sizeof(double) * dd);
    jacobi_eigen(m, d, w, v);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += v[i * d + k] * sqrt(fmax(0.0, w[k])) * v[j * d + k];
            root[i * d + j] = s;
        }
    // m = root S_x root, symmetric; tr (m^1/2) = the sum of the roots of its eigenvalues
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += sx[i * d + k] * root[k * d + j];
            t[i * d + j] = s;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += root[i * d + k] * t[k * d + j];
            m[i * d + j] = s;
        }
    for (int i = 0; i < d; i++) // symmetric up to rounding: make it exactly so
        for (int j = i + 1; j < d; j++)
            m[i * d + j] = m[j * d + i] = (m[i * d + j] + m[j * d + i]) / 2;
    jacobi_eigen(m, d, w, v);
    for (int i = 0; i < d; i++) dist -= 2 * sqrt(fmax(0.0, w[i]));
    free(buf);
    return fmax(0.0, dist);
}

double frechet_distance(const double *ref, int n_ref, const double *x, int n_x, int d) {
    double *one = malloc(sizeof(double) * (size_t)d);
    if (!one) return NAN;
    for (int j = 0; j < d; j++) one[j] = 1;
    double r = frechet_scaled(ref, n_ref, x, n_x, d, one);
    free(one);
    return r;
}

// Counts, areas and the wall thickness are heavy-tailed (a few embryos of 50 cells, a generated
// blob of 500 pixels): they are compared as log(1 + v), so that one feature's tail does not
// outweigh the rest; the shares and the CV are bounded and stay as they are.
static bool logged(int j) {
    return j == GF_CELLS || j == GF_CELL_AREA || j == GF_WALL_THICKNESS || j == GF_NUCLEI ||
           j == GF_NUCLEUS_AREA;
}

static double *transformed(const double *f, int n) {
    double *t = malloc(sizeof(double) * GEOM_FEATURES * (size_t)(n ? n : 1));
    for (size_t i = 0; t && i < (size_t)n * GEOM_FEATURES; i++)
        t[i] = logged((int)(i % GEOM_FEATURES)) ? log1p(fmax(0.0, f[i])) : f[i];
    return t;
}

static double distance_of(const double *ref, int n_ref, const double *x, int n_x);

double geometry_distance(const double *ref, int n_ref, const double *x, int n_x) {
    double *tr = transformed(ref, n_ref), *tx = transformed(x, n_x);
    double d = tr && tx ? distance_of(tr, n_ref, tx, n_x) : NAN;
    free(tr);
    free(tx);
    return d;
}

static double distance_of(const double *ref, int n_ref, const double *x, int n_x) {
    if (n_ref < 2) return NAN;
    double scale[GEOM_FEATURES];
    for (int j = 0; j < GEOM_FEATURES; j++) {
        double s = 0, sq = 0;
        for (int i = 0; i < n_ref; i++) {
            s += ref[(size_t)i * GEOM_FEATURES + j];
            sq += ref[(size_t)i * GEOM_FEATURES + j] * ref[(size_t)i * GEOM_FEATURES + j];
        }
        double var = (sq - s * s / n_ref) / (n_ref - 1);
        scale[j] = var > 1e-12 ? sqrt(var) : 1;
    }
    return frechet_scaled(ref, n_ref, x, n_x, GEOM_FEATURES, scale);
}

// ---- memorisation ---------------------------------------------------------------------------

enum { POOLED = (BANIS_SIDE / MEM_POOL) * (BANIS_SIDE / MEM_POOL) };

static void pool(const float *img, float *out) {
    const int side = BANIS_SIDE / MEM_POOL;
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            float s = 0;
            for (int j = 0; j < MEM_POOL; j++)
                for (int i = 0; i < MEM_POOL; i++)
                    s += img[(y * MEM_POOL + j) * BANIS_SIDE + x * MEM_POOL + i];
            out[y * side + x] = s / (MEM_POOL * MEM_POOL);
        }
}

// Both channels of n pairs pooled: n x 2 POOLED.
static float *pool_pairs(const float *a, const float *b, const int *idx, int n) {
    float *p = malloc(sizeof(float) * 2 * POOLED * (size_t)(n ? n : 1));
    if (!p) return NULL;
    for (int i = 0; i < n; i++) {
        size_t o = (size_t)(idx ? idx[i] : i) * BANIS_PIXELS;
        pool(a + o, p + (size_t)i * 2 * POOLED);
        pool(b + o, p + (size_t)i * 2 * POOLED + POOLED);
    }
    return p;
}

static void nearest(const float *train, int m, const float *x, int n, double *dist) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *q = x + (size_t)i * 2 * POOLED;
        double best = INFINITY;
        for (int j = 0; j < m; j++) {
            const float *t = train + (size_t)j * 2 * POOLED;
            float s = 0;
            for (int k = 0; k < 2 * POOLED; k++) s += fabsf(q[k] - t[k]);
            if (s < best) best = s;
        }
        dist[i] = best / (2 * POOLED);
    }
}

int memorisation_distances(const float *ta, const float *tb, int m, const float *a, const float *b,
                           int n, double *dist) {
    float *pt = pool_pairs(ta, tb, NULL, m), *px = pool_pairs(a, b, NULL, n);
    int rc = pt && px ? 0 : -1;
    if (!rc)
        nearest(pt, m, px, n, dist);
    else
        err_set("memorisation: out of memory");
    free(pt);
    free(px);
    return rc;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    if (!n) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int memorisation_measure(const banis_dataset *d, const int *idx_train, int n_train,
                         const int *idx_test, int n_test, const float *a, const float *b, int n,
                         memorisation *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    out->n_test = n_test;
    out->n_train = n_train;
    float *pt = pool_pairs(d->a, d->b, idx_train, n_train);
    float *pq = pool_pairs(d->a, d->b, idx_test, n_test), *pg = pool_pairs(a, b, NULL, n);
    double *dg = malloc(sizeof(double) * (size_t)(n ? n : 1)),
           *dq = malloc(sizeof(double) * (size_t)(n_test ? n_test : 1));
    int rc = pt && pq && pg && dg && dq ? 0 : -1;
    if (!rc) {
        nearest(pt, n_train, pg, n, dg);
        nearest(pt, n_train, pq, n_test, dq);
        double min_test = INFINITY;
        for (int i = 0; i < n_test; i++) min_test = fmin(min_test, dq[i]);
        int closer = 0;
        for (int i = 0; i < n; i++) closer += dg[i] < min_test;
        out->closer_than_any_test = n ? 100.0 * closer / n : NAN;
        out->median_gen = median(dg, n);
        out->median_test = median(dq, n_test);
        out->ratio = out->median_test > 0 ? out->median_gen / out->median_test : NAN;
        out->flagged = out->ratio < MEM_FLAG_RATIO;
    } else
        err_set("memorisation: out of memory");
    free(pt);
    free(pq);
    free(pg);
    free(dg);
    free(dq);
    return rc;
}

// ---- the picture ------------------------------------------------------------------------------

int geometry_write_png(const char *path, const float *a, const float *b, int n, int per_row) {
    const int gap = 2, cell_w = 2 * BANIS_SIDE + gap, cell_h = BANIS_SIDE;
    int rows = (n + per_row - 1) / per_row;
    image *sheet = image_new(per_row * (cell_w + 2 * gap), rows * (cell_h + 2 * gap), 3);
    geometry_seg *g = malloc(sizeof *g);
    int rc = sheet && g ? 0 : -1;
    for (size_t i = 0; !rc && i < (size_t)sheet->w * (size_t)sheet->h * 3; i++)
        sheet->data[i] = 0.25f;
    for (int k = 0; k < n && !rc; k++) {
        const float *ka = a + (size_t)k * BANIS_PIXELS, *kb = b + (size_t)k * BANIS_PIXELS;
        geometry_pair gp;
        if ((rc = geometry_measure(ka, kb, &gp, g))) break;
        int x0 = (k % per_row) * (cell_w + 2 * gap) + gap,
            y0 = (k / per_row) * (cell_h + 2 * gap) + gap;
        for (int y = 0; y < BANIS_SIDE; y++)
            for (int x = 0; x < BANIS_SIDE; x++) {
                int p = y * BANIS_SIDE + x;
                float va = (ka[p] + 1) / 2, vb = (kb[p] + 1) / 2;
                float *po = image_at(sheet, x0 + x, y0 + y),
                      *ps = image_at(sheet, x0 + BANIS_SIDE + gap + x, y0 + y);
                po[0] = po[2] = va;
                po[1] = vb;
                float c[3] = {0, 0, 0};
                if (g->wall[p])
                    c[0] = c[1] = c[2] = 0.6f;
                else if (g->cell[p]) { // a dark colour per cell, from its number
                    unsigned h = (unsigned)g->cell[p] * 2654435761u;
                    for (int j = 0; j < 3; j++)
                        c[j] = 0.1f + 0.3f * (float)((h >> (8 * j)) & 255) / 255;
                }
                if (g->nucleus[p]) {
                    bool in = g->cell[p] > 0;
                    c[0] = in ? 0.1f : 1.0f;
                    c[1] = in ? 1.0f : 0.15f;
                    c[2] = 0.1f;
                }
                for (int j = 0; j < 3; j++) ps[j] = c[j];
            }
    }
    if (!rc)
        rc = image_write_png(path, sheet, 0, 1);
    else
        err_set("%s: out of memory", path);
    free(g);
    image_free(sheet);
    return rc;
}
