// The paper's baselines, written against nn/ as any new model would be:
//   Cycle-GAN (Zhu et al. 2017): translators T_AB: A -> B and T_BA: B -> A, discriminators D_A
//     and D_B; adversarial (BCE) + lambda * cycle-consistency (L1) losses; trained unpaired.
//   Auto-Encoder: the same two translators trained on the pairs with MSE(T_AB(a), b) +
//     MSE(T_BA(b), a); no adversary.
// A translator is BANIS's encoder then generator (image -> latent -> image) and the
// discriminators are BANIS's, so the three models are sized alike.
#pragma once
#include "model.h"

typedef enum { BASELINE_CYCLEGAN, BASELINE_AUTOENCODER } baseline_kind;

typedef struct {
    baseline_kind kind;
    banis_arch arch;
    nn_ctx ctx;
    rng init_rng, dropout_rng;
    nn_module *root;
    nn_module *t_ab, *t_ba, *d_a, *d_b;
    nn_optimizer *opt_t, *opt_d[2];
    double cycle_weight; // lambda, 10 as in Cycle-GAN
} baseline_model;

// Adam (lr, beta1 0.5) for every network, Cycle-GAN's setting.
baseline_model *baseline_new(baseline_kind kind, const banis_arch *arch, double lr, tensor_dtype dt,
                             tensor_device_type dev, uint64_t seed);
void baseline_free(baseline_model *m);
// One step. Cycle-GAN takes a and b as unpaired batches; the Auto-Encoder as pairs.
// losses: Cycle-GAN [g_total, d_a, d_b, cycle]; Auto-Encoder [a->b, b->a].
int baseline_step(baseline_model *m, tensor *a, tensor *b, double losses[4]);
// T_BA(src) for to = DOMAIN_A, T_AB(src) for to = DOMAIN_B (a banis_translate_fn).
tensor *baseline_translate(void *model, int to, tensor *src);
const char *baseline_name(baseline_kind kind);
