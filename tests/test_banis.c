// BANIS's training stages: each updates exactly the parameters it should, and computes its
// loss as an independent computation on the same batch does. Also the GMI on hand-made pairs.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../banis/baselines.h"
#include "../banis/presets.h"
#include "../banis/run.h"
#include "../tensor/error.h"
#include "check_runner.h"
#include "update_memory.h"

static banis_model *tiny_model_sc(double lr_d, bool sc_adam, double lr_sc) {
    banis_arch a = banis_arch_paper();
    a.width = 0.0625;
    a.latent = 8;
    banis_schedule s = banis_schedule_paper();
    s.lr_d[0] = s.lr_d[1] = lr_d;
    s.lr_g[0] = s.lr_g[1] = 1e-2;
    s.lr_sc = lr_sc;
    s.sc_adam = sc_adam;
    s.warmup_steps = 0;
    banis_model *m = banis_model_new(&a, &s, TENSOR_F32, DEVICE_CPU, 5);
    ck_assert_msg(m != NULL, "%s", err_message());
    return m;
}

static banis_model *tiny_model(double lr_d) { return tiny_model_sc(lr_d, false, 1e-2); }

// A copy of every network's flat parameter buffer.
typedef struct {
    float *v[6];
    size_t n[6];
} snapshot;

static nn_module *net(banis_model *m, int i) {
    nn_module *nets[6] = {m->gen[0], m->gen[1], m->disc[0], m->disc[1], m->enc[0], m->enc[1]};
    return nets[i];
}

static void take(banis_model *m, snapshot *s) {
    for (int i = 0; i < 6; i++) {
        tensor_storage *st = net(m, i)->flat_params;
        s->n[i] = st->nbytes;
        s->v[i] = malloc(st->nbytes);
        memcpy(s->v[i], st->data, st->nbytes);
    }
}

// Which networks changed: bit i for gen_a, gen_b, disc_a, disc_b, enc_a, enc_b.
static int changed(banis_model *m, snapshot *s) {
    int bits = 0;
    for (int i = 0; i < 6; i++) {
        if (memcmp(s->v[i], net(m, i)->flat_params->data, s->n[i])) bits |= 1 << i;
        free(s->v[i]);
    }
    return bits;
}

enum { GA = 1, GB = 2, DA = 4, DB = 8, EA = 16, EB = 32 };

static void values_of(const tensor *t, double *v) { ck_assert_int_eq(tensor_to_doubles(t, v), 0); }

static void batch(tensor **a, tensor **b) {
    synth_config c = synth_defaults();
    banis_dataset *d = banis_synthetic(&c, 6, 3);
    int idx[6] = {0, 1, 2, 3, 4, 5};
    ck_assert_int_eq(banis_batch(d, idx, 6, TENSOR_F32, DEVICE_CPU, a, b), 0);
    banis_dataset_free(d);
}

START_TEST(test_stages_update_exactly_their_parameters) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    banis_losses l;
    snapshot s;
    // Pioneer A with D's rate 0: only G_A moves (that G's update leaves D frozen, with a rate at
    // which D could move: test_g_update_leaves_d_frozen)
    banis_model *m = tiny_model(0.0);
    take(m, &s);
    tensor *gen;
    ck_assert_int_eq(banis_pioneer_step(m, DOMAIN_A, a, &gen, &l), 0);
    ck_assert_int_eq(changed(m, &s), GA);
    // with a rate, D_A moves too, and nothing of domain B
    banis_model_free(m);
    m = tiny_model(1e-2);
    take(m, &s);
    ck_assert_int_eq(banis_pioneer_step(m, DOMAIN_A, a, &gen, &l), 0);
    ck_assert_int_eq(changed(m, &s), GA | DA);
    // Successor A (B -> A): E_A and G_A
    double loss;
    take(m, &s);
    ck_assert_int_eq(banis_successor_step(m, DOMAIN_A, b, a, &loss), 0);
    ck_assert_int_eq(changed(m, &s), EA | GA);
    // Successor B (A -> B): E_B and G_B
    take(m, &s);
    ck_assert_int_eq(banis_successor_step(m, DOMAIN_B, a, b, &loss), 0);
    ck_assert_int_eq(changed(m, &s), EB | GB);
    // Coordinator A (B -> B): all four of E_A, G_A, E_B, G_B; no discriminator
    take(m, &s);
    ck_assert_int_eq(banis_coordinator_step(m, DOMAIN_A, b, &loss), 0);
    ck_assert_int_eq(changed(m, &s), EA | GA | EB | GB);
    // a whole step after warm-up touches everything
    take(m, &s);
    ck_assert_int_eq(banis_train_step(m, 0, a, b, &l), 0);
    ck_assert_int_eq(changed(m, &s), GA | GB | DA | DB | EA | EB);
    ck_assert(isfinite(l.pm[0]) && isfinite(l.id_gen[1]) && isfinite(l.d_loss[1]));
    banis_model_free(m);
    tensor_scope_end();
}
END_TEST

// The ablation --identical-gen off: a full step trains each Successor once (on the real pair),
// not also towards G's image; BANIS's step trains it twice. The losses of the steps skipped are
// NaN (did not run); the rest are computed.
START_TEST(test_identical_gen_ablation_skips_successor_steps_towards_g) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    for (int on = 0; on < 2; on++) {
        banis_model *m = tiny_model(1e-2);
        m->sched.identical_gen = on;
        banis_losses l;
        ck_assert_int_eq(banis_train_step(m, 0, a, b, &l), 0);
        ck_assert_int_eq(banis_train_step(m, 1, a, b, &l), 0);
        for (int x = 0; x < 2; x++) {
            ck_assert_int_eq(nn_optimizer_steps(m->opt_s[x]), on ? 4 : 2);
            ck_assert_int_eq(nn_optimizer_steps(m->opt_c[x]), 2);
            ck_assert(on ? isfinite(l.id_gen[x]) : isnan(l.id_gen[x]));
            ck_assert(isfinite(l.id_real[x]) && isfinite(l.pm[x]));
        }
        banis_model_free(m);
    }
    tensor_scope_end();
}
END_TEST

static double mse_host(const tensor *x, const tensor *y) {
    int64_t n = tensor_numel(x);
    double *u = malloc(sizeof(double) * (size_t)n), *v = malloc(sizeof(double) * (size_t)n), s = 0;
    tensor_to_doubles(x, u);
    tensor_to_doubles(y, v);
    for (int64_t i = 0; i < n; i++) s += (u[i] - v[i]) * (u[i] - v[i]);
    free(u);
    free(v);
    return s / (double)n;
}

START_TEST(test_stage_losses_match_independent_computation) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    banis_model *m = tiny_model(1e-2);
    // Successor: the loss reported is MSE(G_A(E_A(b)), a) on the model before its update.
    // The networks have no dropout, so a forward pass now sees what the step will see; the
    // running statistics it updates do not affect training-mode outputs.
    bool prev = ag_set_grad_enabled(false);
    double want = mse_host(nn_forward(m->gen[0], nn_forward(m->enc[0], b)), a);
    double want_c =
        mse_host(nn_forward(m->gen[1],
                            nn_forward(m->enc[1], nn_forward(m->gen[0], nn_forward(m->enc[0], b)))),
                 b);
    ag_set_grad_enabled(prev);
    double got;
    ck_assert_int_eq(banis_successor_step(m, DOMAIN_A, b, a, &got), 0);
    ck_assert_double_eq_tol(got, want, 1e-5 * want);
    // the step lowered it
    prev = ag_set_grad_enabled(false);
    double after = mse_host(nn_forward(m->gen[0], nn_forward(m->enc[0], b)), a);
    ag_set_grad_enabled(prev);
    ck_assert_double_lt(after, want);
    // Coordinator: MSE(S_B(S_A(b)), b), computed before the Successor step changed S_A
    banis_model_free(m);
    m = tiny_model(1e-2);
    ck_assert_int_eq(banis_coordinator_step(m, DOMAIN_A, b, &got), 0);
    ck_assert_double_eq_tol(got, want_c, 1e-5 * want_c);
    // Pioneer: the D loss is BCE over [real; G(z)] with labels [1; 0]; replay the same z and
    // dropout masks from saved RNG states and compute the cross-entropy by hand
    banis_model_free(m);
    m = tiny_model(1e-2);
    rng noise = m->noise_rng, drop = m->dropout_rng;
    prev = ag_set_grad_enabled(false);
    tensor *z = banis_sample_z(m, 6);
    nn_set_training(m->gen[0], false);
    tensor *gen = banis_generate(m, DOMAIN_A, z);
    nn_set_training(m->gen[0], true);
    tensor *pred = nn_forward(m->disc[0], op_concat(2, (tensor *[]){a, gen}, 0));
    ag_set_grad_enabled(prev);
    double p[12], bce = 0;
    tensor_to_doubles(pred, p);
    for (int i = 0; i < 12;
         i++) { // D gives logits: -log sigmoid(x) for real, -log(1 - sigmoid(x)) for fake
        double x = p[i];
        bce += i < 6 ? log1p(exp(-x)) : log1p(exp(x));
    }
    bce /= 12;
    m->noise_rng = noise;
    m->dropout_rng = drop;
    banis_losses l;
    ck_assert_int_eq(banis_pioneer_step(m, DOMAIN_A, a, &gen, &l), 0);
    ck_assert_double_eq_tol(l.d_loss[0], bce, 1e-5);
    banis_model_free(m);
    tensor_scope_end();
}
END_TEST

// A translator that draws nothing: every pair has two empty masks, so GMI is 0%, not 100%.
static tensor *draw_nothing(void *model, int to, tensor *src) {
    (void)model;
    (void)to;
    return tensor_full(src->dtype, src->ndim, src->shape, -1, tensor_device(src));
}

START_TEST(test_gmi_counts_blank_reconstructions_as_unmatched) {
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, 10, 4);
    int idx[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    banis_eval e;
    ck_assert_int_eq(
        banis_evaluate_translator(draw_nothing, NULL, TENSOR_F32, DEVICE_CPU, d, idx, 10, &e), 0);
    ck_assert_int_eq(e.pairs, 10);
    ck_assert_int_eq(e.empty_pairs, 10);
    for (int t = 0; t < GMI_THRESHOLDS; t++) ck_assert_double_eq(e.gmi[t], 0);
    ck_assert(isnan(e.mean_dsc));
    ck_assert_double_eq(e.membrane_dice, 0); // nothing drawn against a real membrane
    banis_dataset_free(d);
}
END_TEST

// G's last transposed convolution: Keras's glorot_uniform (the reference names no initialiser):
// every weight within +-sqrt(6 / (fan_in + fan_out)), their variance limit^2 / 3; and G's
// transposed convolutions have no bias.
START_TEST(test_generator_last_layer_is_glorot_uniform) {
    banis_arch a = banis_arch_paper();
    a.width = 0.25;
    rng r;
    rng_init(&r, 3);
    nn_ctx c = {TENSOR_F64, DEVICE_CPU, &r, &r};
    nn_module *g = banis_make_generator(&a, &c);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(nn_place(g), 0);
    nn_tensor_list ps = {0};
    nn_collect(g, "", true, false, &ps);
    const tensor *last = NULL;
    int convt_biases = 0, convts = 0;
    // names are "<layer index>.<param>"; a 4-D weight is a transposed convolution's
    for (int i = 0; i < ps.n; i++) {
        if (ps.items[i].t->ndim != 4) continue;
        last = ps.items[i].t;
        convts++;
        char bias[64];
        snprintf(bias, sizeof bias, "%d.bias", atoi(ps.items[i].name));
        convt_biases += nn_list_find(&ps, bias) != NULL;
    }
    ck_assert_int_eq(convts, 4);
    ck_assert_int_eq(convt_biases, 0);
    ck_assert_ptr_nonnull(last);
    // (C_in, C_out, 5, 5) = (16, 1, 5, 5): Keras fans of a transposed convolution: in = 25 * C_out, out = 25 * C_in
    ck_assert_int_eq(last->shape[1], 1);
    double limit = sqrt(6.0 / (25.0 * 1 + 25.0 * (double)last->shape[0])), sum = 0, sq = 0;
    int64_t n = tensor_numel(last);
    double *w = malloc(sizeof(double) * (size_t)n);
    tensor_to_doubles(last, w);
    for (int64_t i = 0; i < n; i++) {
        ck_assert(fabs(w[i]) <= limit);
        sum += w[i];
        sq += w[i] * w[i];
    }
    double var = sq / (double)n - (sum / (double)n) * (sum / (double)n);
    ck_assert_msg(fabs(var / (limit * limit / 3) - 1) < 0.2, "variance %g, glorot_uniform's %g",
                  var, limit * limit / 3);
    free(w);
    nn_list_free(&ps);
    nn_free(g);
}
END_TEST

START_TEST(test_gmi_on_hand_made_pairs) {
    // A ring (membrane) and a dot inside it (nucleus): no overlap, DSC 0. The same disc in
    // both: DSC 1.
    static float ring[BANIS_PIXELS], dot[BANIS_PIXELS], disc[BANIS_PIXELS];
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            double r = hypot(x - 32, y - 32);
            ring[y * 64 + x] = fabs(r - 20) < 2 ? 1 : -1;
            dot[y * 64 + x] = r < 5 ? 1 : -1;
            disc[y * 64 + x] = r < 10 ? 1 : -1;
        }
    uint8_t ma[BANIS_PIXELS], mb[BANIS_PIXELS];
    ck_assert_double_eq(banis_pair_dsc(ring, dot, ma, mb), 0);
    ck_assert_double_eq(banis_pair_dsc(disc, disc, ma, mb), 1);
    // half of the dot on the ring: 2|A n B| / (|A| + |B|) by counting
    static float dot2[BANIS_PIXELS];
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) dot2[y * 64 + x] = hypot(x - 52, y - 32) < 3 ? 1 : -1;
    double dsc = banis_pair_dsc(ring, dot2, ma, mb);
    long inter = 0, sa = 0, sb = 0;
    for (int i = 0; i < BANIS_PIXELS; i++) {
        inter += ring[i] > 0 && dot2[i] > 0;
        sa += ring[i] > 0;
        sb += dot2[i] > 0;
    }
    ck_assert_double_eq_tol(dsc, 2.0 * inter / (sa + sb), 1e-12);
    // two blank reconstructions: Dice 0/0 is NaN, and a NaN Dice is below no threshold
    static float blank[BANIS_PIXELS];
    for (int i = 0; i < BANIS_PIXELS; i++) blank[i] = -1;
    double none = banis_pair_dsc(blank, blank, ma, mb);
    ck_assert(isnan(none));
    for (int t = 0; t < GMI_THRESHOLDS; t++) ck_assert(!(none < banis_gmi_thresholds[t]));
    ck_assert_double_gt(dsc, 0);
}
END_TEST

// --sc-optim: the Successors and Coordinators step with SGD (the paper) or Adam. Adam's first
// step moves every parameter by lr * |g| / (|g| + eps'), i.e. by the rate itself wherever the
// gradient is clear of epsilon; SGD moves them by lr * |g|, which varies from one to the next.
static int cmp_double(const void *x, const void *y) {
    double u = *(const double *)x, v = *(const double *)y;
    return (u > v) - (u < v);
}

// One Successor step of a fresh tiny model: the median and largest move of E_A's parameters,
// and the largest gap between each move and the one its gradient g (read from E_A's flat
// gradient buffer) implies: SGD lr |g|; Keras's first Adam step lr |g| / (|g| + eps /
// sqrt(1 - beta2)) (m = (1 - b1) g, v = (1 - b2) g^2, rate lr sqrt(1 - b2) / (1 - b1)).
static void successor_moves(bool adam, double lr, double *median, double *max, double *gap) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    banis_model *m = tiny_model_sc(1e-2, adam, lr);
    ck_assert_str_eq(nn_optimizer_name(m->opt_s[0]), adam ? "adam_successor_a" : "sgd_successor_a");
    tensor_storage *st = m->enc[0]->flat_params;
    size_t n = st->nbytes / sizeof(float);
    float *before = malloc(st->nbytes);
    memcpy(before, st->data, st->nbytes);
    double loss;
    ck_assert_int_eq(banis_successor_step(m, DOMAIN_A, b, a, &loss), 0);
    double *d = malloc(n * sizeof *d);
    const float *g = m->enc[0]->flat_grads->data;
    double eps = m->sched.adam_eps / sqrt(1 - m->sched.beta2);
    size_t k = 0;
    *max = *gap = 0;
    for (size_t i = 0; i < n; i++) {
        double delta = fabs((double)((float *)st->data)[i] - before[i]), gi = fabs((double)g[i]);
        double want = adam ? lr * gi / (gi + eps) : lr * gi;
        // float32 parameters: their rounding (|p| < 2, so 2.4e-7) on top of the formula
        *gap = fmax(*gap, fabs(delta - want) - 2.4e-7 * fmax(fabs(before[i]), 1e-3));
        if (delta > 0) d[k++] = delta;
        if (delta > *max) *max = delta;
    }
    ck_assert_uint_gt(k, n / 2); // most of E_A moved
    qsort(d, k, sizeof *d, cmp_double);
    *median = d[k / 2];
    free(d);
    free(before);
    banis_model_free(m);
    tensor_scope_end();
}

// The diversity figure: hand-worked, and a generator that draws one image whatever z is (its
// last layer zeroed: tanh(0) everywhere) reported as collapsed in gmi.md.
// Multiplies the weights of G_A's layer before its tanh by f.
static void scale_last_layer(banis_model *m, float f) {
    nn_module *g = m->gen[DOMAIN_A], *last = g->children[g->n_children - 2];
    ck_assert_str_eq(last->type, "ConvTranspose2d");
    tensor *w = last->params[0].t;
    float *wd = (float *)w->storage->data + w->offset;
    for (int64_t i = 0; i < tensor_numel(w); i++) wd[i] *= f;
}

// The text banis_write_gmi_table writes for e.
static void gmi_text(const banis_eval *e, const char *title, char *text, size_t size) {
    char path[] = "/tmp/test_banis_gmi_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(banis_write_gmi_table(path, e, title, "random (a test)"), 0);
    FILE *f = fopen(path, "r");
    memset(text, 0, size);
    ck_assert_uint_gt(fread(text, 1, size - 1, f), 0);
    fclose(f);
    unlink(path);
}

// The health figures: diversity (constant images worked by hand; a G whose last layer is zeroed
// draws one image), saturation (its last layer scaled up drives the tanh to +-1; the real
// images' share of pixels beyond 0.99 counted here), each flagged in gmi.md.
START_TEST(test_diversity_and_saturation_of_generated_images) {
    enum { P = BANIS_PIXELS };
    static float gen[3 * P], real[3 * P];
    const float gv[3] = {0, 1, 1}, rv[3] = {0, 2, 4}; // constant images
    for (int i = 0; i < 3; i++)
        for (int p = 0; p < P; p++) {
            gen[i * P + p] = gv[i];
            real[i * P + p] = rv[i];
        }
    // generated pairs: 1, 1, 0 -> 2/3; real pairs: 2, 4, 2 -> 8/3; ratio 1/4
    ck_assert_double_eq_tol(banis_diversity(gen, real, 3), 0.25, 1e-12);
    ck_assert_double_eq(banis_diversity(real, real, 3), 1);
    ck_assert(isnan(banis_diversity(gen, real, 1)));
    ck_assert(isnan(banis_diversity(real, gen + P, 2))); // real images all equal (1, 1)
    static float x[4] = {0.995f, -1.0f, 0.5f, -0.98f};
    ck_assert_double_eq(banis_saturated_percent(x, 4), 50);

    banis_model *m = tiny_model(1e-3);
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, 20, 4);
    int idx[20];
    double sat_real = 0;
    for (int i = 0; i < 20; i++) {
        idx[i] = i;
        sat_real += banis_saturated_percent(d->a + (size_t)i * P, P) +
                    banis_saturated_percent(d->b + (size_t)i * P, P);
    }
    banis_eval e;
    ck_assert_int_eq(banis_evaluate(m, d, idx, 20, &e), 0);
    ck_assert(isfinite(e.diversity) && e.diversity > 0); // random weights: z changes the image
    ck_assert_double_eq_tol(e.saturated_real, sat_real / 40, 1e-9);
    ck_assert_double_lt(e.saturated_gen,
                        e.saturated_real + BANIS_SATURATED_EXCESS); // glorot: not saturated
    char text[8192];
    gmi_text(&e, "healthy", text, sizeof text);
    ck_assert_ptr_null(strstr(text, "saturated:"));

    scale_last_layer(m, 1000);
    ck_assert_int_eq(banis_evaluate(m, d, idx, 20, &e), 0);
    ck_assert_double_gt(e.saturated_gen, e.saturated_real + BANIS_SATURATED_EXCESS);
    ck_assert_double_gt(e.saturated_gen, 60);
    ck_assert_double_gt(e.saturated_rec, 30); // a_rec through the same G_A, b_rec not
    snprintf(e.notes, sizeof e.notes, "a note from the caller.");
    gmi_text(&e, "saturated", text, sizeof text);
    ck_assert_ptr_nonnull(strstr(text, "The generated images are saturated:"));
    ck_assert_ptr_nonnull(strstr(text, "**a note from the caller.**"));

    scale_last_layer(m, 0);
    ck_assert_int_eq(banis_evaluate(m, d, idx, 20, &e), 0);
    ck_assert_double_eq(e.diversity, 0);
    gmi_text(&e, "collapsed", text, sizeof text);
    ck_assert_ptr_nonnull(strstr(text, "Diversity of 16 generated membrane images G_A(z): 0.000"));
    ck_assert_ptr_nonnull(strstr(text, "Mode collapse"));
    banis_dataset_free(d);
    banis_model_free(m);
}
END_TEST

// A discriminator that wins outright: found at the 100th step in a row below 0.01, once; a
// step above it or NaN starts the count again.
START_TEST(test_discriminator_win_watched) {
    banis_watch w;
    banis_watch_init(&w);
    banis_losses l = {.d_loss = {0.005, 0.5}};
    int found = 0;
    for (int64_t s = 0; s < 99; s++) found |= banis_watch_step(&w, s, &l);
    ck_assert_int_eq(found, 0);
    l.d_loss[0] = 0.02; // one step above: the run is broken
    ck_assert_int_eq(banis_watch_step(&w, 99, &l), 0);
    l.d_loss[0] = 0.001;
    l.d_loss[1] = NAN;
    for (int64_t s = 100; s < 199; s++) ck_assert_int_eq(banis_watch_step(&w, s, &l), 0);
    ck_assert_int_eq(banis_watch_step(&w, 199, &l), 1); // D_A: the 100th step in a row
    ck_assert_int_eq(banis_watch_step(&w, 200, &l), 0); // said once
    ck_assert_int_eq(w.won_at[0], 199);
    ck_assert_int_eq(w.won_at[1], -1);
    char text[512];
    banis_watch_describe(&w, text, sizeof text);
    ck_assert_ptr_nonnull(strstr(text, "D_A won outright at step 199"));
    ck_assert_ptr_null(strstr(text, "D_B"));
}
END_TEST

// G keeps one set of batch-norm statistics for z and one for encoder codes: a full step updates
// the first only in the Pioneer's pass on z (checked against the batch mean of z W, W being G's
// first layer, computed here), the second in the Successor's and Coordinator's passes.
START_TEST(test_generator_statistics_per_input_kind) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    banis_model *m = tiny_model(1e-3);
    nn_module *lin = m->gen[DOMAIN_A]->children[0], *bn = m->gen[DOMAIN_A]->children[1];
    ck_assert_str_eq(lin->type, "Linear");
    ck_assert_int_eq(bn->n_buffers, 4);
    int64_t latent = lin->params[0].t->shape[0], width = lin->params[0].t->shape[1];
    double *W = malloc(sizeof(double) * (size_t)(latent * width)),
           *z = malloc(sizeof(double) * 6 * (size_t)latent);
    values_of(lin->params[0].t, W);
    rng noise = m->noise_rng;
    values_of(banis_sample_z(m, 6), z); // the Pioneer A's z: its first draw
    m->noise_rng = noise;
    banis_losses l;
    ck_assert_int_eq(banis_train_step(m, m->sched.warmup_steps, a, b, &l), 0); // a full step
    double *rm0 = malloc(sizeof(double) * (size_t)width),
           *rm1 = malloc(sizeof(double) * (size_t)width);
    values_of(bn->buffers[0].t, rm0);
    values_of(bn->buffers[2].t, rm1);
    double diff = 0;
    for (int64_t j = 0; j < width; j++) {
        double mean = 0;
        for (int n = 0; n < 6; n++)
            for (int64_t k = 0; k < latent; k++) mean += z[n * latent + k] * W[k * width + j] / 6;
        ck_assert_double_eq_tol(rm0[j], 0.2 * mean, 1e-5);
        diff += fabs(rm1[j] - rm0[j]);
    }
    ck_assert_double_gt(diff / (double)width, 1e-3); // the codes' set moved elsewhere
    // inference on z reads the first set: G(z) differs from G on the codes' statistics
    nn_set_training(m->gen[DOMAIN_A], false);
    tensor *zt = banis_sample_z(m, 4);
    static double g0[4 * BANIS_PIXELS], g1[4 * BANIS_PIXELS], g2[4 * BANIS_PIXELS];
    values_of(banis_generate(m, DOMAIN_A, zt), g0);
    nn_bn_use_stats(m->gen[DOMAIN_A], 1);
    values_of(nn_forward(m->gen[DOMAIN_A], zt), g1);
    values_of(banis_generate(m, DOMAIN_A, zt), g2); // selects the set for z itself
    double d01 = 0;
    for (int i = 0; i < 4 * BANIS_PIXELS; i++) d01 += fabs(g0[i] - g1[i]);
    ck_assert_double_gt(d01, 0);
    ck_assert_mem_eq(g0, g2, sizeof g0);
    free(W);
    free(z);
    free(rm0);
    free(rm1);
    banis_model_free(m);
    tensor_scope_end();
}
END_TEST

START_TEST(test_successor_optimizer_choice) {
    double median, max, gap;
    successor_moves(true, 1e-3, &median, &max, &gap);
    ck_assert_double_le(gap, 1e-3 * 1e-4); // every move as Keras's Adam makes it from its gradient
    ck_assert_double_le(max, 1e-3 * (1 + 1e-4));
    // most steps are about the full rate: lr |g| / (|g| + 3.2e-6) falls short of it by 5% only
    // where |g| < 6e-5
    ck_assert_double_ge(median, 1e-3 * (1 - 5e-2));
    successor_moves(false, 1e-3, &median, &max, &gap);
    ck_assert_double_le(gap, 1e-3 * 1e-4);  // every move lr |g|
    ck_assert_double_lt(median, 0.5 * max); // SGD's steps follow the gradient's size
}
END_TEST

// A baseline of 1/16 width with an 8-wide code, Adam 1e-3, on the CPU.
static baseline_model *tiny_baseline(baseline_kind kind, uint64_t seed) {
    banis_arch arch = banis_arch_paper();
    arch.width = 0.0625;
    arch.latent = 8;
    baseline_model *m = baseline_new(kind, &arch, 1e-3, TENSOR_F32, DEVICE_CPU, seed);
    ck_assert_msg(m != NULL, "%s", err_message());
    return m;
}

START_TEST(test_baselines_train_what_they_should) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    // Auto-Encoder: the reported loss is MSE(T_AB(a), b) + MSE(T_BA(b), a) before the update,
    // and the update lowers it
    baseline_model *ae = tiny_baseline(BASELINE_AUTOENCODER, 3);
    bool prev = ag_set_grad_enabled(false);
    double before = mse_host(nn_forward(ae->t_ab, a), b) + mse_host(nn_forward(ae->t_ba, b), a);
    ag_set_grad_enabled(prev);
    double l[4];
    ck_assert_int_eq(baseline_step(ae, a, b, l), 0);
    ck_assert_double_eq_tol(l[0] + l[1], before, 1e-5 * before);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(baseline_step(ae, a, b, l), 0);
    prev = ag_set_grad_enabled(false);
    double after = mse_host(nn_forward(ae->t_ab, a), b) + mse_host(nn_forward(ae->t_ba, b), a);
    ag_set_grad_enabled(prev);
    ck_assert_double_lt(after, before);
    baseline_free(ae);
    // Cycle-GAN: one step moves both translators and both discriminators
    baseline_model *cg = tiny_baseline(BASELINE_CYCLEGAN, 4);
    nn_module *nets[4] = {cg->t_ab, cg->t_ba, cg->d_a, cg->d_b};
    float *snap[4];
    for (int i = 0; i < 4; i++) {
        snap[i] = malloc(nets[i]->flat_params->nbytes);
        memcpy(snap[i], nets[i]->flat_params->data, nets[i]->flat_params->nbytes);
    }
    ck_assert_int_eq(baseline_step(cg, a, b, l), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(memcmp(snap[i], nets[i]->flat_params->data, nets[i]->flat_params->nbytes) !=
                          0,
                      "network %d unchanged", i);
        free(snap[i]);
    }
    ck_assert(isfinite(l[0]) && isfinite(l[1]) && isfinite(l[2]) && l[3] > 0);
    // the published shapes: G keeps 64x64 (6 residual blocks), D scores 16x16 patches; the
    // pools fill with each step's 6 translations up to 50, then stay full
    prev = ag_set_grad_enabled(false);
    tensor *g = nn_forward(cg->t_ab, a), *d = nn_forward(cg->d_b, g);
    ag_set_grad_enabled(prev);
    ck_assert_int_eq(g->shape[2], 64);
    ck_assert_int_eq(g->shape[3], 64);
    ck_assert_int_eq(d->shape[1], 1);
    ck_assert_int_eq(d->shape[2], 16);
    ck_assert_int_eq(d->shape[3], 16);
    int residual = 0;
    for (int i = 0; i < cg->t_ab->n_children; i++)
        residual += !strcmp(cg->t_ab->children[i]->type, "Residual");
    ck_assert_int_eq(residual, 6);
    ck_assert_int_eq(cg->pool_n[0], 6);
    for (int s = 0; s < 8; s++) ck_assert_int_eq(baseline_step(cg, a, b, l), 0);
    ck_assert_int_eq(cg->pool_n[0], 50);
    ck_assert_int_eq(cg->pool_n[1], 50);
    baseline_free(cg);
    tensor_scope_end();
}
END_TEST

// The nuclei-dropped Auto-Encoder: of each image only the pixels with y + 1 >= keep (max y + 1)
// are kept, the rest set to the background -1 (hand-worked on two images); its T_AB is the
// Auto-Encoder's with that rule applied, its T_BA the Auto-Encoder's as is.
START_TEST(test_nuclei_dropped_translator_keeps_the_bright_cores) {
    tensor_scope_begin();
    // image 0: max 0.6 (y + 1 = 1.6, threshold 0.7 * 1.6 = 1.12, i.e. y >= 0.12);
    // image 1: max -0.5 (threshold 0.7 * 0.5 = 0.35, y >= -0.65)
    float v[2][4] = {{0.6f, 0.2f, 0.1f, -1.0f}, {-0.5f, -0.6f, -0.7f, -0.9f}};
    float want[2][4] = {{0.6f, 0.2f, -1.0f, -1.0f}, {-0.5f, -0.6f, -1.0f, -1.0f}};
    tensor *y = tensor_from_host(TENSOR_F32, 4, (int64_t[]){2, 1, 2, 2}, v, DEVICE_CPU);
    float got[8];
    ck_assert_int_eq(tensor_to_host(baseline_keep_bright(y, 0.7), got), 0);
    for (int i = 0; i < 8; i++) ck_assert_float_eq_tol(got[i], want[i / 4][i % 4], 1e-6);
    // the translator
    tensor *a, *b;
    batch(&a, &b);
    baseline_model *ae = tiny_baseline(BASELINE_AUTOENCODER, 5);
    nn_set_training(ae->root, false);
    bool prev = ag_set_grad_enabled(false);
    tensor *pairs[2][2] = {
        {baseline_keep_bright(baseline_translate(ae, DOMAIN_B, a), BASELINE_NUCLEI_KEEP),
         baseline_translate_nuclei_dropped(ae, DOMAIN_B, a)},
        {baseline_translate(ae, DOMAIN_A, b), baseline_translate_nuclei_dropped(ae, DOMAIN_A, b)}};
    ag_set_grad_enabled(prev);
    size_t n = (size_t)a->shape[0] * 64 * 64;
    float *h0 = malloc(sizeof(float) * n), *h1 = malloc(sizeof(float) * n);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(tensor_to_host(pairs[k][0], h0), 0);
        ck_assert_int_eq(tensor_to_host(pairs[k][1], h1), 0);
        ck_assert_int_eq(memcmp(h0, h1, sizeof(float) * n), 0);
    }
    free(h0);
    free(h1);
    baseline_free(ae);
    tensor_scope_end();
}
END_TEST

// The CPU presets' data sets are large enough that a run passes over its training split (90% of
// the pairs) at most 10 times: over 1,200 pairs cpu-long's 6,600 steps were 98 passes, and the
// networks memorised the training embryos (docs/results/experiments.md). The batch-16 presets'
// counts by hand: cpu 480 x 16 / 1,080 = 7.1, cpu-long 6,600 x 16 / 10,800 = 9.8; the GPU
// check's gpu-short, at batch 128: 1,600 x 128 / 21,600 = 9.5.
START_TEST(test_cpu_presets_pass_over_their_data_at_most_ten_times) {
    const char *names[] = {"cpu", "cpu-long", "gpu-short"};
    const double want[] = {480.0 * 16 / 1080, 6600.0 * 16 / 10800, 1600.0 * 128 / 21600};
    for (int k = 0; k < 3; k++) {
        banis_preset p;
        ck_assert(banis_preset_get(names[k], &p));
        banis_split s = banis_split_make(p.n_synthetic, 0.1, 1);
        double passes = (double)banis_schedule_steps(&p.sched) * p.sched.batch / (double)s.n_train;
        banis_split_free(&s);
        ck_assert_double_eq_tol(passes, want[k], 1e-9);
        ck_assert_double_le(passes, 10);
    }
    banis_preset p = {.name = "untouched"};
    ck_assert(!banis_preset_get("cpu-longer", &p));
    ck_assert_str_eq(p.name, "untouched");
}
END_TEST

// gpu-short is the paper's networks and batch (only the rates and the schedule differ) sized
// to about 3 minutes of steps at the step times last measured on an H200 (25.6 ms warm-up,
// 165.4 ms full, docs/gpu-runs/2026-11-25-h200-final.md): 800 x 25.6 + 800 x 165.4 ms = 2.5 min.
START_TEST(test_gpu_short_is_the_papers_networks_for_three_minutes) {
    banis_preset g, paper;
    ck_assert(banis_preset_get("gpu-short", &g));
    ck_assert(banis_preset_get("paper", &paper));
    ck_assert_int_eq(g.arch.latent, paper.arch.latent);
    ck_assert_int_eq(g.arch.g_bn_sets, paper.arch.g_bn_sets);
    ck_assert(g.arch.width == 1 && g.arch.slope == paper.arch.slope &&
              g.arch.bn_momentum == paper.arch.bn_momentum && g.arch.bn_eps == paper.arch.bn_eps &&
              g.arch.dropout == paper.arch.dropout);
    ck_assert_int_eq(g.sched.batch, 128);
    ck_assert_int_eq(g.sched.batch, paper.sched.batch);
    ck_assert(g.sched.sc_adam && !paper.sched.sc_adam);
    double full = (double)(g.sched.stage2_steps + g.sched.stage3_steps);
    double seconds = (g.sched.warmup_steps * 25.6 + full * 165.4) / 1e3;
    ck_assert_double_eq_tol(seconds, 152.8, 1e-9);
    ck_assert(seconds > 120 && seconds < 200);
}
END_TEST

// ---- the run folder (banis/run.h) -----------------------------------------------------------
static void touch(const char *dir, const char *name, const char *text) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}
static bool exists(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}
static void fresh_dir(char *dir, size_t n, const char *name) {
    snprintf(dir, n, "%s/banis-run-test-%d-%s", P_tmpdir, (int)getpid(), name);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'-[0-9]*", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_run_folder_never_mixes_two_runs) {
    char dir[600];
    fresh_dir(dir, sizeof dir, "mix");
    banis_run_folder f, g;
    ck_assert(!banis_run_holds(dir));
    ck_assert_msg(!banis_run_open(&f, dir, false, true), "%s", err_message());
    ck_assert_str_eq(f.dir, dir);
    ck_assert(!f.moved && f.lock_fd >= 0 && exists(dir, "samples") && exists(dir, ".lock"));
    // a second process (here a second open: flock is per open file) is told who holds it
    ck_assert_int_eq(banis_run_open(&g, dir, true, true), -1);
    char pid[40];
    snprintf(pid, sizeof pid, "(process %d)", (int)getpid());
    ck_assert_msg(strstr(err_message(), "is in use by another banis-train") &&
                      strstr(err_message(), pid),
                  "%s", err_message());
    ck_assert_int_eq(g.lock_fd, -1);
    touch(dir, "metrics.csv", "step,loss\n");
    ck_assert(banis_run_holds(dir));
    banis_run_close(&f);
    ck_assert_int_eq(f.lock_fd, -1);
    // a fresh run into a folder that holds one: refused when named, else the next free -N
    ck_assert_int_eq(banis_run_open(&g, dir, false, true), -1);
    ck_assert_msg(strstr(err_message(), "holds a run already") && strstr(err_message(), "--resume"),
                  "%s", err_message());
    char want[700];
    ck_assert_msg(!banis_run_open(&g, dir, false, false), "%s", err_message());
    snprintf(want, sizeof want, "%s-2", dir);
    ck_assert_str_eq(g.dir, want);
    ck_assert(g.moved);
    touch(g.dir, "checkpoint_latest.safetensors", "x");
    banis_run_close(&g);
    ck_assert_msg(!banis_run_open(&g, dir, false, false), "%s", err_message());
    snprintf(want, sizeof want, "%s-3", dir);
    ck_assert_str_eq(g.dir, want);
    banis_run_close(&g);
    // resuming opens the folder as it is
    ck_assert_msg(!banis_run_open(&g, dir, true, true), "%s", err_message());
    ck_assert_str_eq(g.dir, dir);
    ck_assert(!g.moved);
    banis_run_close(&g);
}
END_TEST

START_TEST(test_run_folder_cleans_what_a_killed_run_left) {
    char dir[600];
    fresh_dir(dir, sizeof dir, "killed");
    banis_run_folder f;
    ck_assert(!banis_run_open(&f, dir, false, true));
    banis_run_close(&f);
    touch(dir, "checkpoint_latest.safetensors.tmp4242", "partial");
    touch(dir, "checkpoint_step_000004.safetensors.tmp17", "partial");
    touch(dir, "notes.safetensors.tmp1", "not ours");
    touch(dir, "checkpoint_latest.safetensors", "whole");
    ck_assert_msg(!banis_run_open(&f, dir, true, true), "%s", err_message());
    ck_assert_int_eq(f.stale_removed, 2);
    ck_assert(!exists(dir, "checkpoint_latest.safetensors.tmp4242"));
    ck_assert(!exists(dir, "checkpoint_step_000004.safetensors.tmp17"));
    ck_assert(exists(dir, "notes.safetensors.tmp1") &&
              exists(dir, "checkpoint_latest.safetensors"));
    // metrics past the checkpoint's step are dropped, the header and earlier rows kept
    touch(dir, "metrics.csv", "step,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.2\n5,0.1\n6,0.05\n");
    char path[700];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    ck_assert_int_eq(banis_run_truncate_metrics(path, 4), 2);
    FILE *m = fopen(path, "r");
    char text[200] = "";
    size_t n = fread(text, 1, sizeof text - 1, m);
    fclose(m);
    text[n] = 0;
    ck_assert_str_eq(text, "step,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.2\n");
    ck_assert_int_eq(banis_run_truncate_metrics(path, 4), 0);
    snprintf(path, sizeof path, "%s/absent.csv", dir);
    ck_assert_int_eq(banis_run_truncate_metrics(path, 4), 0);
    // pruning keeps the newest periodic checkpoints and never checkpoint_latest
    for (int s = 1; s <= 7; s++) {
        char name[64];
        snprintf(name, sizeof name, "checkpoint_step_%06d.safetensors", s * 100);
        touch(dir, name, "x");
    }
    ck_assert_int_eq(banis_run_prune_checkpoints(dir, 3), 4);
    ck_assert(!exists(dir, "checkpoint_step_000100.safetensors"));
    ck_assert(!exists(dir, "checkpoint_step_000400.safetensors"));
    ck_assert(exists(dir, "checkpoint_step_000500.safetensors"));
    ck_assert(exists(dir, "checkpoint_step_000700.safetensors"));
    ck_assert(exists(dir, "checkpoint_latest.safetensors"));
    ck_assert_int_eq(banis_run_prune_checkpoints(dir, 3), 0);
    banis_run_close(&f);
}
END_TEST

// A training step holds one update's activations at a time: each update (forward, loss,
// backward, optimizer step) frees its graph before the next starts. So the full step (ten
// updates) peaks no higher above what was held before it than its largest update (a
// Coordinator's, two networks chained) does alone, but for z and the generated images. With one
// scope a step, as before, the full step peaked at 72.6 MiB here (4.7 times its largest update
// then); now at about 10 MiB.
START_TEST(test_a_step_holds_one_update_at_a_time) {
    banis_arch a;
    banis_dataset *d;
    banis_model *m = small_banis(DEVICE_CPU, &a, &d);
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    int64_t above[3]; // warm-up step, full step, a Coordinator update alone
    for (int k = 0; k < 3; k++) {
        tensor_scope_begin();
        tensor *ta, *tb;
        ck_assert(!banis_batch(d, idx, 8, TENSOR_F32, DEVICE_CPU, &ta, &tb));
        banis_losses l;
        double loss;
        // once untimed first: the optimizers' state is made at their first step
        ck_assert_msg(k == 2 ? !banis_coordinator_step(m, DOMAIN_A, tb, &loss)
                             : !banis_train_step(m, k, ta, tb, &l),
                      "%s", err_message());
        int64_t held = tensor_storage_live_bytes();
        tensor_storage_reset_peak();
        ck_assert_msg(k == 2 ? !banis_coordinator_step(m, DOMAIN_A, tb, &loss)
                             : !banis_train_step(m, k, ta, tb, &l),
                      "%s", err_message());
        above[k] = tensor_storage_peak_bytes() - held;
        tensor_scope_end();
    }
    fprintf(stderr,
            "peak above what is held: warm-up step %.2f MiB, full step %.2f MiB, one Coordinator "
            "update %.2f MiB\n",
            above[0] / 1048576.0, above[1] / 1048576.0, above[2] / 1048576.0);
    ck_assert(above[2] > 0 && above[0] > 0);
    ck_assert_msg(above[1] <= 1.05 * (above[0] > above[2] ? above[0] : above[2]),
                  "the full step peaks at %lld bytes above what it started with, its largest "
                  "update at most %lld",
                  (long long)above[1], (long long)(above[0] > above[2] ? above[0] : above[2]));
    banis_dataset_free(d);
    banis_model_free(m);
}
END_TEST

// Each update frees what it made except what later updates read (tests/update_memory.h).
START_TEST(test_updates_free_what_they_made) { check_updates_free_what_they_made(DEVICE_CPU); }
END_TEST

// ---- the GMI's thresholds, fractions and ground-truth figures on hand-made reconstructions ----
// A "translator" that hands back prepared reconstructions in batch order (the batch is the
// test's own idx order, all in one batch), whatever it is given.
static float hand_a[8 * BANIS_PIXELS], hand_b[8 * BANIS_PIXELS];
static tensor *hand_translate(void *model, int to, tensor *src) {
    (void)model;
    return tensor_from_host(TENSOR_F32, SHAPE(src->shape[0], 1, 64, 64),
                            to == DOMAIN_A ? hand_a : hand_b, DEVICE_CPU);
}
static void square(float *img, int x0, int y0, int side, float value) {
    for (int y = y0; y < y0 + side; y++)
        for (int x = x0; x < x0 + side; x++) img[y * 64 + x] = value;
}

START_TEST(test_gmi_thresholds_and_fractions) {
    // 1. seven pairs: a 10x10 square in a_rec, the same square in b_rec shifted by (dx, dy), so
    //    DSC = (10 - dx)(10 - dy) / 100: 0.09, 0.10, 0.12, 0.20, 0.25, 0.30, 0.36. A pair is
    //    matched at TS when DSC < TS (strictly): 1, 3 and 5 of 7 at 0.1, 0.2, 0.3.
    static const int shift[7][2] = {{7, 7}, {8, 5}, {7, 6}, {6, 5}, {5, 5}, {5, 4}, {4, 4}};
    static const double want_dsc[7] = {0.09, 0.10, 0.12, 0.20, 0.25, 0.30, 0.36};
    banis_dataset d = {.n = 7};
    static float zeros[8 * BANIS_PIXELS];
    d.a = d.b = zeros;
    for (int i = 0; i < 8 * BANIS_PIXELS; i++) hand_a[i] = hand_b[i] = -1;
    for (int i = 0; i < 7; i++) {
        square(hand_a + i * BANIS_PIXELS, 20, 20, 10, 1);
        square(hand_b + i * BANIS_PIXELS, 20 + shift[i][0], 20 + shift[i][1], 10, 1);
        uint8_t ma[BANIS_PIXELS], mb[BANIS_PIXELS];
        ck_assert_double_eq_tol(
            banis_pair_dsc(hand_a + i * BANIS_PIXELS, hand_b + i * BANIS_PIXELS, ma, mb),
            want_dsc[i], 1e-12);
    }
    int idx[7] = {0, 1, 2, 3, 4, 5, 6};
    banis_eval e;
    ck_assert_msg(
        !banis_evaluate_translator(hand_translate, NULL, TENSOR_F32, DEVICE_CPU, &d, idx, 7, &e),
        "%s", err_message());
    ck_assert_int_eq(e.pairs, 7);
    ck_assert_double_eq_tol(e.gmi[0], 100.0 * 1 / 7, 1e-9);
    ck_assert_double_eq_tol(e.gmi[1], 100.0 * 3 / 7, 1e-9);
    ck_assert_double_eq_tol(e.gmi[2], 100.0 * 5 / 7, 1e-9);
    ck_assert_double_eq_tol(e.mean_dsc, (0.09 + 0.10 + 0.12 + 0.20 + 0.25 + 0.30 + 0.36) / 7, 1e-9);
    ck_assert_int_eq(e.empty_pairs, 0);
    ck_assert(isnan(e.membrane_dice)); // no ground truth
    // 2. the fractions: a_rec is kept above 0.6 of its maximum, b_rec above 0.3, on [0, 255]
    //    (v + 1) * 127.5. Graded squares just below and just above each fraction of the peak.
    static float ga[BANIS_PIXELS], gb[BANIS_PIXELS];
    for (int i = 0; i < BANIS_PIXELS; i++) ga[i] = gb[i] = -1;
    float lvl[2][2] = {{0.59f, 0.61f}, {0.29f, 0.31f}}; // of the maximum, 255
    square(ga, 0, 0, 4, 1);
    square(gb, 0, 0, 4, 1); // the peak: 16 pixels in both
    for (int k = 0; k < 2; k++) {
        square(ga, 10 + 10 * k, 10, 5, lvl[0][k] * 2 - 1);
        square(gb, 10 + 10 * k, 10, 5, lvl[1][k] * 2 - 1);
    }
    uint8_t ma[BANIS_PIXELS], mb[BANIS_PIXELS];
    double dsc = banis_pair_dsc(ga, gb, ma, mb);
    int in_a[2] = {0}, in_b[2] = {0}, na = 0, nb = 0;
    for (int i = 0; i < BANIS_PIXELS; i++) {
        na += ma[i];
        nb += mb[i];
    }
    for (int k = 0; k < 2; k++) {
        in_a[k] = ma[12 * 64 + 12 + 10 * k];
        in_b[k] = mb[12 * 64 + 12 + 10 * k];
    }
    ck_assert_int_eq(in_a[0], 0); // 0.59 of the peak: below 0.6
    ck_assert_int_eq(in_a[1], 1); // 0.61: above
    ck_assert_int_eq(in_b[0], 0); // 0.29: below 0.3
    ck_assert_int_eq(in_b[1], 1); // 0.31: above
    ck_assert_int_eq(na, 16 + 25);
    ck_assert_int_eq(nb, 16 + 25);
    ck_assert_double_eq_tol(dsc, 2.0 * (16 + 25) / (41 + 41), 1e-12);
}
END_TEST

START_TEST(test_ground_truth_figures_by_hand) {
    // One pair with ground truth: cells 1 and 2 either side of a wall at x = 32 (columns 31-32),
    // outside the embryo (label 0) beyond x >= 50. The true nuclei: a 6x6 square in cell 1.
    static float zeros[BANIS_PIXELS];
    static int16_t labels[BANIS_PIXELS];
    static uint8_t membrane[BANIS_PIXELS], nuclei[BANIS_PIXELS];
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) {
            int i = y * 64 + x;
            labels[i] = x >= 50 ? 0 : x < 32 ? 1 : 2;
            membrane[i] = x == 31 || x == 32;
            nuclei[i] = x >= 10 && x < 16 && y >= 10 && y < 16;
        }
    banis_dataset d = {
        .n = 1, .a = zeros, .b = zeros, .labels = labels, .membrane = membrane, .nuclei = nuclei};
    for (int i = 0; i < BANIS_PIXELS; i++) hand_a[i] = hand_b[i] = -1;
    // a_rec: the wall, columns 31-32, rows 0-19 (40 of the true 128 wall pixels)
    for (int y = 0; y < 20; y++) hand_a[y * 64 + 31] = hand_a[y * 64 + 32] = 1;
    // b_rec: 20 nucleus pixels: 12 of the true nucleus (rows 10-11, x 10-15), 4 more inside
    // cell 2 (row 40, x 40-43), 2 on the wall (row 40, x 31-32), 2 outside the embryo (x 55-56)
    for (int x = 10; x < 16; x++) hand_b[10 * 64 + x] = hand_b[11 * 64 + x] = 1;
    for (int x = 40; x < 44; x++) hand_b[40 * 64 + x] = 1;
    hand_b[40 * 64 + 31] = hand_b[40 * 64 + 32] = 1;
    hand_b[40 * 64 + 55] = hand_b[40 * 64 + 56] = 1;
    int idx[1] = {0};
    banis_eval e;
    ck_assert_msg(
        !banis_evaluate_translator(hand_translate, NULL, TENSOR_F32, DEVICE_CPU, &d, idx, 1, &e),
        "%s", err_message());
    // membrane Dice: 2 * 40 / (40 + 128); nuclei Dice: 2 * 12 / (20 + 36)
    ck_assert_double_eq_tol(e.membrane_dice, 80.0 / 168.0, 1e-12);
    ck_assert_double_eq_tol(e.nuclei_dice, 24.0 / 56.0, 1e-12);
    // nucleus pixels inside cells and off the walls: 12 + 4 of 20
    ck_assert_double_eq_tol(e.nuclei_in_cells, 100.0 * 16 / 20, 1e-9);
    // a_rec and b_rec overlap on the 2 wall pixels of row 40? a_rec's wall ends at row 19: 0
    ck_assert_double_eq(e.mean_dsc, 0);
    ck_assert_double_eq(e.gmi[0], 100);
}
END_TEST

// G's update leaves D frozen: with D's rate non-zero (so D can move), D's gradient buffers after
// a Pioneer step hold D's own loss's gradient only, the same as an identical model that made the
// D update alone (by hand, from the same z); without the freeze G's loss would add to them.
START_TEST(test_g_update_leaves_d_frozen) {
    tensor_scope_begin();
    tensor *a, *b;
    batch(&a, &b);
    banis_model *m1 = tiny_model(1e-2), *m2 = tiny_model(1e-2);
    banis_losses l;
    tensor *gen;
    ck_assert_int_eq(banis_pioneer_step(m1, DOMAIN_A, a, &gen, &l), 0);
    // m2: the D update alone, as banis_pioneer_step makes it
    int n = (int)a->shape[0];
    tensor *z = banis_sample_z(m2, n);
    nn_set_training(m2->gen[0], false);
    bool prev = ag_set_grad_enabled(false);
    tensor *g2 = banis_generate(m2, DOMAIN_A, z);
    ag_set_grad_enabled(prev);
    nn_set_training(m2->gen[0], true);
    tensor *labels = op_concat(2,
                               (tensor *[]){tensor_ones(TENSOR_F32, SHAPE(n, 1), DEVICE_CPU),
                                            tensor_zeros(TENSOR_F32, SHAPE(n, 1), DEVICE_CPU)},
                               0);
    nn_optimizer_zero_grad(m2->opt_d[0]);
    tensor *pred = nn_forward(m2->disc[0], op_concat(2, (tensor *[]){a, g2}, 0));
    double loss;
    ck_assert_int_eq(nn_minimize(m2->opt_d[0], op_bce_logits(pred, labels), &loss), 0);
    ck_assert_double_eq_tol(loss, l.d_loss[0], 1e-6);
    // D's gradients: one flat buffer per network (nn_place), float32
    const tensor_storage *s1 = m1->disc[0]->flat_grads, *s2 = m2->disc[0]->flat_grads;
    ck_assert(s1 && s2 && s1->nbytes == s2->nbytes);
    const float *x = s1->data, *y = s2->data;
    double worst = 0, size = 0;
    for (size_t j = 0; j < s1->nbytes / sizeof(float); j++) {
        worst = fmax(worst, fabs((double)x[j] - (double)y[j]));
        size = fmax(size, fabs((double)y[j]));
    }
    ck_assert_msg(size > 0 && worst <= 1e-6 * size, "D's gradients differ by %g (largest %g)",
                  worst, size);
    banis_model_free(m1);
    banis_model_free(m2);
    tensor_scope_end();
}
END_TEST

int main(void) {
    TCase *tc = check_case(
        "banis", 300,
        CHECK_TESTS(
            test_stages_update_exactly_their_parameters,
            test_identical_gen_ablation_skips_successor_steps_towards_g,
            test_stage_losses_match_independent_computation, test_gmi_on_hand_made_pairs,
            test_gmi_counts_blank_reconstructions_as_unmatched,
            test_generator_last_layer_is_glorot_uniform, test_successor_optimizer_choice,
            test_diversity_and_saturation_of_generated_images, test_discriminator_win_watched,
            test_generator_statistics_per_input_kind, test_baselines_train_what_they_should,
            test_nuclei_dropped_translator_keeps_the_bright_cores,
            test_cpu_presets_pass_over_their_data_at_most_ten_times,
            test_gpu_short_is_the_papers_networks_for_three_minutes,
            test_run_folder_never_mixes_two_runs, test_run_folder_cleans_what_a_killed_run_left,
            test_a_step_holds_one_update_at_a_time, test_updates_free_what_they_made,
            test_gmi_thresholds_and_fractions, test_ground_truth_figures_by_hand,
            test_g_update_leaves_d_frozen));
    return check_main("banis", tc);
}
