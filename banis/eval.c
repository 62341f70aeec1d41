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

int banis_evaluate_translator(banis_translate_fn translate, void *model, tensor_dtype dt,
                              tensor_device_type dev, const banis_dataset *d, const int *idx, int n,
                              banis_eval *out) {
    memset(out, 0, sizeof *out);
    out->membrane_dice = out->nuclei_dice = out->nuclei_in_cells = out->diversity =
        out->saturated_gen = NAN;
    int matched[GMI_THRESHOLDS] = {0}, dsc_n = 0, empty = 0;
    double dsc_sum = 0, mem_sum = 0, nuc_sum = 0, sat_rec = 0, sat_real = 0;
    long nuc_px = 0, nuc_ok = 0;
    bool gt = d->labels != NULL;
    bool prev = ag_set_grad_enabled(false);
    int rc = 0;
    float *ar = malloc(sizeof(float) * BANIS_PIXELS * 64),
          *br = malloc(sizeof(float) * BANIS_PIXELS * 64);
    for (int at = 0; at < n && !rc; at += 64) {
        int k = n - at < 64 ? n - at : 64;
        tensor_scope_begin();
        tensor *a, *b;
        rc = banis_batch(d, idx + at, k, dt, dev, &a, &b);
        tensor *a_rec = rc ? NULL : translate(model, DOMAIN_A, b);
        tensor *b_rec = rc ? NULL : translate(model, DOMAIN_B, a);
        if (!a_rec || !b_rec || tensor_to_host(tensor_cast(a_rec, TENSOR_F32), ar) ||
            tensor_to_host(tensor_cast(b_rec, TENSOR_F32), br))
            rc = -1;
        if (!rc) {
            size_t px = (size_t)k * BANIS_PIXELS;
            sat_rec += k * (banis_saturated_percent(ar, px) + banis_saturated_percent(br, px));
            for (int i = 0; i < k; i++) {
                size_t o = (size_t)idx[at + i] * BANIS_PIXELS;
                sat_real += banis_saturated_percent(d->a + o, BANIS_PIXELS) +
                            banis_saturated_percent(d->b + o, BANIS_PIXELS);
            }
        }
        for (int i = 0; i < k && !rc; i++) {
            uint8_t ma[BANIS_PIXELS], mb[BANIS_PIXELS];
            double dsc = banis_pair_dsc(ar + (size_t)i * BANIS_PIXELS,
                                        br + (size_t)i * BANIS_PIXELS, ma, mb);
            if (!isnan(dsc)) {
                dsc_sum += dsc;
                dsc_n++;
            }
            empty += empty_mask(ma) || empty_mask(mb);
            for (int t = 0; t < GMI_THRESHOLDS; t++) matched[t] += dsc < banis_gmi_thresholds[t];
            if (gt) {
                size_t o = (size_t)idx[at + i] * BANIS_PIXELS;
                mem_sum += dice(ma, d->membrane + o, 1);
                nuc_sum += dice(mb, d->nuclei + o, 1);
                for (int p = 0; p < BANIS_PIXELS; p++)
                    if (mb[p]) {
                        nuc_px++;
                        nuc_ok += d->labels[o + (size_t)p] > 0 && !d->membrane[o + (size_t)p];
                    }
            }
        }
        tensor_scope_end();
    }
    free(ar);
    free(br);
    ag_set_grad_enabled(prev);
    if (rc) return -1;
    out->pairs = n;
    for (int t = 0; t < GMI_THRESHOLDS; t++) out->gmi[t] = n ? 100.0 * matched[t] / n : NAN;
    out->mean_dsc = dsc_n ? dsc_sum / dsc_n : NAN;
    out->empty_pairs = empty;
    out->saturated_rec = n ? sat_rec / (2.0 * n) : NAN; // per pair: two images
    out->saturated_real = n ? sat_real / (2.0 * n) : NAN;
    if (gt && n) {
        out->membrane_dice = mem_sum / n;
        out->nuclei_dice = nuc_sum / n;
        out->nuclei_in_cells = nuc_px ? 100.0 * (double)nuc_ok / (double)nuc_px : NAN;
    }
    return 0;
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
    write_health(f, e);
    if (fclose(f) || rename(tmp, path)) {
        err_set("%s: write failed", path);
        return -1;
    }
    return 0;
}
