// nn/: layer shapes and names, initialiser statistics, optimizer steps against hand-computed
// values, schedules, freezing, packing, checkpoints (round trip, resume exactness, and
// malformed files refused).
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../nn/checkpoint.h"
#include "../nn/nn.h"
#include "../nn/step.h"
#include "../tensor/error.h"
#include "optim_by_hand.h"
#include "check_runner.h"

static rng init_rng, drop_rng;
static nn_ctx ctx(tensor_dtype dt) {
    rng_init(&init_rng, 11);
    rng_init(&drop_rng, 12);
    return (nn_ctx){
        .dtype = dt, .device = DEVICE_CPU, .init_rng = &init_rng, .dropout_rng = &drop_rng};
}

static void values(const tensor *t, double *v) { ck_assert_int_eq(tensor_to_doubles(t, v), 0); }

START_TEST(test_layer_shapes_and_names) {
    tensor_scope_begin();
    nn_ctx c = ctx(TENSOR_F32);
    nn_module *enc = nn_sequential(
        6, (nn_module *[]){nn_conv2d(&c, 1, 8, 5, 2, NN_PAD_SAME, true),
                           nn_batch_norm(&c, 8, 0.8, 1e-3), nn_leaky_relu(0.2), nn_dropout(&c, 0.3),
                           nn_flatten(), nn_linear(&c, 8 * 8 * 8, 10, true)});
    nn_module *dec = nn_sequential(
        3, (nn_module *[]){nn_linear(&c, 10, 4 * 4 * 6, false), nn_reshape(SHAPE(6, 4, 4)),
                           nn_conv_transpose2d(&c, 6, 3, 5, 2, NN_PAD_SAME, false)});
    nn_module *root = nn_container("Model");
    nn_add_child(root, "enc", enc);
    nn_add_child(root, "dec", dec);
    tensor *x = tensor_zeros(TENSOR_F32, SHAPE(2, 1, 16, 16), DEVICE_CPU);
    // declared, not yet placed: counted, but no forward and no checkpoint
    ck_assert_int_eq(nn_count_parameters(root),
                     8 * 25 + 8 + 16 + 512 * 10 + 10 + 10 * 96 + 6 * 3 * 25);
    ck_assert_ptr_null(nn_forward(enc, x));
    ck_assert_ptr_nonnull(strstr(err_message(), "not placed"));
    ck_assert_int_eq(nn_place(root), 0);
    ck_assert_int_ne(nn_place(root), 0); // once
    ck_assert_ptr_nonnull(strstr(err_message(), "placed already"));
    tensor *z = nn_forward(enc, x);
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(z->ndim, 2);
    ck_assert_int_eq(z->shape[1], 10);
    tensor *y = nn_forward(dec, z);
    ck_assert_int_eq(y->ndim, 4);
    ck_assert_int_eq(y->shape[1], 3);
    ck_assert_int_eq(y->shape[2], 8);
    ck_assert_int_eq(y->shape[3], 8);
    nn_tensor_list l = {0};
    nn_collect(root, "", true, true, &l);
    const char *want[] = {"enc.0.weight",       "enc.0.bias",        "enc.1.weight", "enc.1.bias",
                          "enc.1.running_mean", "enc.1.running_var", "enc.5.weight", "enc.5.bias",
                          "dec.0.weight",       "dec.2.weight"};
    ck_assert_int_eq(l.n, 10);
    for (int i = 0; i < 10; i++) ck_assert_str_eq(l.items[i].name, want[i]);
    nn_list_free(&l);
    ck_assert_int_eq(nn_count_parameters(root),
                     8 * 25 + 8 + 16 + 512 * 10 + 10 + 10 * 96 + 6 * 3 * 25);
    // a wrong input shape names the layer
    ck_assert_ptr_null(
        nn_forward(enc->children[5], tensor_zeros(TENSOR_F32, SHAPE(2, 7), DEVICE_CPU)));
    ck_assert_ptr_nonnull(strstr(err_message(), "Linear"));
    nn_free(root);
    tensor_scope_end();
}
END_TEST

// Running statistics per input kind: each set is updated only by the passes that selected it and
// read in inference when selected; checked against the batch moments computed here.
START_TEST(test_bn_stat_sets) {
    tensor_scope_begin();
    nn_ctx c = ctx(TENSOR_F64);
    nn_module *bn = nn_batch_norm(&c, 3, 0.8, 1e-3);
    ck_assert_int_eq(nn_bn_stat_sets(&c, bn, 2), 0);
    ck_assert_int_eq(bn->n_buffers, 4);
    ck_assert_str_eq(bn->buffers[2].name, "running_mean_1");
    ck_assert_str_eq(bn->buffers[3].name, "running_var_1");
    ck_assert_int_ne(nn_bn_stat_sets(&c, bn, 5), 0); // more sets than a module holds
    ck_assert_int_eq(nn_place(bn), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "5 sets"));
    double x[2][4 * 3], mean[2][3], var[2][3]; // two inputs of different distributions
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 12; i++) x[k][i] = (k ? 5.0 : -1.0) + (k + 1) * sin(1.7 * i + k);
        for (int ch = 0; ch < 3; ch++) {
            double s = 0, ss = 0;
            for (int n = 0; n < 4; n++) s += x[k][n * 3 + ch];
            mean[k][ch] = s / 4;
            for (int n = 0; n < 4; n++)
                ss += (x[k][n * 3 + ch] - mean[k][ch]) * (x[k][n * 3 + ch] - mean[k][ch]);
            var[k][ch] = ss / 3; // running variance: unbiased
        }
    }
    nn_set_training(bn, true);
    for (int k = 0; k < 2; k++) {
        nn_bn_use_stats(bn, k);
        ck_assert_ptr_nonnull(
            nn_forward(bn, tensor_from_doubles(TENSOR_F64, SHAPE(4, 3), x[k], DEVICE_CPU)));
    }
    double rm[2][3], rv[2][3];
    for (int k = 0; k < 2; k++) {
        values(bn->buffers[2 * k].t, rm[k]);
        values(bn->buffers[2 * k + 1].t, rv[k]);
        for (int ch = 0; ch < 3; ch++) { // Keras momentum: new = 0.8 old + 0.2 batch
            ck_assert_double_eq_tol(rm[k][ch], 0.2 * mean[k][ch], 1e-12);
            ck_assert_double_eq_tol(rv[k][ch], 0.8 + 0.2 * var[k][ch], 1e-12);
        }
    }
    // inference reads the selected set
    nn_set_training(bn, false);
    for (int k = 0; k < 2; k++) {
        nn_bn_use_stats(bn, k);
        double y[12];
        values(nn_forward(bn, tensor_from_doubles(TENSOR_F64, SHAPE(4, 3), x[1], DEVICE_CPU)), y);
        for (int i = 0; i < 12; i++)
            ck_assert_double_eq_tol(y[i], (x[1][i] - rm[k][i % 3]) / sqrt(rv[k][i % 3] + 1e-3),
                                    1e-12);
    }
    nn_free(bn);
    tensor_scope_end();
}
END_TEST

// Failures are returned, never dropped: a layer that could not be built fails its Sequential
// (the others freed: the sanitizer run checks for leaks), a rank too large for Reshape is
// refused, and a checkpoint that could not record an entry is neither saved nor loaded.
START_TEST(test_failures_are_reported) {
    tensor_scope_begin();
    nn_ctx c = ctx(TENSOR_F32);
    ck_assert_ptr_null(
        nn_sequential(3, (nn_module *[]){nn_relu(), NULL, nn_linear(&c, 2, 2, true)}));
    ck_assert_ptr_nonnull(strstr(err_message(), "'1' could not be built"));
    nn_module *root = nn_container("Root");
    ck_assert_int_ne(
        nn_adopt(root, 2, (const char *[]){"x", "y"}, (nn_module *[]){nn_tanh(), NULL}), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "'y' could not be built"));
    ck_assert_int_eq(root->n_children, 1); // x was added and is the root's to free
    ck_assert_ptr_null(nn_reshape(TENSOR_MAX_DIMS, (int64_t[TENSOR_MAX_DIMS]){1}));
    ck_assert_ptr_nonnull(strstr(err_message(), "Reshape"));
    nn_checkpoint ck = {0};
    rng r;
    rng_init(&r, 1);
    nn_ckpt_add_module(&ck, "", root);
    for (int i = 0; i <= NN_CKPT_MAX; i++) nn_ckpt_add_rng(&ck, "r", &r);
    char path[] = "/tmp/test_nn_ckpt_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    unlink(path);
    ck_assert_int_ne(nn_ckpt_save(&ck, path), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "could not be recorded"));
    ck_assert_int_ne(access(path, F_OK), 0); // nothing written
    ck_assert_int_ne(nn_ckpt_load(&ck, path, NULL), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "could not be recorded"));
    nn_ckpt_free(&ck);
    nn_free(root);
    tensor_scope_end();
}
END_TEST

// Cycle-GAN's residual block from the new layers: x + IN(conv(pad(ReLU(IN(conv(pad(x))))))),
// checked against the same ops applied by hand; the block keeps the shape.
START_TEST(test_residual_block) {
    tensor_scope_begin();
    nn_ctx c = ctx(TENSOR_F64);
    nn_module *body = nn_sequential(
        7, (nn_module *[]){nn_reflection_pad(1), nn_conv2d(&c, 4, 4, 3, 1, NN_PAD_VALID, true),
                           nn_instance_norm(1e-5), nn_relu(), nn_reflection_pad(1),
                           nn_conv2d(&c, 4, 4, 3, 1, NN_PAD_VALID, true), nn_instance_norm(1e-5)});
    nn_module *block = nn_residual(body);
    ck_assert_ptr_nonnull(block);
    ck_assert_int_eq(nn_place(block), 0);
    rng r;
    rng_init(&r, 4);
    tensor *x = tensor_rand_uniform(&r, TENSOR_F64, SHAPE(2, 4, 6, 5), -1, 1, DEVICE_CPU);
    tensor *y = nn_forward(block, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 6);
    ck_assert_int_eq(y->shape[3], 5);
    op_conv_opts v = op_conv_valid(1);
    nn_module *c1 = body->children[1], *c2 = body->children[5];
    tensor *h = op_relu(op_instance_norm(
        op_conv2d(op_reflection_pad2d(x, 1), c1->params[0].t, c1->params[1].t, &v), 1e-5));
    tensor *want = op_add(
        x, op_instance_norm(
               op_conv2d(op_reflection_pad2d(h, 1), c2->params[0].t, c2->params[1].t, &v), 1e-5));
    double a[240], b[240];
    values(y, a);
    values(want, b);
    for (int i = 0; i < 240; i++) ck_assert_double_eq_tol(a[i], b[i], 1e-12);
    nn_tensor_list l = {0};
    nn_collect(block, "", true, false, &l);
    ck_assert_str_eq(l.items[0].name, "body.1.weight");
    nn_list_free(&l);
    nn_free(block);
    tensor_scope_end();
}
END_TEST

START_TEST(test_initialiser_statistics) {
    tensor_scope_begin();
    nn_ctx c = ctx(TENSOR_F64);
    nn_module *conv = nn_conv2d(&c, 32, 64, 5, 1, NN_PAD_SAME, false);
    ck_assert_int_eq(nn_place(conv), 0);
    int64_t n = 64 * 32 * 25;
    double *w = malloc((size_t)n * sizeof *w);
    values(conv->params[0].t, w);
    // he_normal: truncated normal of stddev sqrt(2/fan_in)/0.8796 -> sample stddev sqrt(2/fan_in)
    double target = sqrt(2.0 / 800), s = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        s += w[i];
        s2 += w[i] * w[i];
        mx = fmax(mx, fabs(w[i]));
    }
    ck_assert_double_eq_tol(s / n, 0, 0.002);
    ck_assert_double_eq_tol(sqrt(s2 / n), target, target * 0.02);
    ck_assert(mx <= 2 * target / 0.87962566103423978 + 1e-12);
    free(w);
    nn_module *lin = nn_linear(&c, 300, 200, true);
    ck_assert_int_eq(nn_place(lin), 0);
    double limit = sqrt(6.0 / 500);
    double *v = malloc(60000 * sizeof *v);
    values(lin->params[0].t, v);
    s2 = 0;
    for (int i = 0; i < 60000; i++) {
        ck_assert(fabs(v[i]) <= limit);
        s2 += v[i] * v[i];
    }
    ck_assert_double_eq_tol(s2 / 60000, limit * limit / 3, limit * limit / 3 * 0.03);
    double b[200];
    values(lin->params[1].t, b);
    for (int i = 0; i < 200; i++) ck_assert_double_eq(b[i], 0);
    free(v);
    nn_free(conv);
    nn_free(lin);
    tensor_scope_end();
}
END_TEST

// SGD with momentum and Adam, two steps each, against Keras's formulas written out (f64).
START_TEST(test_sgd_and_adam_steps_by_hand) {
    check_sgd_and_adam_by_hand(DEVICE_CPU, TENSOR_F64, 1e-15, 1e-14);
}
END_TEST

// The step runner on the CPU, by hand: w (3 values) under SGD at rate 0.1 on the loss
// sum(c * w) + k, whose gradient is c: after each step w moved by -0.1 c; slot 0 holds the loss
// before the update (sum(c w) + k), slot 2 the value reported (sum w), slot 1 nothing (NaN).
// A non-finite slot is an error naming it; a slot kept twice, out of range, or outside a run is
// refused.
typedef struct {
    tensor *w, *c;
    nn_optimizer *o;
    int mode; // 0 the step; 1 slot 2 twice; 2 slot 40; 3 a NaN loss
} lin_step;
static int lin_body(nn_runner *r, void *ctx, tensor *const *in) {
    lin_step *s = ctx;
    nn_optimizer_zero_grad(s->o);
    tensor *loss = op_add(op_sum(op_mul(s->w, s->c), 0, NULL, false), in[0]);
    if (s->mode == 3) loss = op_mul_scalar(loss, NAN);
    if (nn_step_report(r, op_sum(s->w, 0, NULL, false), s->mode == 2 ? 40 : 2, "sum of w"))
        return -1;
    if (s->mode == 1 && nn_step_report(r, op_sum(s->w, 0, NULL, false), 2, "sum of w again"))
        return -1;
    return nn_step_minimize(r, s->o, loss, 0, "linear loss");
}
START_TEST(test_step_runner_on_the_cpu) {
    double w0[3] = {1, -2, 0.5}, c0[3] = {0.3, -1.5, 2.0}, k = 0.25;
    lin_step s = {tensor_from_doubles(TENSOR_F64, SHAPE(3), w0, DEVICE_CPU),
                  tensor_from_doubles(TENSOR_F64, SHAPE(3), c0, DEVICE_CPU), NULL, 0};
    s.w->requires_grad = true;
    nn_tensor_list l = {0};
    nn_list_add(&l, "w", s.w);
    s.o = nn_optimizer_new("sgd", nn_sgd(0.1, 0), &l);
    nn_runner *r = nn_runner_new(&(nn_runner_config){
        .dtype = TENSOR_F64, .device = DEVICE_CPU, .graphs = true, .n_opts = 1, .opts = {s.o}});
    ck_assert_ptr_nonnull(r);
    ck_assert(!nn_runner_graphs(r)); // graphs are CUDA's
    tensor *kt = tensor_from_doubles(TENSOR_F64, SHAPE(1), &k, DEVICE_CPU);
    double w[3] = {w0[0], w0[1], w0[2]};
    for (int step = 0; step < 3; step++) {
        double v[4], loss = k, sum = 0;
        for (int i = 0; i < 3; i++) loss += c0[i] * w[i], sum += w[i];
        ck_assert_int_eq(nn_runner_run(r, 0, lin_body, &s, 1, &kt, v, 4), 0);
        ck_assert_double_eq_tol(v[0], loss, 1e-14);
        ck_assert(isnan(v[1]) && isnan(v[3]));
        ck_assert_double_eq_tol(v[2], sum, 1e-14);
        for (int i = 0; i < 3; i++) w[i] -= 0.1 * c0[i];
        double got[3];
        values(s.w, got);
        for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(got[i], w[i], 1e-14);
    }
    double v[4];
    const char *want[] = {"", "kept twice", "out of range", "linear loss is nan"};
    for (s.mode = 1; s.mode <= 3; s.mode++) {
        ck_assert_int_ne(nn_runner_run(r, 0, lin_body, &s, 1, &kt, v, 4), 0);
        ck_assert_msg(strstr(err_message(), want[s.mode]), "%s", err_message());
    }
    tensor_scope_begin();
    ck_assert_int_ne(nn_step_minimize(r, s.o, op_sum(s.w, 0, NULL, false), 0, "outside"), 0);
    ck_assert_msg(strstr(err_message(), "outside a step"), "%s", err_message());
    tensor_scope_end();
    ck_assert(!nn_runner_running(r));
    nn_runner_free(r);
    nn_optimizer_free(s.o);
    nn_list_free(&l);
    tensor_release(kt);
    tensor_release(s.w);
    tensor_release(s.c);
}
END_TEST

// The rate the device computes from its own step count (the count set by
// nn_optimizer_set_steps, as a resumed run sets it): SGD with rate 1 halved at steps 2 and 4
// moves w by exactly the host's nn_optimizer_lr for a gradient of 1; Adam's first move after
// set_steps(t) is lr sqrt(1 - b2^(t+1)) / (1 - b1^(t+1)) m / (sqrt(v) + eps) with fresh moments.
START_TEST(test_rate_on_the_device_follows_its_count) {
    for (int kind = 0; kind < 2; kind++) {
        nn_optim_config cfg = kind ? nn_adam(0.01, 0.9, 0.999, 1e-7) : nn_sgd(1.0, 0);
        cfg.n_milestones = 2;
        cfg.milestones[0] = 2;
        cfg.milestones[1] = 4;
        cfg.factor = 0.5;
        for (int s0 = 0; s0 < 6; s0++) {
            tensor *w = ag_requires_grad(tensor_zeros(TENSOR_F64, SHAPE(1), DEVICE_CPU), true);
            nn_tensor_list l = {0};
            nn_list_add(&l, "w", w);
            nn_optimizer *o = nn_optimizer_new("o", cfg, &l);
            ck_assert_int_eq(nn_optimizer_set_steps(o, s0), 0);
            double lr = nn_optimizer_lr(o), t = s0 + 1, want = lr;
            if (kind) // g = 1: m = 0.1, v = 0.001
                want =
                    lr * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t)) * 0.1 / (sqrt(0.001) + 1e-7);
            tensor_scope_begin();
            nn_optimizer_zero_grad(o);
            ck_assert_int_eq(ag_backward(op_sum(w, 0, NULL, false), NULL), 0);
            ck_assert_int_eq(nn_optimizer_step(o), 0);
            tensor_scope_end();
            ck_assert_msg(fabs(tensor_item(w) + want) <= 1e-15 * want,
                          "%s from step %d: %.17g, want %.17g", kind ? "Adam" : "SGD", s0,
                          -tensor_item(w), want);
            ck_assert_int_eq(nn_optimizer_steps(o), s0 + 1);
            nn_optimizer_free(o);
            nn_list_free(&l);
            tensor_release(w);
        }
    }
}
END_TEST

START_TEST(test_schedule) {
    nn_tensor_list l = {0};
    nn_optim_config cfg = nn_sgd(1.0, 0);
    cfg.n_milestones = 2;
    cfg.milestones[0] = 2;
    cfg.milestones[1] = 4;
    cfg.factor = 0.5;
    nn_optimizer *o = nn_optimizer_new("s", cfg, &l);
    double want[6] = {1, 1, 0.5, 0.5, 0.25, 0.25};
    for (int s = 0; s < 6; s++) {
        nn_optimizer_set_steps(o, s);
        ck_assert_double_eq(nn_optimizer_lr(o), want[s]);
    }
    nn_optimizer_free(o);
}
END_TEST

START_TEST(test_freezing) {
    tensor_scope_begin();
    nn_ctx c = ctx(TENSOR_F64);
    nn_module *a = nn_linear(&c, 4, 3, true), *b = nn_linear(&c, 3, 1, true);
    nn_module *net = nn_sequential(3, (nn_module *[]){a, nn_tanh(), b});
    ck_assert_int_eq(nn_place(net), 0);
    rng r;
    rng_init(&r, 3);
    tensor *x = tensor_rand_uniform(&r, TENSOR_F64, SHAPE(5, 4), -1, 1, DEVICE_CPU);
    // reference gradient of a's weight with nothing frozen
    ck_assert_int_eq(ag_backward(op_sum(nn_forward(net, x), ALL_AXES, false), NULL), 0);
    double ga[12], gb_before[3];
    values(a->params[0].t->grad, ga);
    values(b->params[0].t->grad, gb_before);
    ag_zero_grad(a->params[0].t);
    ag_zero_grad(a->params[1].t);
    ag_zero_grad(b->params[0].t);
    ag_zero_grad(b->params[1].t);
    nn_freeze(b, true);
    ck_assert(!b->params[0].t->requires_grad);
    ck_assert_int_eq(ag_backward(op_sum(nn_forward(net, x), ALL_AXES, false), NULL), 0);
    double gb[3];
    values(b->params[0].t->grad, gb); // frozen: its weights' gradient stays zero
    for (int i = 0; i < 3; i++) ck_assert_double_eq(gb[i], 0);
    ck_assert_double_ne(gb_before[0], 0);
    double ga2[12];
    values(a->params[0].t->grad, ga2); // ...but it still flows through to a
    for (int i = 0; i < 12; i++) ck_assert_double_eq_tol(ga2[i], ga[i], 1e-15);
    nn_freeze(b, false);
    ck_assert(b->params[0].t->requires_grad);
    nn_free(net);
    tensor_scope_end();
}
END_TEST

// A small model with every kind of state: conv, BN buffers, dropout, Adam moments.
static nn_module *small_model(nn_ctx *c) {
    return nn_sequential(7, (nn_module *[]){nn_conv2d(c, 1, 4, 3, 2, NN_PAD_SAME, true),
                                            nn_batch_norm(c, 4, 0.8, 1e-3), nn_leaky_relu(0.2),
                                            nn_dropout(c, 0.3), nn_flatten(),
                                            nn_linear(c, 4 * 4 * 4, 1, true), nn_sigmoid()});
}

static void train_steps(nn_module *m, nn_optimizer *o, rng *data, int steps) {
    for (int s = 0; s < steps; s++) {
        tensor_scope_begin();
        tensor *x = tensor_rand_uniform(data, TENSOR_F32, SHAPE(6, 1, 8, 8), -1, 1, DEVICE_CPU);
        tensor *y = tensor_rand_bernoulli(data, TENSOR_F32, SHAPE(6, 1), 0.5, DEVICE_CPU);
        nn_optimizer_zero_grad(o);
        ck_assert_int_eq(ag_backward(nn_bce_loss(nn_forward(m, x), y), NULL), 0);
        ck_assert_int_eq(nn_optimizer_step(o), 0);
        tensor_scope_end();
    }
}

typedef struct {
    nn_ctx c;
    rng init, drop, data;
    nn_module *m;
    nn_optimizer *o;
} trainer;

// by_module: the optimizer is given the placed model (one run); else the list of its
// parameters (one run each).
static void trainer_init(trainer *t, uint64_t seed, bool by_module) {
    rng_init(&t->init, seed);
    rng_init(&t->drop, seed + 1);
    rng_init(&t->data, seed + 2);
    t->c = (nn_ctx){TENSOR_F32, DEVICE_CPU, &t->init, &t->drop};
    t->m = small_model(&t->c);
    ck_assert_int_eq(nn_place(t->m), 0);
    nn_optim_config adam = nn_adam(1e-2, 0.5, 0.999, 1e-7);
    if (by_module) {
        t->o = nn_optimizer_for("adam", adam, 1, &t->m);
    } else {
        nn_tensor_list l = {0};
        nn_collect(t->m, "", true, false, &l);
        t->o = nn_optimizer_new("adam", adam, &l);
        nn_list_free(&l);
    }
    ck_assert_ptr_nonnull(t->o);
}

static void trainer_free(trainer *t) {
    nn_optimizer_free(t->o);
    nn_free(t->m);
}

static void checkpoint_of(trainer *t, nn_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    nn_ckpt_add_module(ck, "model", t->m);
    nn_ckpt_add_optimizer(ck, t->o);
    nn_ckpt_add_rng(ck, "dropout", &t->drop);
    nn_ckpt_add_rng(ck, "data", &t->data);
}

static void params_bits(nn_module *m, float *out, int64_t n) {
    nn_tensor_list l = {0};
    nn_collect(m, "", true, true, &l);
    int64_t at = 0;
    for (int i = 0; i < l.n; i++) {
        ck_assert_int_le(at + tensor_numel(l.items[i].t), n);
        ck_assert_int_eq(tensor_to_host(l.items[i].t, out + at), 0);
        at += tensor_numel(l.items[i].t);
    }
    nn_list_free(&l);
}

START_TEST(test_resume_is_exact) {
    char path[] = "/tmp/test_nn_resumeXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    // N + M steps straight through
    trainer a;
    trainer_init(&a, 100, true);
    train_steps(a.m, a.o, &a.data, 7);
    // N steps, save, load into a fresh trainer of another seed, M steps
    trainer b;
    trainer_init(&b, 100, true);
    train_steps(b.m, b.o, &b.data, 4);
    nn_checkpoint ck;
    checkpoint_of(&b, &ck);
    nn_ckpt_set_meta(&ck, "step", "4");
    ck_assert_int_eq(nn_ckpt_save(&ck, path), 0);
    nn_ckpt_free(&ck);
    trainer_free(&b);
    trainer c;
    trainer_init(&c, 999, true);
    checkpoint_of(&c, &ck);
    st_file *f = NULL;
    ck_assert_msg(nn_ckpt_load(&ck, path, &f) == 0, "%s", err_message());
    ck_assert_str_eq(st_meta_get(f, "step"), "4");
    ck_assert_int_eq(nn_optimizer_steps(c.o), 4);
    st_close(f);
    nn_ckpt_free(&ck);
    train_steps(c.m, c.o, &c.data, 3);
    static float pa[4096], pc[4096];
    params_bits(a.m, pa, 4096);
    params_bits(c.m, pc, 4096);
    ck_assert_int_eq(memcmp(pa, pc, sizeof pa), 0);
    // and training changed the parameters (the comparison is not of two untouched models)
    trainer d;
    trainer_init(&d, 100, true);
    static float pd[4096];
    params_bits(d.m, pd, 4096);
    ck_assert_int_ne(memcmp(pa, pd, sizeof pa), 0);
    trainer_free(&a);
    trainer_free(&c);
    trainer_free(&d);
    unlink(path);
}
END_TEST

// Parameters are born in the module's flat buffer, in nn_collect's order, and stay there: a
// view taken at any time shares it. An optimizer given the module makes one pass per step;
// given the list, one per parameter; the numbers are the same.
START_TEST(test_placement) {
    trainer p, u;
    trainer_init(&p, 5, true);
    trainer_init(&u, 5, false);
    ck_assert_int_eq(nn_optimizer_launches(p.o), 1);
    ck_assert_int_eq(nn_optimizer_launches(u.o), 6); // conv w, b; bn gamma, beta; linear w, b
    tensor *w0 = p.m->children[0]->params[0].t, *b5 = p.m->children[5]->params[1].t;
    ck_assert_ptr_eq(w0->storage, p.m->flat_params);
    ck_assert_ptr_eq(b5->storage, p.m->flat_params);
    ck_assert_int_eq(w0->offset, 0);
    ck_assert_int_eq(b5->offset + tensor_numel(b5), nn_count_parameters(p.m)); // the last one
    ck_assert_ptr_eq(w0->grad->storage, p.m->flat_grads);
    tensor *view = tensor_keep(tensor_view_reshape(w0, 1, (int64_t[]){tensor_numel(w0)}));
    train_steps(p.m, p.o, &p.data, 3);
    train_steps(u.m, u.o, &u.data, 3);
    static float a[4096], b[4096];
    params_bits(p.m, a, 4096);
    params_bits(u.m, b, 4096);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0); // one pass or many: the same numbers
    ck_assert_float_eq(((float *)view->storage->data)[view->offset], a[0]); // the view follows
    tensor_release(view);
    trainer_free(&p);
    trainer_free(&u);
}
END_TEST

START_TEST(test_save_load_round_trip) {
    char path[] = "/tmp/test_nn_rtXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    tensor_scope_begin();
    rng r;
    rng_init(&r, 8);
    nn_tensor_list l = {0};
    nn_list_add(&l, "a.weight",
                tensor_rand_normal(&r, TENSOR_F32, SHAPE(3, 4, 5), 0, 1, DEVICE_CPU));
    nn_list_add(&l, "b \"quoted\"", tensor_rand_normal(&r, TENSOR_F64, SHAPE(7), 0, 1, DEVICE_CPU));
    nn_list_add(&l, "scalar", tensor_scalar(TENSOR_F32, 2.5, DEVICE_CPU));
    st_meta meta[1] = {{"note", "hello \"world\""}};
    ck_assert_int_eq(st_save(path, &l, 1, meta), 0);
    st_file *f = st_open(path);
    ck_assert_msg(f != NULL, "%s", err_message());
    ck_assert_int_eq(f->n_entries, 3);
    ck_assert_str_eq(st_meta_get(f, "note"), "hello \"world\"");
    for (int i = 0; i < 3; i++) {
        tensor *t = l.items[i].t;
        tensor *back = tensor_zeros(t->dtype, t->ndim, t->shape, DEVICE_CPU);
        ck_assert_int_eq(st_read_into(f, l.items[i].name, back), 0);
        double x[64], y[64];
        values(t, x);
        values(back, y);
        ck_assert_int_eq(memcmp(x, y, sizeof(double) * (size_t)tensor_numel(t)), 0);
    }
    // a shape mismatch is refused, naming the tensor
    ck_assert_int_ne(
        st_read_into(f, "a.weight", tensor_zeros(TENSOR_F32, SHAPE(4, 3, 5), DEVICE_CPU)), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "a.weight"));
    st_close(f);
    // a failed save leaves the previous file intact
    ck_assert_int_ne(st_save("/nonexistent-dir/x.safetensors", &l, 0, NULL), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "/nonexistent-dir/x.safetensors"));
    nn_list_free(&l);
    tensor_scope_end();
    unlink(path);
}
END_TEST

// ---- malformed files --------------------------------------------------------------------------
static void write_file(const char *path, const char *header, size_t header_len_field,
                       size_t data_bytes) {
    FILE *f = fopen(path, "wb");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)header_len_field >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
    fclose(f);
}

typedef struct {
    const char *what, *header, *expect;
    long len_delta; // added to the true header length in the length field
    size_t data;
} bad_file;

static const bad_file bad_files[] = {
    {"truncated length field", NULL, "truncated", 0, 0},
    {"header length past the end", "{}", "past the end", 100, 0},
    {"header length over the limit", "{}", "limit", (long)ST_MAX_HEADER + 10, 0},
    {"bad JSON", "{\"a\": {\"dtype\": \"F32\", ", "not valid JSON", 0, 0},
    {"trailing garbage after JSON", "{} x", "not valid JSON", 0, 0},
    {"not an object", "[1, 2]", "not a JSON object", 0, 0},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     "not a safetensors dtype", 0, 4},
    {"unsupported dtype", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
     "not supported", 0, 4},
    {"offsets out of range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
     "run past", 0, 8},
    {"overlapping offsets",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\","
     "\"shape\":[2],\"data_offsets\":[4,12]}}",
     "overlap", 0, 12},
    {"hole between tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\","
     "\"shape\":[1],\"data_offsets\":[8,12]}}",
     "hole", 0, 12},
    {"shape/size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
     "shape and dtype need", 0, 8},
    {"duplicate names",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\","
     "\"shape\":[1],\"data_offsets\":[4,8]}}",
     "duplicate", 0, 8},
    {"reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}",
     "reversed", 0, 4},
    {"undescribed trailing bytes",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "not described", 0, 12},
    {"missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",
     "exactly dtype, shape and data_offsets", 0, 0},
    {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
     "non-negative", 0, 4},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", "not a string", 0, 0},
    {"fractional offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}",
     "data_offsets", 0, 4},
};

START_TEST(test_malformed_files_refused) {
    const bad_file *b = &bad_files[_i];
    char path[] = "/tmp/test_nn_badXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    if (!b->header) {
        FILE *f = fopen(path, "wb");
        fwrite("\x02\x00\x00", 1, 3, f);
        fclose(f);
    } else {
        write_file(path, b->header, strlen(b->header) + (size_t)b->len_delta, b->data);
    }
    err_clear();
    st_file *f = st_open(path);
    ck_assert_msg(f == NULL, "%s: accepted", b->what);
    ck_assert_msg(strstr(err_message(), b->expect) != NULL, "%s: message '%s' lacks '%s'", b->what,
                  err_message(), b->expect);
    ck_assert_msg(strstr(err_message(), path) != NULL, "%s: message does not name the file",
                  b->what);
    unlink(path);
}
END_TEST

START_TEST(test_valid_edge_files_accepted) {
    // an empty header object and a zero-element tensor are both valid
    char path[] = "/tmp/test_nn_okXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}  ";
    write_file(path, h, strlen(h), 0);
    st_file *f = st_open(path);
    ck_assert_msg(f != NULL, "%s", err_message());
    ck_assert_int_eq(f->n_entries, 1);
    st_close(f);
    unlink(path);
}
END_TEST

int main(void) {
    TCase *tc = check_case("nn", 0,
                           CHECK_TESTS(test_layer_shapes_and_names, test_bn_stat_sets,
                                       test_failures_are_reported, test_residual_block,
                                       test_initialiser_statistics, test_sgd_and_adam_steps_by_hand,
                                       test_schedule, test_rate_on_the_device_follows_its_count,
                                       test_freezing, test_resume_is_exact, test_placement,
                                       test_save_load_round_trip, test_valid_edge_files_accepted,
                                       test_step_runner_on_the_cpu));
    tcase_add_loop_test(tc, test_malformed_files_refused, 0,
                        (int)(sizeof bad_files / sizeof *bad_files));
    return check_main("nn", tc);
}
