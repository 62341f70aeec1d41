#include "baselines.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"

const char *baseline_name(baseline_kind kind) {
    return kind == BASELINE_CYCLEGAN ? "Cycle-GAN" : "Auto-Encoder";
}

static nn_module *translator(baseline_model *m) {
    nn_module *e = banis_make_encoder(&m->arch, &m->ctx),
              *g = banis_make_generator(&m->arch, &m->ctx);
    return nn_sequential(2, (nn_module *[]){e, g}); // NULL (both freed) if either is
}

// Appends conv, instance norm and `act`: Cycle-GAN's repeated unit.
static int conv_norm_act(nn_module **l, int n, nn_module *conv, nn_module *act) {
    l[n] = conv;
    l[n + 1] = nn_instance_norm(1e-5);
    l[n + 2] = act;
    return n + 3;
}

nn_module *cyclegan_generator(double width, nn_ctx *c) {
    int64_t f = banis_channels(width, 64);
    nn_module *l[32];
    int n = 0;
    l[n++] = nn_reflection_pad(3);
    n = conv_norm_act(l, n, nn_conv2d(c, 1, f, 7, 1, NN_PAD_VALID, true), nn_relu());
    n = conv_norm_act(l, n, nn_conv2d(c, f, 2 * f, 3, 2, NN_PAD_SAME, true), nn_relu());
    n = conv_norm_act(l, n, nn_conv2d(c, 2 * f, 4 * f, 3, 2, NN_PAD_SAME, true), nn_relu());
    for (int b = 0; b < 6; b++) { // x + IN(conv(pad(ReLU(IN(conv(pad(x)))))))
        nn_module *body[7] = {nn_reflection_pad(1)};
        conv_norm_act(body, 1, nn_conv2d(c, 4 * f, 4 * f, 3, 1, NN_PAD_VALID, true), nn_relu());
        body[4] = nn_reflection_pad(1);
        body[5] = nn_conv2d(c, 4 * f, 4 * f, 3, 1, NN_PAD_VALID, true);
        body[6] = nn_instance_norm(1e-5);
        l[n++] = nn_residual(nn_sequential(7, body));
    }
    n = conv_norm_act(l, n, nn_conv_transpose2d(c, 4 * f, 2 * f, 3, 2, NN_PAD_SAME, true),
                      nn_relu());
    n = conv_norm_act(l, n, nn_conv_transpose2d(c, 2 * f, f, 3, 2, NN_PAD_SAME, true), nn_relu());
    l[n++] = nn_reflection_pad(3);
    l[n++] = nn_conv2d(c, f, 1, 7, 1, NN_PAD_VALID, true);
    l[n++] = nn_tanh();
    return nn_sequential(n, l); // NULL (all freed) if a layer could not be built
}

nn_module *cyclegan_discriminator(double width, nn_ctx *c) {
    int64_t f = banis_channels(width, 64);
    nn_module *l[9] = {nn_conv2d(c, 1, f, 4, 2, NN_PAD_SAME, true), nn_leaky_relu(0.2)};
    int n =
        conv_norm_act(l, 2, nn_conv2d(c, f, 2 * f, 4, 2, NN_PAD_SAME, true), nn_leaky_relu(0.2));
    n = conv_norm_act(l, n, nn_conv2d(c, 2 * f, 4 * f, 4, 1, NN_PAD_SAME, true),
                      nn_leaky_relu(0.2));
    l[n++] = nn_conv2d(c, 4 * f, 1, 4, 1, NN_PAD_SAME, true); // one score per 34x34 patch
    return nn_sequential(n, l);
}

static nn_optimizer *adam_over(const char *name, double lr, int n, nn_module *const *nets) {
    return nn_optimizer_for(name, nn_adam(lr, 0.5, 0.999, 1e-7), n, nets);
}

baseline_model *baseline_new(baseline_kind kind, const banis_arch *arch, double lr, tensor_dtype dt,
                             tensor_device_type dev, uint64_t seed) {
    baseline_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->kind = kind;
    m->arch = *arch;
    m->cycle_weight = 10;
    rng_init(&m->init_rng, seed);
    rng_init(&m->dropout_rng, seed + 1);
    m->ctx = (nn_ctx){dt, dev, &m->init_rng, &m->dropout_rng};
    rng_init(&m->pool_rng, seed + 2);
    m->root = nn_container(baseline_name(kind));
    bool cg = kind == BASELINE_CYCLEGAN;
    m->t_ab = cg ? cyclegan_generator(arch->width, &m->ctx) : translator(m);
    m->t_ba = cg ? cyclegan_generator(arch->width, &m->ctx) : translator(m);
    if (nn_adopt(m->root, 2, (const char *[]){"t_ab", "t_ba"}, (nn_module *[]){m->t_ab, m->t_ba}))
        goto fail;
    if (kind == BASELINE_CYCLEGAN) {
        m->d_a = cyclegan_discriminator(arch->width, &m->ctx);
        m->d_b = cyclegan_discriminator(arch->width, &m->ctx);
        if (nn_adopt(m->root, 2, (const char *[]){"disc_a", "disc_b"},
                     (nn_module *[]){m->d_a, m->d_b}))
            goto fail;
    }
    for (int i = 0; i < m->root->n_children; i++)
        if (nn_place(m->root->children[i])) goto fail;
    m->opt_t = adam_over("adam_translators", lr, 2, (nn_module *[]){m->t_ab, m->t_ba});
    if (!m->opt_t) goto fail;
    if (kind == BASELINE_CYCLEGAN) {
        m->opt_d[0] = adam_over("adam_disc_a", lr, 1, &m->d_a);
        m->opt_d[1] = adam_over("adam_disc_b", lr, 1, &m->d_b);
        if (!m->opt_d[0] || !m->opt_d[1]) goto fail;
    }
    nn_runner_config rc = {.dtype = dt,
                           .device = dev,
                           .graphs = true,
                           .n_rngs = 1,
                           .rngs = {&m->dropout_rng},
                           .n_opts = cg ? 3 : 1,
                           .opts = {m->opt_t, m->opt_d[0], m->opt_d[1]}};
    if (!(m->runner = nn_runner_new(&rc))) goto fail;
    return m;
fail:
    err_prefix("building %s: ", baseline_name(kind));
    baseline_free(m);
    return NULL;
}

void baseline_free(baseline_model *m) {
    if (!m) return;
    nn_runner_free(m->runner);
    for (int x = 0; x < 2; x++) tensor_release(m->pool[x]);
    nn_optimizer_free(m->opt_t);
    nn_optimizer_free(m->opt_d[0]);
    nn_optimizer_free(m->opt_d[1]);
    nn_free(m->root);
    free(m);
}

tensor *baseline_translate(void *model, int to, tensor *src) {
    baseline_model *m = model;
    return nn_forward(to == DOMAIN_A ? m->t_ba : m->t_ab, src);
}

static tensor *l1(tensor *x, tensor *y) { return op_mean(op_abs(op_sub(x, y)), ALL_AXES, false); }

// Least squares towards v: mean (pred - v)^2 over every patch score.
static tensor *lsgan(tensor *pred, double v) {
    return pred ? op_mse(pred,
                         tensor_full(pred->dtype, pred->ndim, pred->shape, v, tensor_device(pred)))
                : NULL;
}

// Cycle-GAN's image pool: each new translation is stored until the pool holds 50; after that,
// with probability 1/2 D sees a random stored one instead (which the new one replaces). The
// choices for one step's n translations, made in order on the host: with the sources numbered
// 0 .. P-1 for the pool's images before the step and P .. P+n-1 for the step's translations,
// row i of s_out (n, P+n) is one-hot at what D sees in place of translation i, and row k of
// s_pool (P, P+n) at what slot k holds after the step.
static void pool_plan(baseline_model *m, int x, int n, double *s_out, double *s_pool) {
    enum { P = CYCLEGAN_POOL };
    int src[P];
    for (int k = 0; k < P; k++) src[k] = k;
    memset(s_out, 0, sizeof(double) * (size_t)(n * (P + n)));
    memset(s_pool, 0, sizeof(double) * (size_t)(P * (P + n)));
    for (int i = 0; i < n; i++) {
        int seen = P + i;
        if (m->pool_n[x] < P) {
            src[m->pool_n[x]++] = P + i;
        } else {
            double u[2];
            rng_fill_uniform(&m->pool_rng, u, 2, 0, 1);
            if (u[0] >= 0.5) {
                int k = (int)(u[1] * P) % P;
                seen = src[k]; // the stored one (or one this step stored there before)
                src[k] = P + i;
            }
        }
        s_out[i * (P + n) + seen] = 1;
    }
    for (int k = 0; k < P; k++) s_pool[k * (P + n) + src[k]] = 1;
}

// rows = sel @ images, exactly: each output is one source image (times 1, plus zeros), as
// an elementwise product summed over the sources (a matmul would round them to TF32 on CUDA).
static tensor *select_rows(tensor *sel, tensor *images) {
    int64_t r = sel->shape[0], s = sel->shape[1], hw = tensor_numel(images) / s;
    tensor *picked = op_sum(op_mul(op_reshape(sel, 3, (int64_t[]){r, s, 1}),
                                   op_reshape(images, 3, (int64_t[]){1, s, hw})),
                            1, (const int[]){1}, false);
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, images->shape, sizeof shape);
    shape[0] = r;
    return picked ? op_reshape(picked, images->ndim, shape) : NULL;
}

// What D_X sees of this step's translations (per pool_plan's s_out), the pool updated in place
// (per s_pool).
static tensor *pool_query(baseline_model *m, int x, tensor *fakes, tensor *s_out, tensor *s_pool) {
    tensor *sources = op_concat(2, (tensor *[]){m->pool[x], fakes}, 0);
    if (!sources) return NULL;
    tensor *seen = select_rows(s_out, sources), *kept = select_rows(s_pool, sources);
    return seen && kept && !tensor_copy_(m->pool[x], kept) ? seen : NULL;
}

// The step's body (nn/step.h): inputs a, b, and for Cycle-GAN each domain's pool plan
// (s_out_a, s_pool_a, s_out_b, s_pool_b). Slots: baseline_step's losses.
static int step_body(nn_runner *r, void *ctx, tensor *const *in) {
    baseline_model *m = ctx;
    tensor *a = in[0], *b = in[1];
    int rc = -1;
    nn_optimizer_zero_grad(m->opt_t);
    // Each forward runs in a scope of its own, ended before the backward with only the losses
    // (and what later updates read) kept: the graph alone holds the activations, and frees each
    // as soon as the backward is past it (autograd.h).
    if (m->kind == BASELINE_AUTOENCODER) {
        tensor_scope_begin();
        tensor *lab = op_mse(nn_forward(m->t_ab, a), b), *lba = op_mse(nn_forward(m->t_ba, b), a);
        tensor *l[3] = {lab, lba, op_add(lab, lba)};
        tensor_scope_end_keeping(3, l);
        if (nn_step_report(r, l[0], 0, "Auto-Encoder a->b loss") ||
            nn_step_report(r, l[1], 1, "Auto-Encoder b->a loss"))
            return -1;
        return nn_step_minimize(r, m->opt_t, l[2], 2, "Auto-Encoder loss");
    }
    // generators: fool both (frozen) discriminators, least squares towards "real" (1), and
    // come back round the cycle (L1, lambda 10); the translations (detached) go on.
    nn_freeze(m->d_a, true);
    nn_freeze(m->d_b, true);
    tensor_scope_begin();
    tensor *fake_b = nn_forward(m->t_ab, a), *fake_a = nn_forward(m->t_ba, b);
    tensor *adv =
        op_add(lsgan(nn_forward(m->d_b, fake_b), 1), lsgan(nn_forward(m->d_a, fake_a), 1));
    tensor *cyc = op_add(l1(nn_forward(m->t_ba, fake_b), a), l1(nn_forward(m->t_ab, fake_a), b));
    tensor *kept[4] = {cyc, op_add(adv, op_mul_scalar(cyc, m->cycle_weight)),
                       fake_a ? op_detach(fake_a) : NULL, fake_b ? op_detach(fake_b) : NULL};
    tensor_scope_end_keeping(4, kept);
    tensor_scope_begin();
    rc = nn_step_report(r, kept[0], 3, "Cycle-GAN cycle loss");
    if (!rc) rc = nn_step_minimize(r, m->opt_t, kept[1], 0, "Cycle-GAN generator loss");
    tensor_scope_end();
    tensor *fakes[2] = {rc ? NULL : kept[2], rc ? NULL : kept[3]};
    nn_freeze(m->d_a, false);
    nn_freeze(m->d_b, false);
    if (rc) return rc;
    // discriminators: (D(real) - 1)^2 + D(pooled translation)^2, halved
    tensor *reals[2] = {a, b};
    nn_module *ds[2] = {m->d_a, m->d_b};
    static const char *what[2] = {"Cycle-GAN D_A loss", "Cycle-GAN D_B loss"};
    for (int x = 0; x < 2 && !rc; x++) {
        nn_optimizer_zero_grad(m->opt_d[x]);
        tensor_scope_begin();
        tensor *pooled = pool_query(m, x, fakes[x], in[2 + 2 * x], in[3 + 2 * x]);
        tensor *loss = op_mul_scalar(
            op_add(lsgan(nn_forward(ds[x], reals[x]), 1), lsgan(nn_forward(ds[x], pooled), 0)),
            0.5);
        tensor_scope_end_keeping(1, &loss);
        tensor_scope_begin();
        rc = nn_step_minimize(r, m->opt_d[x], loss, 1 + x, what[x]);
        tensor_scope_end();
    }
    return rc;
}

int baseline_step(baseline_model *m, tensor *a, tensor *b, double losses[4]) {
    tensor_scope_begin();
    tensor *in[6] = {a, b};
    int n_in = 2, rc = 0;
    if (m->kind == BASELINE_CYCLEGAN) { // the pools' plans for this step, as data
        int n = (int)a->shape[0];
        enum { P = CYCLEGAN_POOL };
        double *s_out = malloc(sizeof(double) * (size_t)(n * (P + n))),
               *s_pool = malloc(sizeof(double) * (size_t)(P * (P + n)));
        tensor *fakes[2] = {b, a}; // D_A sees G_BA(b), shaped as b; D_B sees G_AB(a)
        for (int x = 0; x < 2 && !rc; x++) {
            if (!m->pool[x]) {
                int64_t shape[TENSOR_MAX_DIMS];
                memcpy(shape, fakes[x]->shape, sizeof shape);
                shape[0] = P;
                m->pool[x] =
                    tensor_keep(tensor_zeros(m->ctx.dtype, fakes[x]->ndim, shape, m->ctx.device));
            }
            if (!s_out || !s_pool || !m->pool[x]) {
                err_set("out of memory for Cycle-GAN's image pools");
                rc = -1;
                break;
            }
            pool_plan(m, x, n, s_out, s_pool);
            in[2 + 2 * x] =
                tensor_from_doubles(m->ctx.dtype, SHAPE(n, P + n), s_out, m->ctx.device);
            in[3 + 2 * x] =
                tensor_from_doubles(m->ctx.dtype, SHAPE(P, P + n), s_pool, m->ctx.device);
            if (!in[2 + 2 * x] || !in[3 + 2 * x]) rc = -1;
        }
        free(s_out);
        free(s_pool);
        n_in = 6;
    }
    if (!rc) rc = nn_runner_run(m->runner, 0, step_body, m, n_in, in, losses, 4);
    if (rc) err_prefix("%s step: ", baseline_name(m->kind));
    tensor_scope_end();
    return rc;
}

tensor *baseline_keep_bright(tensor *y, double keep) {
    if (!y) return NULL;
    // y' = [y + 1 >= keep (max y + 1)] (y + 1) - 1, the maximum per image
    tensor *up = op_add_scalar(y, 1.0);
    tensor *top = op_max(up, 3, (const int[]){1, 2, 3}, true);
    tensor *kept = op_compare(EW_GE, up, op_mul_scalar(top, keep));
    return op_add_scalar(op_mul(kept, up), -1.0);
}

tensor *baseline_translate_nuclei_dropped(void *model, int to, tensor *src) {
    tensor *y = baseline_translate(model, to, src);
    return to == DOMAIN_A ? y : baseline_keep_bright(y, BASELINE_NUCLEI_KEEP);
}
