#include "baselines.h"

#include <math.h>
#include <stdlib.h>

#include "../tensor/error.h"

const char *baseline_name(baseline_kind kind) {
    return kind == BASELINE_CYCLEGAN ? "Cycle-GAN" : "Auto-Encoder";
}

static nn_module *translator(baseline_model *m) {
    nn_module *e = banis_make_encoder(&m->arch, &m->ctx),
              *g = banis_make_generator(&m->arch, &m->ctx);
    return nn_sequential(2, (nn_module *[]){e, g}); // NULL (both freed) if either is
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
    m->root = nn_container(baseline_name(kind));
    m->t_ab = translator(m);
    m->t_ba = translator(m);
    if (nn_adopt(m->root, 2, (const char *[]){"t_ab", "t_ba"}, (nn_module *[]){m->t_ab, m->t_ba}))
        goto fail;
    if (kind == BASELINE_CYCLEGAN) {
        m->d_a = banis_make_discriminator(arch, &m->ctx);
        m->d_b = banis_make_discriminator(arch, &m->ctx);
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

static tensor *labels(tensor *like, double v) {
    return tensor_full(like->dtype, SHAPE(like->shape[0], 1), v, tensor_device(like));
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
    // translators: fool both (frozen) discriminators and come back round the cycle
    nn_freeze(m->d_a, true);
    nn_freeze(m->d_b, true);
    tensor *fake_b = nn_forward(m->t_ab, a), *fake_a = nn_forward(m->t_ba, b);
    tensor *adv = op_add(op_bce_logits(nn_forward(m->d_b, fake_b), labels(a, 1)),
                         op_bce_logits(nn_forward(m->d_a, fake_a), labels(b, 1)));
    tensor *cyc = op_add(l1(nn_forward(m->t_ba, fake_b), a), l1(nn_forward(m->t_ab, fake_a), b));
    losses[3] = cyc ? tensor_item(cyc) : NAN;
    rc = nn_minimize(m->opt_t, op_add(adv, op_mul_scalar(cyc, m->cycle_weight)), &losses[0]);
    nn_freeze(m->d_a, false);
    nn_freeze(m->d_b, false);
    if (rc) goto done;
    // discriminators: real = 1, translated = 0
    tensor *reals[2] = {a, b}, *fakes[2] = {op_detach(fake_a), op_detach(fake_b)};
    nn_module *ds[2] = {m->d_a, m->d_b};
    for (int x = 0; x < 2 && !rc; x++) {
        nn_optimizer_zero_grad(m->opt_d[x]);
        tensor *pred = nn_forward(ds[x], op_concat(2, (tensor *[]){reals[x], fakes[x]}, 0));
        tensor *lab = op_concat(2, (tensor *[]){labels(reals[x], 1), labels(fakes[x], 0)}, 0);
        rc = nn_minimize(m->opt_d[x], op_bce_logits(pred, lab), &losses[1 + x]);
    }
done:
    if (rc) err_prefix("%s step: ", baseline_name(m->kind));
    tensor_scope_end();
    return rc;
}
