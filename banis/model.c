// BANIS's networks, composites and training stages. Each stage builds its graph, calls
// backward and steps its optimizer: the training step reads like the paper; nn/'s step runner
// runs it (eagerly, or captured and replayed as a CUDA graph) and reads its losses once.
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"

banis_arch banis_arch_paper(void) {
    return (banis_arch){.latent = 100,
                        .width = 1.0,
                        .slope = 0.2,
                        .bn_momentum = 0.8,
                        .bn_eps = 1e-3,
                        .dropout = 0.3,
                        .g_bn_sets = 2};
}

banis_schedule banis_schedule_paper(void) {
    return (banis_schedule){.lr_d = {2e-5, 2e-5},
                            .lr_g = {2e-5, 1e-5},
                            .beta1 = 0.5,
                            .beta2 = 0.999,
                            .adam_eps = 1e-7,
                            .lr_sc = 1e-4,
                            .sc_decay = 0.5,
                            .warmup_steps = 17000,
                            .stage2_steps = 13000,
                            .stage3_steps = 10000,
                            .batch = 128,
                            .identical_gen = true};
}

int64_t banis_schedule_steps(const banis_schedule *s) {
    return s->warmup_steps + s->stage2_steps + s->stage3_steps;
}

int64_t banis_channels(double width, int n) {
    int64_t c = (int64_t)lround(n * width);
    return c < 1 ? 1 : c;
}

// Appends `layer`, a BatchNorm over `channels` and a LeakyReLU: the networks' repeated unit
// (the three stay flat in the Sequential, named by their index as in the reference).
static int with_bn_act(nn_module **l, int n, nn_module *layer, int64_t channels,
                       const banis_arch *a, nn_ctx *c) {
    l[n] = layer;
    l[n + 1] = nn_batch_norm(c, channels, a->bn_momentum, a->bn_eps);
    l[n + 2] = nn_leaky_relu(a->slope);
    return n + 3;
}

// G: z (N, latent) -> (N, 1, 64, 64)
nn_module *banis_make_generator(const banis_arch *a, nn_ctx *c) {
    int64_t c0 = banis_channels(a->width, 256), c1 = banis_channels(a->width, 256),
            c2 = banis_channels(a->width, 128), c3 = banis_channels(a->width, 64);
    nn_module *l[15];
    int n = with_bn_act(l, 0, nn_linear(c, a->latent, 8 * 8 * c0, false), 8 * 8 * c0, a, c);
    l[n++] = nn_reshape(SHAPE(c0, 8, 8));
    n = with_bn_act(l, n, nn_conv_transpose2d(c, c0, c1, 5, 1, NN_PAD_SAME, false), c1, a, c);
    n = with_bn_act(l, n, nn_conv_transpose2d(c, c1, c2, 5, 2, NN_PAD_SAME, false), c2, a, c);
    n = with_bn_act(l, n, nn_conv_transpose2d(c, c2, c3, 5, 2, NN_PAD_SAME, false), c3, a, c);
    l[n++] = nn_conv_transpose2d(c, c3, 1, 5, 2, NN_PAD_SAME, false);
    l[n++] = nn_tanh();
    nn_module *g = nn_sequential(n, l); // NULL (all freed) if a layer could not be built
    // Keras: dense layers glorot_uniform, convolutions he_normal (the constructors' defaults),
    // except the last transposed convolution, to which the reference gives no initialiser:
    // Keras's glorot_uniform (he_normal there starts 44% of the output pixels saturated)
    if (g && nn_reinit(c, g->children[n - 2], "weight", NN_INIT_GLOROT_UNIFORM)) {
        nn_free(g);
        return NULL;
    }
    return g;
}

// D: (N, 1, 64, 64) -> (N, 1) logit (sigmoid of it: the probability of "real")
nn_module *banis_make_discriminator(const banis_arch *a, nn_ctx *c) {
    int64_t c1 = banis_channels(a->width, 64), c2 = banis_channels(a->width, 128);
    nn_module *l[] = {
        nn_conv2d(c, 1, c1, 5, 2, NN_PAD_SAME, true),
        nn_leaky_relu(a->slope),
        nn_dropout(c, a->dropout),
        nn_conv2d(c, c1, c2, 5, 2, NN_PAD_SAME, true),
        nn_leaky_relu(a->slope),
        nn_dropout(c, a->dropout),
        nn_flatten(),
        nn_linear(c, 16 * 16 * c2, 1, true), // logits: the sigmoid is in the loss (BCE with logits)
    };
    return nn_sequential((int)(sizeof l / sizeof *l), l); // NULL (all freed) on failure
}

// E: (N, 1, 64, 64) -> (N, latent)
nn_module *banis_make_encoder(const banis_arch *a, nn_ctx *c) {
    int64_t c1 = banis_channels(a->width, 128), c2 = banis_channels(a->width, 256),
            c3 = banis_channels(a->width, 512);
    nn_module *l[11];
    int n = with_bn_act(l, 0, nn_conv2d(c, 1, c1, 5, 2, NN_PAD_SAME, true), c1, a, c);
    n = with_bn_act(l, n, nn_conv2d(c, c1, c2, 5, 2, NN_PAD_SAME, true), c2, a, c);
    n = with_bn_act(l, n, nn_conv2d(c, c2, c3, 5, 2, NN_PAD_SAME, true), c3, a, c);
    l[n++] = nn_flatten();
    l[n++] = nn_linear(c, 8 * 8 * c3, a->latent, true);
    return nn_sequential(n, l); // NULL (all freed) on failure
}

banis_model *banis_model_new(const banis_arch *arch, const banis_schedule *s, tensor_dtype dt,
                             tensor_device_type dev, uint64_t seed) {
    banis_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->arch = *arch;
    m->sched = *s;
    rng_init(&m->init_rng, seed);
    rng_init(&m->dropout_rng, seed + 1);
    rng_init(&m->noise_rng, seed + 2);
    m->ctx = (nn_ctx){dt, dev, &m->init_rng, &m->dropout_rng};
    m->root = nn_container("BANIS");
    static const char *names[3][2] = {{"gen_a", "gen_b"}, {"disc_a", "disc_b"}, {"enc_a", "enc_b"}};
    for (int x = 0; x < 2; x++) {
        nn_module *nets[3] = {banis_make_generator(&m->arch, &m->ctx)};
        nets[1] = banis_make_discriminator(&m->arch, &m->ctx); // in this order: the init draws
        nets[2] = banis_make_encoder(&m->arch, &m->ctx);
        const char *net_names[3] = {names[0][x], names[1][x], names[2][x]};
        if (nn_adopt(m->root, 3, net_names, nets))
            goto fail; // the root owns them, or they are freed
        m->gen[x] = nets[0];
        m->disc[x] = nets[1];
        m->enc[x] = nets[2];
        if (m->arch.g_bn_sets > 1 && nn_bn_stat_sets(&m->ctx, m->gen[x], m->arch.g_bn_sets))
            goto fail;
    }
    for (int i = 0; i < m->root->n_children; i++)
        if (nn_place(m->root->children[i])) goto fail; // one flat buffer per network
    for (int x = 0; x < 2; x++) {
        char name[32];
        const char *X = x ? "b" : "a";
        snprintf(name, sizeof name, "adam_disc_%s", X);
        m->opt_d[x] = nn_optimizer_for(name, nn_adam(s->lr_d[x], s->beta1, s->beta2, s->adam_eps),
                                       1, &m->disc[x]);
        snprintf(name, sizeof name, "adam_gen_%s", X);
        m->opt_g[x] = nn_optimizer_for(name, nn_adam(s->lr_g[x], s->beta1, s->beta2, s->adam_eps),
                                       1, &m->gen[x]);
        // Successor S_X trains E_X and G_X; two steps per training step (generated, real)
        nn_optim_config sgd =
            s->sc_adam ? nn_adam(s->lr_sc, s->beta1, s->beta2, s->adam_eps) : nn_sgd(s->lr_sc, 0);
        sgd.n_milestones = 1;
        sgd.factor = s->sc_decay;
        sgd.milestones[0] = 2 * s->stage2_steps;
        snprintf(name, sizeof name, "%s_successor_%s", s->sc_adam ? "adam" : "sgd", X);
        m->opt_s[x] = nn_optimizer_for(name, sgd, 2, (nn_module *[]){m->enc[x], m->gen[x]});
        // Coordinator C_X trains all four of E_A, G_A, E_B, G_B; one step per training step
        sgd.milestones[0] = s->stage2_steps;
        snprintf(name, sizeof name, "%s_coordinator_%s", s->sc_adam ? "adam" : "sgd", X);
        m->opt_c[x] = nn_optimizer_for(
            name, sgd, 4, (nn_module *[]){m->enc[x], m->gen[x], m->enc[1 - x], m->gen[1 - x]});
        if (!m->opt_d[x] || !m->opt_g[x] || !m->opt_s[x] || !m->opt_c[x]) goto fail;
    }
    nn_runner_config rc = {.dtype = dt,
                           .device = dev,
                           .graphs = true,
                           .n_rngs = 2,
                           .n_opts = 8,
                           .rngs = {&m->dropout_rng, &m->noise_rng}};
    for (int x = 0; x < 2; x++) {
        rc.opts[4 * x] = m->opt_d[x], rc.opts[4 * x + 1] = m->opt_g[x];
        rc.opts[4 * x + 2] = m->opt_s[x], rc.opts[4 * x + 3] = m->opt_c[x];
    }
    if (!(m->runner = nn_runner_new(&rc))) goto fail;
    return m;
fail:
    err_prefix("building BANIS: ");
    banis_model_free(m);
    return NULL;
}

void banis_model_free(banis_model *m) {
    if (!m) return;
    nn_runner_free(m->runner);
    for (int x = 0; x < 2; x++) {
        nn_optimizer_free(m->opt_d[x]);
        nn_optimizer_free(m->opt_g[x]);
        nn_optimizer_free(m->opt_s[x]);
        nn_optimizer_free(m->opt_c[x]);
    }
    nn_free(m->root);
    tensor_release(m->labels);
    free(m);
}

// The networks of a banis-train checkpoint (its weights and batch-norm statistics; no optimizer
// state), on the CPU in float32, in inference mode.
banis_model *banis_model_load(const char *path) {
    st_file *f = st_open(path);
    if (!f) return NULL;
    const char *w = st_meta_get(f, "config.width"), *lat = st_meta_get(f, "config.latent"),
               *sets = st_meta_get(f, "config.g_bn_sets");
    if (!w || !lat) {
        err_set("%s: not a banis-train checkpoint (no config.width / config.latent)", path);
        st_close(f);
        return NULL;
    }
    banis_arch a = banis_arch_paper();
    a.width = atof(w);
    a.latent = atoi(lat);
    a.g_bn_sets = sets ? atoi(sets) : 1; // checkpoints before the per-input sets had one
    st_close(f);
    banis_schedule s = banis_schedule_paper();
    banis_model *m = banis_model_new(&a, &s, TENSOR_F32, DEVICE_CPU, 0);
    if (!m) return NULL;
    nn_checkpoint ck = {0};
    nn_ckpt_add_module(&ck, "", m->root);   // weights and batch-norm statistics
    int rc = nn_ckpt_load(&ck, path, NULL); // refuses a non-finite tensor before loading it
    nn_ckpt_free(&ck);
    if (rc) {
        banis_model_free(m);
        return NULL;
    }
    nn_set_training(m->root, false);
    return m;
}

void banis_model_checkpoint(banis_model *m, nn_checkpoint *c) {
    nn_ckpt_add_module(c, "", m->root);
    for (int x = 0; x < 2; x++) {
        nn_ckpt_add_optimizer(c, m->opt_d[x]);
        nn_ckpt_add_optimizer(c, m->opt_g[x]);
        nn_ckpt_add_optimizer(c, m->opt_s[x]);
        nn_ckpt_add_optimizer(c, m->opt_c[x]);
    }
    nn_ckpt_add_rng(c, "dropout", &m->dropout_rng);
    nn_ckpt_add_rng(c, "noise", &m->noise_rng);
}

// ---- composites -----------------------------------------------------------------------------
tensor *banis_sample_z(banis_model *m, int n) {
    return op_rand_uniform(&m->noise_rng, m->ctx.dtype, SHAPE(n, m->arch.latent), -1, 1,
                           m->ctx.device);
}

// G's batch-norm statistics: set 0 for z, set 1 for encoder codes (when arch.g_bn_sets is 2)
enum { STATS_Z = 0, STATS_CODES = 1 };

tensor *banis_generate(banis_model *m, int x, tensor *z) {
    nn_bn_use_stats(m->gen[x], STATS_Z);
    return nn_forward(m->gen[x], z);
}

tensor *banis_pioneer(banis_model *m, int x, tensor *z) {
    return nn_forward(m->disc[x], banis_generate(m, x, z));
}

// S_A = G_A(E_A(b)) maps B to A; S_B = G_B(E_B(a)) maps A to B.
tensor *banis_successor(banis_model *m, int x, tensor *src) {
    tensor *code = nn_forward(m->enc[x], src);
    nn_bn_use_stats(m->gen[x], STATS_CODES);
    return nn_forward(m->gen[x], code);
}

// C_A = S_B(S_A(b)): B -> B; C_B = S_A(S_B(a)): A -> A.
tensor *banis_coordinator(banis_model *m, int x, tensor *src) {
    return banis_successor(m, 1 - x, banis_successor(m, x, src));
}

// ---- training stages ----------------------------------------------------------------------
// One optimizer update on `loss`. Within banis_train_step the loss is one of the step's runner
// slots (the field dst points to: read with the step's others at its end, one copy and one
// synchronisation per step); alone, it is read and checked at once into *dst.
static int minimize(banis_model *m, nn_optimizer *o, tensor *loss, double *dst, const char *what) {
    if (!nn_runner_running(m->runner)) return nn_minimize(o, loss, dst);
    return nn_step_minimize(m->runner, o, loss, (int)(dst - m->slot_base), what);
}

// The adversarial targets for batches of n (model.h): made at the first update of a batch size.
static tensor *adversarial_labels(banis_model *m, const tensor *real) {
    int64_t n = real->shape[0];
    if (m->labels && m->labels->shape[0] == 2 * n && m->labels->dtype == real->dtype)
        return m->labels;
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    tensor *t = op_concat(2,
                          (tensor *[]){tensor_ones(real->dtype, SHAPE(n, 1), tensor_device(real)),
                                       tensor_zeros(real->dtype, SHAPE(n, 1), tensor_device(real))},
                          0);
    if (t) t = tensor_keep(t);
    tensor_scope_end();
    ag_set_grad_enabled(prev);
    if (!t) return NULL;
    tensor_release(m->labels);
    return m->labels = t;
}

int banis_pioneer_step(banis_model *m, int x, tensor *real, tensor **generated, banis_losses *l) {
    int n = (int)real->shape[0], rc = -1;
    tensor *z = banis_sample_z(m, n);
    // x_gen = G_X(z) in inference mode (in a scope of its own: only gen outlives it)
    nn_set_training(m->gen[x], false);
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    tensor *gen = banis_generate(m, x, z);
    tensor_scope_end_keeping(1, &gen);
    ag_set_grad_enabled(prev);
    nn_set_training(m->gen[x], true);
    if (!gen) return -1;
    // D_X learns real = 1, generated = 0. Each update's forward runs in a scope of its own,
    // ended before the backward with only the loss kept: the graph alone holds the
    // activations and frees each as soon as the backward is past it (only z and gen outlive
    // the update; see autograd.h).
    nn_optimizer_zero_grad(m->opt_d[x]);
    tensor *labels = adversarial_labels(m, real);
    if (!labels) goto done;
    tensor_scope_begin();
    tensor *pred = nn_forward(m->disc[x], op_concat(2, (tensor *[]){real, gen}, 0));
    tensor *loss = op_bce_logits(pred, labels);
    tensor_scope_end_keeping(1, &loss);
    tensor_scope_begin();
    int rc_d = minimize(m, m->opt_d[x], loss, &l->d_loss[x], x ? "D_B loss" : "D_A loss");
    tensor_scope_end();
    if (rc_d) goto done;
    // G_X learns to make the frozen D_X say 1 on G_X(z), the same z
    nn_freeze(m->disc[x], true);
    nn_optimizer_zero_grad(m->opt_g[x]);
    tensor_scope_begin();
    loss = op_bce_logits(banis_pioneer(m, x, z), tensor_view_slice(labels, 0, 0, n, 1));
    tensor_scope_end_keeping(1, &loss);
    tensor_scope_begin();
    rc = minimize(m, m->opt_g[x], loss, &l->g_loss[x], x ? "G_B loss" : "G_A loss");
    tensor_scope_end();
    nn_freeze(m->disc[x], false);
done:
    if (rc) err_prefix("Pioneer %c: ", "AB"[x]);
    if (generated) *generated = gen;
    return rc;
}

// One Successor or Coordinator update: net_X(src) against the detached target by MSE.
static int mse_step(banis_model *m, nn_optimizer *o, tensor *(*net)(banis_model *, int, tensor *),
                    int x, tensor *src, tensor *target, double *loss, const char *what,
                    const char *name) {
    nn_optimizer_zero_grad(o);
    tensor_scope_begin(); // the forward: ended before the backward, which frees the graph
    tensor *l = op_mse(net(m, x, src), op_detach(target));
    tensor_scope_end_keeping(1, &l);
    tensor_scope_begin();
    int rc = minimize(m, o, l, loss, what);
    tensor_scope_end();
    if (rc) err_prefix("%s %c: ", name, "AB"[x]);
    return rc;
}

int banis_successor_step(banis_model *m, int x, tensor *src, tensor *target, double *loss) {
    return mse_step(m, m->opt_s[x], banis_successor, x, src, target, loss,
                    x ? "Successor B loss" : "Successor A loss", "Successor");
}

int banis_coordinator_step(banis_model *m, int x, tensor *src, double *loss) {
    return mse_step(m, m->opt_c[x], banis_coordinator, x, src, src, loss,
                    x ? "Coordinator B loss" : "Coordinator A loss", "Coordinator");
}

typedef struct {
    banis_model *m;
    int64_t step;
} step_ctx;

// The step's body (nn/step.h): every update on the inputs, each loss kept in the runner's slot
// of its banis_losses field.
static int step_body(nn_runner *r, void *ctx, tensor *const *in) {
    (void)r;
    step_ctx *c = ctx;
    banis_model *m = c->m;
    banis_losses scratch; // its addresses only: which field is which slot
    m->slot_base = &scratch.d_loss[0];
    banis_losses *l = &scratch;
    tensor *a = in[0], *b = in[1], *real[2] = {a, b}, *gen[2] = {0};
    int rc = 0;
    for (int x = 0; x < 2 && !rc; x++) rc = banis_pioneer_step(m, x, real[x], &gen[x], l);
    if (!rc && c->step >= m->sched.warmup_steps) {
        // S_A on (b -> a_gen), S_B on (a -> b_gen), S_A on (b -> a), S_B on (a -> b)
        if (m->sched.identical_gen) {
            rc = banis_successor_step(m, DOMAIN_A, b, gen[DOMAIN_A], &l->id_gen[DOMAIN_A]);
            if (!rc) rc = banis_successor_step(m, DOMAIN_B, a, gen[DOMAIN_B], &l->id_gen[DOMAIN_B]);
        }
        if (!rc) rc = banis_successor_step(m, DOMAIN_A, b, a, &l->id_real[DOMAIN_A]);
        if (!rc) rc = banis_successor_step(m, DOMAIN_B, a, b, &l->id_real[DOMAIN_B]);
        // C_A on (b -> b), C_B on (a -> a)
        if (!rc) rc = banis_coordinator_step(m, DOMAIN_A, b, &l->pm[DOMAIN_A]);
        if (!rc) rc = banis_coordinator_step(m, DOMAIN_B, a, &l->pm[DOMAIN_B]);
    }
    m->slot_base = NULL;
    return rc;
}

_Static_assert(sizeof(banis_losses) == 10 * sizeof(double), "banis_losses: the runner's slots");

int banis_train_step(banis_model *m, int64_t step, tensor *a, tensor *b, banis_losses *l) {
    step_ctx c = {m, step};
    return nn_runner_run(m->runner, step >= m->sched.warmup_steps, step_body, &c, 2,
                         (tensor *[]){a, b}, &l->d_loss[0], (int)(sizeof *l / sizeof l->d_loss[0]));
}
