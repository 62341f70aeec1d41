// BANIS's evaluation (model.h): the GMI of Algorithm 1 on the test split (binarised
// reconstructions and their Dice), the ground-truth figures, diversity and saturation of the
// generated images, the discriminator watch, and the gmi.md table.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"
#include "model.h"

// ---- evaluation ---------------------------------------------------------------------------
const double banis_gmi_thresholds[GMI_THRESHOLDS] = {0.1, 0.2, 0.3};

static void binarise(const float *img, double frac, uint8_t *mask) {
    // map [-1, 1] to [0, 255], threshold at frac * max
    double mx = -1;
    for (int i = 0; i < BANIS_PIXELS; i++) mx = fmax(mx, (img[i] + 1) * 127.5);
    for (int i = 0; i < BANIS_PIXELS; i++) mask[i] = (img[i] + 1) * 127.5 > frac * mx && mx > 0;
}

// Dice of two masks; `if_empty` when both are empty (0/0).
static double dice(const uint8_t *x, const uint8_t *y, double if_empty) {
    long inter = 0, sum = 0;
    for (int i = 0; i < BANIS_PIXELS; i++) {
        inter += x[i] && y[i];
        sum += x[i] + y[i];
    }
    return sum ? 2.0 * (double)inter / (double)sum : if_empty;
}

static bool empty_mask(const uint8_t *x) {
    for (int i = 0; i < BANIS_PIXELS; i++)
        if (x[i]) return false;
    return true;
}

// Two empty masks: DSC 0/0 = NaN as in the reference, and NaN < TS is false: not matched.
double banis_pair_dsc(const float *a_rec, const float *b_rec, uint8_t *mask_a, uint8_t *mask_b) {
    binarise(a_rec, 0.6, mask_a);
    binarise(b_rec, 0.3, mask_b);
    return dice(mask_a, mask_b, NAN);
}

void banis_gmi_of_pairs(const float *a, const float *b, int n, double gmi[GMI_THRESHOLDS],
                        double *mean_dsc, int *empty_pairs) {
    int matched[GMI_THRESHOLDS] = {0}, dsc_n = 0, empty = 0;
    double dsc_sum = 0;
    for (int i = 0; i < n; i++) {
        uint8_t ma[BANIS_PIXELS], mb[BANIS_PIXELS];
        double dsc =
            banis_pair_dsc(a + (size_t)i * BANIS_PIXELS, b + (size_t)i * BANIS_PIXELS, ma, mb);
        if (!isnan(dsc)) {
            dsc_sum += dsc;
            dsc_n++;
        }
        empty += empty_mask(ma) || empty_mask(mb);
        for (int t = 0; t < GMI_THRESHOLDS; t++) matched[t] += dsc < banis_gmi_thresholds[t];
    }
    for (int t = 0; t < GMI_THRESHOLDS; t++) gmi[t] = n ? 100.0 * matched[t] / n : NAN;
    *mean_dsc = dsc_n ? dsc_sum / dsc_n : NAN;
    *empty_pairs = empty;
}

static tensor *banis_translate(void *model, int to, tensor *src) {
    return banis_successor(model, to, src);
}

static double mean_pairwise_l1(const float *x, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            const float *a = x + (size_t)i * BANIS_PIXELS, *b = x + (size_t)j * BANIS_PIXELS;
            double s = 0;
            for (int p = 0; p < BANIS_PIXELS; p++) s += fabs((double)a[p] - (double)b[p]);
            sum += s / BANIS_PIXELS;
        }
    return n > 1 ? sum / (n * (n - 1) / 2.0) : NAN;
}

double banis_saturated_percent(const float *x, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += fabsf(x[i]) > 0.99f;
    return n ? 100.0 * (double)k / (double)n : NAN;
}

void banis_watch_init(banis_watch *w) {
    for (int x = 0; x < 2; x++) w->low_since[x] = w->won_at[x] = -1;
}

int banis_watch_step(banis_watch *w, int64_t step, const banis_losses *l) {
    int found = 0;
    for (int x = 0; x < 2; x++) {
        if (!(l->d_loss[x] < BANIS_D_WINS_LOSS)) { // NaN too: not a win
            w->low_since[x] = -1;
            continue;
        }
        if (w->low_since[x] < 0) w->low_since[x] = step;
        if (w->won_at[x] < 0 && step - w->low_since[x] + 1 >= BANIS_D_WINS_STEPS) {
            w->won_at[x] = step;
            found |= 1 << x;
        }
    }
    return found;
}

void banis_watch_describe(const banis_watch *w, char *out, size_t size) {
    size_t at = 0;
    out[0] = 0;
    for (int x = 0; x < 2 && at < size; x++)
        if (w->won_at[x] >= 0)
            at += (size_t)snprintf(
                out + at, size - at,
                "%sD_%c won outright at step %lld (its loss below %g for %d steps in a row: "
                "G_%c learns little from it after that).",
                at ? " " : "", "AB"[x], (long long)w -> won_at[x], BANIS_D_WINS_LOSS,
                BANIS_D_WINS_STEPS, "AB"[x]);
}

double banis_diversity(const float *generated, const float *real, int n) {
    double r = mean_pairwise_l1(real, n);
    return r > 0 ? mean_pairwise_l1(generated, n) / r : NAN;
}

// 16 images G_A(z) (inference mode, z from a fixed stream apart from the model's, so that
// evaluating draws nothing from the training's generators) against the first 16 test images.
static int generated_diversity(banis_model *m, const banis_dataset *d, const int *idx, int n,
                               banis_eval *out) {
    enum { K = 16 };
    if (n < 2) return 0;
    int k = n < K ? n : K;
    float *gen = malloc(sizeof(float) * BANIS_PIXELS * K),
          *real = malloc(sizeof(float) * BANIS_PIXELS * K);
    int rc = gen && real ? 0 : -1;
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    rng r;
    rng_init(&r, 0x5eed);
    tensor *z =
        rc ? NULL
           : op_rand_uniform(&r, m->ctx.dtype, SHAPE(k, m->arch.latent), -1, 1, m->ctx.device);
    tensor *g = z ? banis_generate(m, DOMAIN_A, z) : NULL;
    if (!g || tensor_to_host(tensor_cast(g, TENSOR_F32), gen)) rc = -1;
    tensor_scope_end();
    ag_set_grad_enabled(prev);
    if (!rc) {
        for (int i = 0; i < k; i++)
            memcpy(real + (size_t)i * BANIS_PIXELS, d->a + (size_t)idx[i] * BANIS_PIXELS,
                   sizeof(float) * BANIS_PIXELS);
        out->diversity = banis_diversity(gen, real, k);
        out->saturated_gen = banis_saturated_percent(gen, (size_t)k * BANIS_PIXELS);
    }
    free(gen);
    free(real);
    return rc;
}

int banis_evaluate(banis_model *m, const banis_dataset *d, const int *idx, int n, banis_eval *out) {
    nn_set_training(m->root, false);
    int rc =
        banis_evaluate_translator(banis_translate, m, m->ctx.dtype, m->ctx.device, d, idx, n, out);
    if (!rc) rc = generated_diversity(m, d, idx, n, out);
    nn_set_training(m->root, true);
    return rc;
}

// The even (odd = 0) or odd rows of n feature rows, into out; their count.
static int rows_of(const double *f, int n, int odd, double *out) {
    int k = 0;
    for (int i = odd; i < n; i += 2, k++)
        memcpy(out + (size_t)k * GEOM_FEATURES, f + (size_t)i * GEOM_FEATURES,
               sizeof(double) * GEOM_FEATURES);
    return k;
}

double banis_half_distance(const double *f_test, int n_test, const double *f_x, int n_x) {
    int h = n_test / 2;
    if (h < 2 || n_x < h) return NAN;
    double *ref = malloc(sizeof(double) * GEOM_FEATURES * (size_t)h);
    if (!ref) return NAN;
    rows_of(f_test, 2 * h, 1, ref);
    double sum = 0;
    int sets = n_x / h;
    for (int k = 0; k < sets; k++)
        sum += geometry_distance(ref, h, f_x + (size_t)k * h * GEOM_FEATURES, h);
    free(ref);
    return sum / sets;
}

// The real test pairs' geometry and that of the reconstructions as pairs, with their distances.
static int score_geometry(const banis_dataset *d, const int *idx, int n, const float *ar,
                          const float *br, banis_eval *out) {
    size_t px = (size_t)n * BANIS_PIXELS;
    float *ra = malloc(sizeof(float) * (px ? px : 1)), *rb = malloc(sizeof(float) * (px ? px : 1));
    double *fr = malloc(sizeof(double) * GEOM_FEATURES * (size_t)(n + 1)),
           *fx = malloc(sizeof(double) * GEOM_FEATURES * (size_t)(n + 1)),
           *half = malloc(sizeof(double) * GEOM_FEATURES * (size_t)(n + 1));
    int rc = ra && rb && fr && fx && half ? 0 : -1;
    for (int i = 0; i < n && !rc; i++) {
        memcpy(ra + (size_t)i * BANIS_PIXELS, d->a + (size_t)idx[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
        memcpy(rb + (size_t)i * BANIS_PIXELS, d->b + (size_t)idx[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
    }
    int empty;
    if (!rc) banis_gmi_of_pairs(ra, rb, n, out->real_gmi, &out->real_mean_dsc, &empty);
    if (!rc) rc = geometry_measure_set(ra, rb, n, fr, &out->real_geometry);
    if (!rc) rc = geometry_measure_set(ar, br, n, fx, &out->rec_geometry);
    if (!rc) {
        int h = rows_of(fr, n, 0, half); // the real pairs' even rows: the noise floor
        out->real_distance = banis_half_distance(fr, n, half, h);
        h = rows_of(fx, n, 0, half); // the reconstructions of the same pairs
        out->rec_distance = banis_half_distance(fr, n, half, h);
    } else
        err_set("evaluation: out of memory for the geometry of %d pairs", n);
    free(ra);
    free(rb);
    free(fr);
    free(fx);
    free(half);
    return rc;
}

int banis_evaluate_translator(banis_translate_fn translate, void *model, tensor_dtype dt,
                              tensor_device_type dev, const banis_dataset *d, const int *idx, int n,
                              banis_eval *out) {
    memset(out, 0, sizeof *out);
    out->membrane_dice = out->nuclei_dice = out->nuclei_in_cells = out->diversity =
        out->saturated_gen = out->rec_distance = out->real_distance = NAN;
    double mem_sum = 0, nuc_sum = 0, sat_rec = 0, sat_real = 0;
    long nuc_px = 0, nuc_ok = 0;
    bool gt = d->labels != NULL;
    bool prev = ag_set_grad_enabled(false);
    int rc = 0;
    size_t all = (size_t)(n ? n : 1) * BANIS_PIXELS;
    float *ar = malloc(sizeof(float) * all), *br = malloc(sizeof(float) * all);
    if (!ar || !br) {
        err_set("evaluation: out of memory for %d pairs", n);
        rc = -1;
    }
    for (int at = 0; at < n && !rc; at += 64) {
        int k = n - at < 64 ? n - at : 64;
        tensor_scope_begin();
        tensor *a, *b;
        rc = banis_batch(d, idx + at, k, dt, dev, &a, &b);
        tensor *a_rec = rc ? NULL : translate(model, DOMAIN_A, b);
        tensor *b_rec = rc ? NULL : translate(model, DOMAIN_B, a);
        if (!a_rec || !b_rec ||
            tensor_to_host(tensor_cast(a_rec, TENSOR_F32), ar + (size_t)at * BANIS_PIXELS) ||
            tensor_to_host(tensor_cast(b_rec, TENSOR_F32), br + (size_t)at * BANIS_PIXELS))
            rc = -1;
        tensor_scope_end();
    }
    ag_set_grad_enabled(prev);
    if (!rc) {
        size_t px = (size_t)n * BANIS_PIXELS;
        sat_rec = n * (banis_saturated_percent(ar, px) + banis_saturated_percent(br, px));
        banis_gmi_of_pairs(ar, br, n, out->gmi, &out->mean_dsc, &out->empty_pairs);
        rc = score_geometry(d, idx, n, ar, br, out);
    }
    for (int i = 0; i < n && !rc; i++) {
        size_t o = (size_t)idx[i] * BANIS_PIXELS;
        sat_real += banis_saturated_percent(d->a + o, BANIS_PIXELS) +
                    banis_saturated_percent(d->b + o, BANIS_PIXELS);
        if (!gt) continue;
        uint8_t ma[BANIS_PIXELS], mb[BANIS_PIXELS];
        banis_pair_dsc(ar + (size_t)i * BANIS_PIXELS, br + (size_t)i * BANIS_PIXELS, ma, mb);
        mem_sum += dice(ma, d->membrane + o, 1);
        nuc_sum += dice(mb, d->nuclei + o, 1);
        for (int p = 0; p < BANIS_PIXELS; p++)
            if (mb[p]) {
                nuc_px++;
                nuc_ok += d->labels[o + (size_t)p] > 0 && !d->membrane[o + (size_t)p];
            }
    }
    free(ar);
    free(br);
    if (rc) return -1;
    out->pairs = n;
    out->saturated_rec = n ? sat_rec / (2.0 * n) : NAN; // per pair: two images
    out->saturated_real = n ? sat_real / (2.0 * n) : NAN;
    if (gt && n) {
        out->membrane_dice = mem_sum / n;
        out->nuclei_dice = nuc_sum / n;
        out->nuclei_in_cells = nuc_px ? 100.0 * (double)nuc_ok / (double)nuc_px : NAN;
    }
    return 0;
}

int banis_generate_pairs(banis_model *m, int n, uint64_t seed, float *a, float *b) {
    bool was = m->root->training, prev = ag_set_grad_enabled(false);
    nn_set_training(m->root, false);
    rng r;
    rng_init(&r, seed);
    int rc = 0;
    for (int at = 0; at < n && !rc; at += 64) {
        int k = n - at < 64 ? n - at : 64;
        tensor_scope_begin();
        tensor *z =
            op_rand_uniform(&r, m->ctx.dtype, SHAPE(k, m->arch.latent), -1, 1, m->ctx.device);
        tensor *ga = z ? banis_generate(m, DOMAIN_A, z) : NULL;
        tensor *gb = z ? banis_generate(m, DOMAIN_B, z) : NULL;
        if (!ga || !gb ||
            tensor_to_host(tensor_cast(ga, TENSOR_F32), a + (size_t)at * BANIS_PIXELS) ||
            tensor_to_host(tensor_cast(gb, TENSOR_F32), b + (size_t)at * BANIS_PIXELS))
            rc = -1;
        tensor_scope_end();
    }
    ag_set_grad_enabled(prev);
    nn_set_training(m->root, was);
    return rc;
}

// The generated pairs' geometry features and summary, and their distance to the test pairs.
static int generated_geometry(banis_model *m, int n, const double *f_test, int n_test, float *a,
                              float *b, double *f, geometry_summary *s, double *distance) {
    if (banis_generate_pairs(m, n, BANIS_GEN_SEED, a, b) || geometry_measure_set(a, b, n, f, s))
        return -1;
    *distance = banis_half_distance(f_test, n_test, f, n);
    return 0;
}

int banis_score_generated(banis_model *m, banis_model *untrained, const banis_dataset *d,
                          const banis_split *sp, int n, banis_eval *e) {
    banis_gen_scores *g = &e->gen;
    memset(g, 0, sizeof *g);
    g->distance = g->distance_untrained = NAN;
    int nt = sp->n_test;
    // the geometry distance compares sets of nt / 2 pairs: at least one set is generated for
    // it, also when fewer pairs are asked for (GMI and memorisation score the first n)
    int ng = n > 0 && n < nt / 2 ? nt / 2 : n;
    size_t px = (size_t)(ng > nt ? ng : nt) * BANIS_PIXELS;
    float *a = malloc(sizeof(float) * (px ? px : 1)), *b = malloc(sizeof(float) * (px ? px : 1));
    double *ft = malloc(sizeof(double) * GEOM_FEATURES * (size_t)(nt + 1)),
           *f = malloc(sizeof(double) * GEOM_FEATURES * (size_t)(ng + 1));
    int rc = a && b && ft && f ? 0 : -1;
    if (rc) err_set("out of memory for %d generated pairs", ng);
    for (int i = 0; i < nt && !rc; i++) { // the test pairs' features, in split order
        memcpy(a + (size_t)i * BANIS_PIXELS, d->a + (size_t)sp->test[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
        memcpy(b + (size_t)i * BANIS_PIXELS, d->b + (size_t)sp->test[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
    }
    if (!rc) rc = geometry_measure_set(a, b, nt, ft, NULL);
    if (!rc && untrained)
        rc = generated_geometry(untrained, ng, ft, nt, a, b, f, &g->untrained_geometry,
                                &g->distance_untrained);
    if (!rc) rc = generated_geometry(m, ng, ft, nt, a, b, f, &g->geometry, &g->distance);
    if (!rc) {
        banis_gmi_of_pairs(a, b, n, g->gmi, &g->mean_dsc, &g->empty_pairs);
        rc = memorisation_measure(d, sp->train, sp->n_train, sp->test, nt, a, b, n, &g->mem);
    }
    if (!rc) g->pairs = n;
    free(a);
    free(b);
    free(ft);
    free(f);
    return rc;
}

// What says that a GAN went wrong, beside the table: collapse, saturation, the caller's notes.
static void write_health(FILE *f, const banis_eval *e) {
    if (!isnan(e->diversity))
        fprintf(f,
                "\nDiversity of 16 generated membrane images G_A(z): %.3f (their mean pairwise L1 "
                "distance "
                "over that of 16 real test images; 1: as varied as the data, 0: one image).%s\n",
                e->diversity,
                e->diversity < BANIS_DIVERSITY_COLLAPSED
                    ? " **Mode collapse: the generator draws (nearly) one image whatever z is.**"
                    : "");
    bool sat_gen = e->saturated_gen > e->saturated_real + BANIS_SATURATED_EXCESS,
         sat_rec = e->saturated_rec > e->saturated_real + BANIS_SATURATED_EXCESS;
    fprintf(f, "\nSaturated pixels (|v| > 0.99): %.1f%% of the reconstructions", e->saturated_rec);
    if (!isnan(e->saturated_gen)) fprintf(f, ", %.1f%% of the generated images", e->saturated_gen);
    fprintf(f, ", %.1f%% of the real images.%s%s\n", e->saturated_real,
            sat_rec ? " **The reconstructions are saturated: their tanh sits at its limits.**" : "",
            sat_gen ? " **The generated images are saturated: G's tanh sits at its limits.**" : "");
    if (e->notes[0]) fprintf(f, "\n**%s**\n", e->notes);
}

static void write_generated(FILE *f, const banis_eval *e) {
    const banis_gen_scores *g = &e->gen;
    if (!g->pairs) return;
    fprintf(f,
            "\n## Generated pairs\n\n%d pairs G_A(z), G_B(z) from the same z (a fixed stream: "
            "what `banis-sample` delivers), Algorithm 1's binarisation and Dice on each pair "
            "itself.\n\n| TS | 0.1 | 0.2 | 0.3 | mean DSC |\n|---|---|---|---|---|\n"
            "| generated pairs (GMI %%) | %.2f | %.2f | %.2f | %.4f |\n"
            "| the real test pairs themselves (GMI %%) | %.2f | %.2f | %.2f | %.4f |\n\n"
            "%d of %d generated pairs have an empty mask.\n",
            g->pairs, g->gmi[0], g->gmi[1], g->gmi[2], g->mean_dsc, e->real_gmi[0], e->real_gmi[1],
            e->real_gmi[2], e->real_mean_dsc, g->empty_pairs, g->pairs);
}

// A table cell: the value, or "-" where it is undefined (no cell, no nucleus found).
static void cell(FILE *f, const char *fmt, double v) {
    if (isnan(v))
        fprintf(f, " - |");
    else {
        fputc(' ', f);
        fprintf(f, fmt, v);
        fprintf(f, " |");
    }
}

static void geometry_row(FILE *f, const char *name, const geometry_summary *s, double distance) {
    fprintf(f, "| %s | %d | %.1f +- %.1f |", name, s->pairs, s->cells, s->cells_sd);
    cell(f, "%.1f", 100.0 * s->no_cells / (s->pairs ? s->pairs : 1));
    cell(f, "%.1f", s->nuclei);
    cell(f, "%.2f", s->nuclei_per_cell);
    cell(f, "%.1f", s->inside);
    cell(f, "%.1f", s->on_walls);
    cell(f, "%.1f", s->cell_area);
    cell(f, "%.2f", s->wall_thickness);
    cell(f, "%.1f", s->nucleus_area);
    cell(f, "%.2f", distance);
    fputc('\n', f);
}

// The segmentation's figures for the real pairs, the reconstructions and the generated pairs,
// with the geometry distance, and memorisation.
static void write_geometry(FILE *f, const banis_eval *e) {
    if (!e->real_geometry.pairs) return;
    const banis_gen_scores *g = &e->gen;
    fprintf(
        f,
        "\n## Geometry\n\nNo ground truth used: walls are the membrane image above its Otsu "
        "threshold, cells the regions the walls enclose, nuclei the nucleus image above its "
        "own (docs/results.md, \"Scores of the generated pairs\"). Nuclei per cell: nuclei "
        "with most of their pixels in one cell, over the cells; inside and on walls: shares of the "
        "segmented nuclei's signal. Geometry distance: the Frechet distance between Gaussians "
        "fitted to %d geometry features (cells, cell area and its CV, wall thickness, "
        "nuclei, nucleus area, nuclei per cell, inside share; counts, areas and thickness as "
        "log(1 + v); each in units of the real pairs' standard deviation), of sets of %d pairs "
        "against the odd-numbered half of "
        "the real test pairs (0: alike; the real pairs' even half gives the floor a set "
        "this small reaches; generated: the mean over %d sets). banis-train draws the "
        "segmentation of 8 real test pairs and the first 8 generated pairs in geometry.png "
        "(each pair: overlay | walls grey, cells coloured, nucleus pixels green in a cell, "
        "red elsewhere).\n\n",
        GEOM_FEATURES, e->pairs / 2,
        g->pairs && e->pairs >= 4 ? g->geometry.pairs / (e->pairs / 2) : 0);
    fprintf(f, "| pairs | n | cells per embryo | no cell %% | nuclei per image | nuclei per cell | "
               "inside cells %% | on walls %% | cell area px | wall px | nucleus area px | "
               "geometry distance |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    geometry_row(f, "real test pairs", &e->real_geometry, e->real_distance);
    geometry_row(f, "test reconstructions (S_A(b), S_B(a))", &e->rec_geometry, e->rec_distance);
    if (g->pairs) geometry_row(f, "generated pairs", &g->geometry, g->distance);
    if (g->pairs && g->untrained_geometry.pairs)
        geometry_row(f, "generated, untrained networks", &g->untrained_geometry,
                     g->distance_untrained);
    if (!g->pairs) return;
    const memorisation *mm = &g->mem;
    fprintf(f,
            "\nMemorisation: the distance of a pair to its nearest of the %d training pairs "
            "(mean absolute difference of both channels after %dx%d pooling, [-1, 1] units): "
            "median %.4f for the generated pairs, %.4f for the %d real test pairs (ratio %.2f); "
            "%.1f%% of the generated pairs lie nearer a training pair than every test pair "
            "does; a ratio below %.1f is flagged.%s\n",
            mm->n_train, MEM_POOL, MEM_POOL, mm->median_gen, mm->median_test, mm->n_test, mm->ratio,
            mm->closer_than_any_test, MEM_FLAG_RATIO,
            mm->flagged ? " **Memorised: the generated pairs are near copies of training pairs.**"
                        : "");
}

int banis_write_gmi_table(const char *path, const banis_eval *e, const char *title,
                          const char *split_how) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        err_set("%s: cannot create", tmp);
        return -1;
    }
    fprintf(f,
            "# %s\n\nGeometric Matching Index on %d test pairs (Algorithm 1: a_rec = S_A(b), "
            "b_rec = S_B(a), binarised at 0.6 and 0.3 of their maxima; a pair is matched when "
            "their Dice < TS). Test split: %s.\n\n",
            title, e->pairs, split_how);
    fprintf(f, "| TS | 0.1 | 0.2 | 0.3 | mean DSC |\n|---|---|---|---|---|\n");
    fprintf(f, "| BANIS (GMI %%) | %.2f | %.2f | %.2f | %.4f |\n\n", e->gmi[0], e->gmi[1],
            e->gmi[2], e->mean_dsc);
    fprintf(f,
            "%d of %d pairs (%.1f%%) have an empty mask (a reconstruction with nothing above its "
            "threshold); "
            "two empty masks are not a match (Dice 0/0).\n\n",
            e->empty_pairs, e->pairs, e->pairs ? 100.0 * e->empty_pairs / e->pairs : 0.0);
    if (!isnan(e->membrane_dice))
        fprintf(f,
                "Ground truth (synthetic data): membrane Dice %.3f, nuclei Dice %.3f, "
                "%.1f%% of predicted nucleus pixels inside cells and off the walls.\n",
                e->membrane_dice, e->nuclei_dice, e->nuclei_in_cells);
    write_generated(f, e);
    write_geometry(f, e);
    write_health(f, e);
    if (fclose(f) || rename(tmp, path)) {
        err_set("%s: write failed", path);
        return -1;
    }
    return 0;
}
