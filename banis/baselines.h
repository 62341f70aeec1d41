// The paper's baselines, written against nn/ as any new model would be:
//   Cycle-GAN as published (Zhu et al. 2017, and the authors' code for the details): ResNet
//     generators G_AB: A -> B and G_BA: B -> A (a 7x7 stem on reflection padding, two stride-2
//     3x3 convolutions, 6 residual blocks, two stride-2 3x3 transposed convolutions, a 7x7
//     output and tanh; instance norm and ReLU between), PatchGAN discriminators D_A and D_B
//     (4x4 convolutions, LeakyReLU 0.2, instance norm), least-squares adversarial losses, L1
//     cycle losses with lambda = 10, no identity loss, D trained on a pool of the last 50
//     translations, Adam beta1 0.5. Channels: 64 * width in the generator's stem and in D's
//     first layer. Two departures, said: weights are initialised as the rest of nn/ (Keras's
//     he_normal) rather than N(0, 0.02), and 'same' padding is Keras's. The published D has
//     three stride-2 layers, a 70x70 receptive field chosen for 256x256 images (about a quarter
//     of their side); on 64x64 images that field would be the whole image, so here D has two,
//     and each of its 16x16 outputs judges a 34x34 patch.
//   Auto-Encoder: two translators (BANIS's encoder then generator: this project's reading of the
//     paper's reference [10], which gives no architecture) trained on the pairs with
//     MSE(T_AB(a), b) + MSE(T_BA(b), a); no adversary.
#pragma once
#include "model.h"

typedef enum { BASELINE_CYCLEGAN, BASELINE_AUTOENCODER } baseline_kind;

#define CYCLEGAN_POOL 50 // earlier translations D is trained on

typedef struct {
    baseline_kind kind;
    banis_arch arch;
    nn_ctx ctx;
    rng init_rng, dropout_rng, pool_rng;
    nn_module *root;
    nn_module *t_ab, *t_ba, *d_a, *d_b; // Cycle-GAN: t_ab = G_AB, t_ba = G_BA
    nn_optimizer *opt_t, *opt_d[2];
    double cycle_weight; // lambda, 10 as in Cycle-GAN
    // Cycle-GAN's pools of earlier translations, per domain (A: from G_BA, B: from G_AB): each
    // (CYCLEGAN_POOL, 1, 64, 64) on the model's device, zeros until filled; pool_n[x] images
    // stored so far. Which translation D sees and which it stores is drawn on the host (the
    // pool's generator) and handed to the step as data, so the step is the same every time (a
    // CUDA graph replays it).
    tensor *pool[2];
    int pool_n[2];
    nn_runner *runner; // baseline_step runs through it (nn/step.h)
} baseline_model;

// The published networks (also for tests): width scales the channels (1: 64 in the stem).
nn_module *cyclegan_generator(double width, nn_ctx *c);
nn_module *cyclegan_discriminator(double width, nn_ctx *c);

// Adam (lr, beta1 0.5) for every network, Cycle-GAN's setting.
baseline_model *baseline_new(baseline_kind kind, const banis_arch *arch, double lr, tensor_dtype dt,
                             tensor_device_type dev, uint64_t seed);
void baseline_free(baseline_model *m);
// One step. Cycle-GAN takes a and b as unpaired batches; the Auto-Encoder as pairs.
// losses: Cycle-GAN [g_total, d_a, d_b, cycle] (the cycle loss before lambda); Auto-Encoder
// [a->b, b->a, their sum, NaN]. Read once at its end; on CUDA a graph from the second step on.
int baseline_step(baseline_model *m, tensor *a, tensor *b, double losses[4]);
// T_BA(src) for to = DOMAIN_A, T_AB(src) for to = DOMAIN_B (a banis_translate_fn).
tensor *baseline_translate(void *model, int to, tensor *src);
const char *baseline_name(baseline_kind kind);

// The GMI gaming the paper describes (its Auto-Encoder "fails to synthesize nuclei ... this
// failure decreases the overlapping and thus increases GMI"), made on purpose from a trained
// Auto-Encoder: T_AB's nucleus images keep only the pixels at least BASELINE_NUCLEI_KEEP of the
// way from the background (-1) to the image's brightest pixel, and the rest become background,
// so only the brightest nuclei, shrunk to their cores, are left. T_BA is unchanged. A
// banis_translate_fn over a baseline_model.
#define BASELINE_NUCLEI_KEEP 0.7
// y (N, 1, H, W) in [-1, 1] with each image's pixels below `keep` of the way from -1 to its
// maximum set to -1.
tensor *baseline_keep_bright(tensor *y, double keep);
tensor *baseline_translate_nuclei_dropped(void *model, int to, tensor *src);
