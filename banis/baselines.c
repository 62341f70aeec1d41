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
    return m;
fail:
    err_prefix("building %s: ", baseline_name(kind));
    baseline_free(m);
    return NULL;
}

void baseline_free(baseline_model *m) {
    if (!m) return;
    for (int x = 0; x < 2; x++)
        for (int i = 0; i < m->pool_n[x]; i++) tensor_release(m->pool[x][i]);
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

// n tensors concatenated on dimension 0, eight at a time (op_concat's most).
static tensor *concat_all(int n, tensor **xs) {
    while (n > 1) {
        int k = 0;
        for (int i = 0; i < n; i += 8)
            xs[k++] = n - i == 1 ? xs[i] : op_concat(n - i < 8 ? n - i : 8, xs + i, 0);
        n = k;
    }
    return xs[0];
}

// Cycle-GAN's image pool: each new translation is stored until the pool holds 50; after that,
// with probability 1/2 D sees a random stored one instead (which the new one replaces).
static tensor *pool_query(baseline_model *m, int x, tensor *fakes) {
    int n = (int)fakes->shape[0];
    tensor **out = malloc(sizeof(tensor *) * (size_t)n);
    if (!out) return NULL;
    tensor *res = NULL;
    for (int i = 0; i < n; i++) {
        int64_t shape[TENSOR_MAX_DIMS];
        memcpy(shape, fakes->shape, sizeof shape);
        shape[0] = 1;
        tensor *img = tensor_empty(fakes->dtype, fakes->ndim, shape, tensor_device(fakes));
        if (!img || tensor_copy_(img, op_slice(fakes, 0, i, i + 1, 1))) goto done;
        out[i] = img;
        if (m->pool_n[x] < CYCLEGAN_POOL) {
            m->pool[x][m->pool_n[x]++] = tensor_retain(img);
            continue;
        }
        double u[2];
        rng_fill_uniform(&m->pool_rng, u, 2, 0, 1);
        if (u[0] < 0.5) continue;
        int k = (int)(u[1] * CYCLEGAN_POOL) % CYCLEGAN_POOL;
        out[i] = m->pool[x][k];     // the stored one, kept alive by this step's scope
        tensor_autorelease(out[i]); // which takes the pool's reference
        m->pool[x][k] = tensor_retain(img);
    }
    res = concat_all(n, out);
done:
    free(out);
    return res;
}

int baseline_step(baseline_model *m, tensor *a, tensor *b, double losses[4]) {
    int rc = -1;
    tensor_scope_begin();
    nn_optimizer_zero_grad(m->opt_t);
    if (m->kind == BASELINE_AUTOENCODER) {
        tensor *lab = op_mse(nn_forward(m->t_ab, a), b), *lba = op_mse(nn_forward(m->t_ba, b), a);
        rc = nn_minimize(m->opt_t, op_add(lab, lba), &losses[2]);
        losses[0] = lab ? tensor_item(lab) : NAN;
        losses[1] = lba ? tensor_item(lba) : NAN;
        goto done;
    }
    // generators: fool both (frozen) discriminators, least squares towards "real" (1), and
    // come back round the cycle (L1, lambda 10)
    nn_freeze(m->d_a, true);
    nn_freeze(m->d_b, true);
    tensor *fake_b = nn_forward(m->t_ab, a), *fake_a = nn_forward(m->t_ba, b);
    tensor *adv =
        op_add(lsgan(nn_forward(m->d_b, fake_b), 1), lsgan(nn_forward(m->d_a, fake_a), 1));
    tensor *cyc = op_add(l1(nn_forward(m->t_ba, fake_b), a), l1(nn_forward(m->t_ab, fake_a), b));
    losses[3] = cyc ? tensor_item(cyc) : NAN;
    rc = nn_minimize(m->opt_t, op_add(adv, op_mul_scalar(cyc, m->cycle_weight)), &losses[0]);
    nn_freeze(m->d_a, false);
    nn_freeze(m->d_b, false);
    if (rc) goto done;
    // discriminators: (D(real) - 1)^2 + D(pooled translation)^2, halved
    tensor *reals[2] = {a, b}, *fakes[2] = {op_detach(fake_a), op_detach(fake_b)};
    nn_module *ds[2] = {m->d_a, m->d_b};
    for (int x = 0; x < 2 && !rc; x++) {
        nn_optimizer_zero_grad(m->opt_d[x]);
        tensor *pooled = pool_query(m, x, fakes[x]);
        tensor *loss = op_mul_scalar(
            op_add(lsgan(nn_forward(ds[x], reals[x]), 1), lsgan(nn_forward(ds[x], pooled), 0)),
            0.5);
        rc = nn_minimize(m->opt_d[x], loss, &losses[1 + x]);
    }
done:
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
