// BANIS (../shared/BANIS.md): per domain X in {A = membrane, B = nuclei} a generator G_X,
// a discriminator D_X and an encoder E_X, and six composites that share them:
//   Pioneer     P_X = D_X(G_X(z))            adversarial loss (D frozen inside P)
//   Successor   S_A = G_A(E_A(b)): B -> A    identical loss (trains E_A and G_A)
//               S_B = G_B(E_B(a)): A -> B
//   Coordinator C_A = S_B(S_A(b)): B -> B    pair-matched loss (trains all four)
//               C_B = S_A(S_B(a)): A -> A
#pragma once
#include "../nn/checkpoint.h"
#include "../nn/nn.h"
#include "../nn/step.h"
#include "data/dataset.h"
#include "geometry.h"

enum { DOMAIN_A = 0, DOMAIN_B = 1 };

typedef struct {
    int latent;         // 100
    double width;       // channel multiplier (1 = the paper's 256/128/64...)
    double slope;       // LeakyReLU 0.2
    double bn_momentum; // Keras 0.8
    double bn_eps;      // 1e-3
    double dropout;     // 0.3
    // Batch-norm running statistics of G: 1 = one set (the reference code), 2 = one set for
    // G on z (Pioneer, sampling) and one for G on encoder codes (Successor, Coordinator). With
    // one set, the codes' statistics (4 of G's 5 training passes per full step) are what G uses
    // in inference on z: D's fakes and the samples collapse to one image whatever z is.
    int g_bn_sets;
} banis_arch;

typedef struct {
    double lr_d[2], lr_g[2]; // Adam rates for D_A, D_B and G_A, G_B
    double beta1, beta2, adam_eps;
    double lr_sc;    // rate of the Successors and Coordinators
    bool sc_adam;    // false: plain SGD (the paper); true: Adam with beta1, beta2, adam_eps
    double sc_decay; // multiplies lr_sc in the last stage (0.5)
    int64_t warmup_steps, stage2_steps, stage3_steps;
    int batch;
    // An ablation, not BANIS: false skips the Successor steps towards G's images (S_A on
    // b -> G_A(z), S_B on a -> G_B(z)), keeping the identical loss's half on the real pairs.
    bool identical_gen;
} banis_schedule;

banis_arch banis_arch_paper(void);
// n channels scaled by width, rounded, at least 1: every network's channel counts.
int64_t banis_channels(double width, int n);

// The networks (BANIS.md), also the parts the baselines are built from.
nn_module *banis_make_generator(const banis_arch *a, nn_ctx *c); // z (N, latent) -> (N, 1, 64, 64)
nn_module *banis_make_discriminator(const banis_arch *a, nn_ctx *c); // (N, 1, 64, 64) -> (N, 1)
nn_module *banis_make_encoder(const banis_arch *a, nn_ctx *c); // (N, 1, 64, 64) -> (N, latent)
banis_schedule banis_schedule_paper(void);
// BANIS's steps in all stages.
int64_t banis_schedule_steps(const banis_schedule *s);

// Losses of one training step (mean over the batch); NaN where a stage did not run.
typedef struct {
    double d_loss[2], g_loss[2];  // adversarial
    double id_gen[2], id_real[2]; // identical: S_X vs generated / vs real
    double pm[2];                 // pair-matched: C_X(src) vs src
} banis_losses;

typedef struct {
    banis_arch arch;
    banis_schedule sched;
    nn_ctx ctx;
    rng init_rng, dropout_rng, noise_rng;
    nn_module *root; // children gen_a, gen_b, disc_a, disc_b, enc_a, enc_b
    nn_module *gen[2], *disc[2], *enc[2];
    nn_optimizer *opt_d[2], *opt_g[2], *opt_s[2], *opt_c[2];
    // banis_train_step runs through nn/'s step runner (nn/step.h): on CUDA each kind of step
    // (warm-up, full) is captured as a graph at its first run and replayed after; the losses
    // are the runner's slots (the fields of banis_losses, in order), read once per step.
    nn_runner *runner;
    double *slot_base; // inside a step: the banis_losses whose fields are the runner's slots
    // the adversarial targets, made once per batch size (not filled anew at every update):
    // (2n, 1), n ones then n zeros (D: real, generated); its first n rows are G's ones
    tensor *labels;
} banis_model;

banis_model *banis_model_new(const banis_arch *arch, const banis_schedule *sched, tensor_dtype dt,
                             tensor_device_type dev, uint64_t seed);
void banis_model_free(banis_model *m);
// A banis-train checkpoint's networks, CPU float32, inference mode; NULL (err_message) if the file
// is not one, is damaged, or holds non-finite weights.
banis_model *banis_model_load(const char *path);
// Everything a run must save to continue exactly (parameters, buffers, optimizer state, RNGs).
void banis_model_checkpoint(banis_model *m, nn_checkpoint *c);

// The composites (graphs built on the shared modules).
tensor *banis_generate(banis_model *m, int x, tensor *z);      // G_X(z)
tensor *banis_pioneer(banis_model *m, int x, tensor *z);       // D_X(G_X(z))
tensor *banis_successor(banis_model *m, int x, tensor *src);   // S_X(src)
tensor *banis_coordinator(banis_model *m, int x, tensor *src); // C_X(src)
tensor *banis_sample_z(banis_model *m, int n);                 // U(-1, 1)^(n, latent)

// The stages of one training step, as in the reference code. a, b: (N, 1, 64, 64).
int banis_pioneer_step(banis_model *m, int x, tensor *real, tensor **generated, banis_losses *l);
int banis_successor_step(banis_model *m, int x, tensor *src, tensor *target, double *loss);
int banis_coordinator_step(banis_model *m, int x, tensor *src, double *loss);
// The whole step: Pioneers always; Successors and Coordinators after warm-up (step >= warmup).
// Its losses are read once, at its end (a NaN or Inf one is refused, naming it). On CUDA the
// first step of each kind is captured as a graph and later ones replay it (nn_runner_graphs,
// nn_runner_fallback say whether and why not: m->runner).
int banis_train_step(banis_model *m, int64_t step, tensor *a, tensor *b, banis_losses *l);

// ---- evaluation ----------------------------------------------------------------------------
#define GMI_THRESHOLDS 3
extern const double banis_gmi_thresholds[GMI_THRESHOLDS]; // 0.1, 0.2, 0.3

// The pairs a generator delivers, (G_A(z), G_B(z)) for z from a fixed stream, scored: Algorithm
// 1's binarisation and Dice on each pair itself, their geometry, its distance to the real test
// pairs' beside that of the same networks untrained, and memorisation of the training pairs.
#define BANIS_GEN_PAIRS 1000    // banis-train's and banis-eval's N
#define BANIS_GEN_SEED  0x9e0de // the z stream: the same pairs for every run of a model
typedef struct {
    int pairs;
    double gmi[GMI_THRESHOLDS], mean_dsc;
    int empty_pairs;
    geometry_summary geometry, untrained_geometry;
    double distance, distance_untrained; // NaN when no untrained networks were given
    memorisation mem;
} banis_gen_scores;

typedef struct {
    int pairs;
    double gmi[GMI_THRESHOLDS]; // % of pairs whose reconstructions overlap with DSC < TS
    double mean_dsc;            // over the pairs with a defined Dice
    int empty_pairs;            // pairs where a_rec's or b_rec's mask is empty
    // ground truth (synthetic data only; NaN otherwise)
    double membrane_dice, nuclei_dice; // reconstructions vs the true masks
    double nuclei_in_cells;            // % of predicted nucleus pixels inside true cells, off walls
    // % of output pixels within 0.01 of the tanh's limits (|v| > 0.99): the reconstructions
    // (a_rec and b_rec) and the real images of the same pairs, for comparison
    double saturated_rec, saturated_real;
    // BANIS only (NaN otherwise): banis_diversity of 16 images G_A(z) against 16 real test A
    // images, and the % of their pixels saturated
    double diversity, saturated_gen;
    // Geometry (geometry.h) of the real test pairs and of the reconstructions (a_rec, b_rec)
    // as pairs, and the geometry distance of the reconstructions to the real pairs (each half
    // against the other: banis_half_distance)
    geometry_summary real_geometry, rec_geometry;
    double real_gmi[GMI_THRESHOLDS], real_mean_dsc; // Algorithm 1 on the real test pairs themselves
    double rec_distance, real_distance; // real_distance: the real test pairs' two halves
    banis_gen_scores gen; // what a generator delivers (banis_score_generated); gen.pairs 0: none
    char notes[512]; // what the caller adds below the table (banis-train: a discriminator that won)
} banis_eval;

// How varied n generated images are beside n real ones: the mean pairwise L1 distance (per pixel)
// among the generated over that among the real. 1: as varied as the data; 0: one image drawn n
// times (mode collapse). NaN when n < 2 or the real images are all equal.
#define BANIS_DIVERSITY_COLLAPSED 0.1 // below this, the report says the generator has collapsed
double banis_diversity(const float *generated, const float *real, int n);
// Outputs saturated: this many percentage points more saturated pixels than the real images
#define BANIS_SATURATED_EXCESS 20.0
double banis_saturated_percent(const float *x, size_t n);

// ---- a GAN going wrong, watched over a run ---------------------------------------------------
// D_X has won outright when its loss stays below BANIS_D_WINS_LOSS for BANIS_D_WINS_STEPS steps
// in a row: G_X's gradient through it vanishes and G_X stops learning.
#define BANIS_D_WINS_LOSS  0.01
#define BANIS_D_WINS_STEPS 100
typedef struct {
    int64_t low_since[2]; // first step of D_X's current run below BANIS_D_WINS_LOSS; -1: none
    int64_t won_at[2];    // the step D_X was first found to have won outright; -1: never
} banis_watch;
void banis_watch_init(banis_watch *w);
// Takes one step's losses; returns a bit mask (1 << X) of the D_X found to win at this step.
int banis_watch_step(banis_watch *w, int64_t step, const banis_losses *l);
// The run's warnings, one sentence each, for the progress line's end and gmi.md; "" if none.
void banis_watch_describe(const banis_watch *w, char *out, size_t size);

// Dice between binarised a_rec (at 0.6 max) and b_rec (at 0.3 max), after mapping to [0, 255];
// NaN when both masks are empty (never a match).
double banis_pair_dsc(const float *a_rec, const float *b_rec, uint8_t *mask_a, uint8_t *mask_b);
// GMI over the given pairs of the data set: a_rec = S_A(b), b_rec = S_B(a), in eval mode.
int banis_evaluate(banis_model *m, const banis_dataset *d, const int *idx, int n, banis_eval *out);
// The same for any model that translates B -> A (to = DOMAIN_A) and A -> B (to = DOMAIN_B);
// the model is in whatever mode the caller set (inference, normally).
typedef tensor *(*banis_translate_fn)(void *model, int to, tensor *src);
int banis_evaluate_translator(banis_translate_fn translate, void *model, tensor_dtype dt,
                              tensor_device_type dev, const banis_dataset *d, const int *idx, int n,
                              banis_eval *out);
// GMI of n pairs (a: membrane, b: nuclei) as they are: Algorithm 1's binarisation and Dice on
// each (the test pairs' reconstructions, or generated pairs); the empty-mask pairs counted.
void banis_gmi_of_pairs(const float *a, const float *b, int n, double gmi[GMI_THRESHOLDS],
                        double *mean_dsc, int *empty_pairs);
// n pairs G_A(z), G_B(z) in inference mode, z ~ U(-1, 1) from the stream `seed` (not the
// model's generators): into a and b (n x 64 x 64 each). 0, or -1 (said).
int banis_generate_pairs(banis_model *m, int n, uint64_t seed, float *a, float *b);
// The geometry distance (geometry_distance) of a set of pairs to the real test pairs, made so
// that a real set and a generated one are measured alike: the test pairs' features (n_test
// rows) are split into even and odd rows; the odd rows are the reference; x (n_x rows) is cut
// into sets of h = n_test / 2 rows, each measured against it, and the mean returned (the real
// pairs' even rows give the noise floor of a distance over h pairs). NaN when h < 2 or n_x < h.
double banis_half_distance(const double *f_test, int n_test, const double *f_x, int n_x);
// Scores BANIS_GEN_PAIRS (or n) generated pairs of m into e->gen (untrained: the same networks
// at their initial weights, or NULL), against the split's test pairs and, for memorisation,
// its training pairs. The geometry (e->gen.geometry, the distance) is measured on at least
// n_test / 2 pairs, one set of banis_half_distance, also when n is smaller.
int banis_score_generated(banis_model *m, banis_model *untrained, const banis_dataset *d,
                          const banis_split *s, int n, banis_eval *e);
// Writes the GMI table in Markdown.
int banis_write_gmi_table(const char *path, const banis_eval *e, const char *title,
                          const char *split_how);
