// cuda-parity (needs a GPU): every op of the gradient-check table on CUDA against the CPU
// backend, forward and backward, on the same random inputs, element by element: float64 within
// 1e-9, float32 with TF32 tensor cores within 1e-2 (TF32 keeps 10 mantissa bits), exact FP32
// (BANIS_ALLOW_TF32=0) within 1e-4, each of |cpu| plus a floor (0.01 of the largest |cpu|, 0.1
// with TF32) for elements left small by cancellation. Then the float64 gradient check on CUDA.
// Usage: cuda-parity [--dtype f64|f32] [--no-gradcheck]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ops/backend.h"
#include "../../ops/cuda/cuda.h"
#include "../../ops/ops.h"
#include "../../tensor/error.h"
#include "../../tests/gradcheck_table.h"

// Runs case c on `dev` from host inputs; returns outputs then input gradients, flattened.
static double *run(const gradcheck_case *c, tensor_device_type dev, tensor_dtype dt,
                   double **in_host, int64_t *n_out) {
    tensor_scope_begin();
    tensor *in[4] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        in[i] = tensor_from_doubles(dt, c->inputs[i].ndim, c->inputs[i].shape, in_host[i], dev);
        if (!in[i]) {
            tensor_scope_end();
            return NULL;
        }
        in[i]->requires_grad = !c->inputs[i].no_grad;
        if (c->preset_grads && in[i]->requires_grad &&
            !(in[i]->grad =
                  tensor_keep(tensor_full(dt, c->inputs[i].ndim, c->inputs[i].shape, 0.5, dev)))) {
            tensor_scope_end();
            return NULL;
        }
    }
    tensor *y = c->fn(in, &c->arg);
    tensor *l = y ? op_sum(op_square(y), ALL_AXES, false) : NULL;
    if (!l || ag_backward(l, NULL)) {
        tensor_scope_end();
        return NULL;
    }
    int64_t n = tensor_numel(y);
    for (int i = 0; i < c->n_inputs; i++)
        if (!c->inputs[i].no_grad) n += tensor_numel(in[i]);
    double *v = calloc((size_t)n, sizeof *v);
    int64_t at = tensor_numel(y);
    tensor_to_doubles(y, v);
    for (int i = 0; i < c->n_inputs; i++) {
        if (c->inputs[i].no_grad) continue;
        if (in[i]->grad) tensor_to_doubles(in[i]->grad, v + at);
        at += tensor_numel(in[i]);
    }
    *n_out = n;
    tensor_scope_end();
    return v;
}

static tensor *f_conv(tensor **in, const void *arg) { return op_conv2d(in[0], in[1], in[2], arg); }
static tensor *f_convt(tensor **in, const void *arg) {
    return op_conv_transpose2d(in[0], in[1], in[2], arg);
}

static tensor *f_matmul(tensor **in, const void *arg) {
    (void)arg;
    return op_matmul(in[0], in[1]);
}

static gc_input shape4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return (gc_input){.ndim = 4, .shape = {a, b, c, d}, .kind = INPUT_UNIFORM};
}

// Convolutions large enough for the GEMM paths that the gradient-check table (2-3 channels)
// does not reach: more than 4 input channels (the input gradient as a GEMM by phase, not the
// direct kernel), channel counts that are and are not multiples of the 16-deep K tile
// (tap-major and general K order), tiles with ragged edges in M, N and K, strides 1 and 2.
static int gemm_cases(gradcheck_case *out) {
    static const struct {
        int n, c, hw, k, r, stride, same, transpose;
    } v[] = {
        {2, 5, 9, 7, 3, 1, 1, 0},
        {2, 5, 9, 7, 3, 2, 1, 0},
        {3, 16, 11, 32, 5, 2, 1, 0},
        {2, 16, 8, 48, 5, 1, 1, 0},
        {2, 32, 7, 16, 3, 2, 0, 0},
        {1, 48, 6, 80, 5, 2, 1, 0},
        {2, 32, 5, 16, 5, 2, 1, 1},
        {2, 16, 4, 32, 5, 2, 1, 1},
        {3, 7, 5, 9, 3, 2, 1, 1},
        {2, 64, 4, 5, 5, 2, 1, 1},
        // 15x16 inputs, stride 2: 8x8 outputs, so whole weight-gradient tiles lie within one
        // image (the tap-major weight gradient), with 32 channels on both sides
        {2, 8, 15, 16, 5, 2, 1, 0},
        {2, 32, 15, 32, 3, 2, 1, 0},
        {2, 32, 15, 32, 5, 1, 1, 0},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        gradcheck_case *c = &out[n++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s n%d c%d %dx%d k%d r%d s%d %s",
                 v[i].transpose ? "conv_transpose2d" : "conv2d", v[i].n, v[i].c, v[i].hw,
                 v[i].hw + 1, v[i].k, v[i].r, v[i].stride, v[i].same ? "same" : "valid");
        c->fn = v[i].transpose ? f_convt : f_conv;
        c->n_inputs = 3;
        c->inputs[0] = shape4(v[i].n, v[i].c, v[i].hw, v[i].hw + 1);
        c->inputs[1] = v[i].transpose ? shape4(v[i].c, v[i].k, v[i].r, v[i].r)
                                      : shape4(v[i].k, v[i].c, v[i].r, v[i].r);
        c->inputs[2] = (gc_input){.ndim = 1, .shape = {v[i].k}, .kind = INPUT_UNIFORM};
        c->arg.conv =
            v[i].transpose
                ? (v[i].same
                       ? op_conv_transpose_same(v[i].hw, v[i].hw + 1, v[i].r, v[i].r, v[i].stride)
                       : op_conv_valid(v[i].stride))
                : (v[i].same ? op_conv_same(v[i].hw, v[i].hw + 1, v[i].r, v[i].r, v[i].stride)
                             : op_conv_valid(v[i].stride));
    }
    // a dense layer's shapes: few output tiles over a long K, so K is split over blocks
    gradcheck_case *c = &out[n++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "matmul 9x3000 @ 3000x5 (split K)");
    c->fn = f_matmul;
    c->n_inputs = 2;
    c->inputs[0] = (gc_input){.ndim = 2, .shape = {9, 3000}, .kind = INPUT_UNIFORM};
    c->inputs[1] = (gc_input){.ndim = 2, .shape = {3000, 5}, .kind = INPUT_UNIFORM};
    return n;
}

// Batch norm's output with its running statistics after the update (concatenated, so that
// both are compared; only the output has a gradient).
static tensor *f_bn_running(tensor **in, const void *arg) {
    const op_bn_opts *o = arg;
    int64_t C = in[0]->shape[1];
    tensor *rm = tensor_full(in[0]->dtype, 1, &C, 0.25, tensor_device(in[0]));
    tensor *rv = tensor_full(in[0]->dtype, 1, &C, 1.5, tensor_device(in[0]));
    tensor *y = op_batch_norm(in[0], in[1], in[2], rm, rv, o);
    return op_concat(3, (tensor *[]){op_reshape(y, SHAPE(-1)), rm, rv}, 0);
}

// The per-channel sums (CUDA's channel_sums) over more values than one block takes, so that
// the blocks of a channel meet at its ticket: batch norm's statistics and gradients (4-D and
// 2-D, with an activation), and a convolution's bias gradient; and the leaf gradients that the
// fused passes add to (preset, as an optimizer's buffers are): batch norm's gamma and beta,
// a convolution's weight (split K's sum adds it) and bias, a dense layer's weight.
static int sums_cases(gradcheck_case *out) {
    op_bn_opts bn = {.training = true, .momentum = 0.8, .eps = 1e-3};
    int n = 0;
    for (int preset = 0; preset < 2; preset++) {
        gradcheck_case *c = &out[n++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "batch_norm 8x6x33x35 leaky_relu + running%s",
                 preset ? ", grads preset" : "");
        c->fn = f_bn_running;
        c->n_inputs = 3;
        c->inputs[0] = shape4(8, 6, 33, 35);
        c->inputs[1] = (gc_input){.ndim = 1, .shape = {6}, .kind = INPUT_POSITIVE};
        c->inputs[2] = (gc_input){.ndim = 1, .shape = {6}, .kind = INPUT_UNIFORM};
        c->arg.bn = bn;
        c->arg.bn.act = OP_ACT_LEAKY_RELU;
        c->arg.bn.slope = 0.2;
        c->preset_grads = preset;

        c = &out[n++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "batch_norm (N,C) 9000x3 sigmoid + running%s",
                 preset ? ", grads preset" : "");
        c->fn = f_bn_running;
        c->n_inputs = 3;
        c->inputs[0] = (gc_input){.ndim = 2, .shape = {9000, 3}, .kind = INPUT_UNIFORM};
        c->inputs[1] = (gc_input){.ndim = 1, .shape = {3}, .kind = INPUT_POSITIVE};
        c->inputs[2] = (gc_input){.ndim = 1, .shape = {3}, .kind = INPUT_UNIFORM};
        c->arg.bn = bn;
        c->arg.bn.act = OP_ACT_SIGMOID;
        c->preset_grads = preset;

        c = &out[n++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "conv2d n8 c16 40x41 k32 r3 s1 bias%s",
                 preset ? ", grads preset" : "");
        c->fn = f_conv;
        c->n_inputs = 3;
        c->inputs[0] = shape4(8, 16, 40, 41);
        c->inputs[1] = shape4(32, 16, 3, 3);
        c->inputs[2] = (gc_input){.ndim = 1, .shape = {32}, .kind = INPUT_UNIFORM};
        c->arg.conv = op_conv_same(40, 41, 3, 3, 1);
        c->preset_grads = preset;

        if (!preset) continue; // unpreset: among the GEMM cases
        c = &out[n++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "matmul 9x3000 @ 3000x5 (split K), grads preset");
        c->fn = f_matmul;
        c->n_inputs = 2;
        c->inputs[0] = (gc_input){.ndim = 2, .shape = {9, 3000}, .kind = INPUT_UNIFORM};
        c->inputs[1] = (gc_input){.ndim = 2, .shape = {3000, 5}, .kind = INPUT_UNIFORM};
        c->preset_grads = preset;
    }
    return n;
}

// One case on the CPU and on CUDA from the same inputs: each element of its outputs (and
// gradients) within tol (|cpu| + floor * the largest |cpu|): relative to itself, with an
// absolute floor for elements that come from cancellation (their rounding is the size of the
// terms that cancelled, not of the result). Prints a row (the worst element's error in units
// of its bound's tol) and returns whether it passed.
static bool compare_case(const gradcheck_case *c, tensor_dtype dt, double tol, double floor,
                         bool verbose, rng *r) {
    double *in_host[4];
    for (int i = 0; i < c->n_inputs; i++) {
        int64_t m = 1;
        for (int d = 0; d < c->inputs[i].ndim; d++) m *= c->inputs[i].shape[d];
        in_host[i] = malloc(sizeof(double) * (size_t)m);
        double lo = c->inputs[i].kind == INPUT_POSITIVE      ? 0.5
                    : c->inputs[i].kind == INPUT_PROBABILITY ? 0.05
                                                             : -1;
        double hi = c->inputs[i].kind == INPUT_POSITIVE      ? 2
                    : c->inputs[i].kind == INPUT_PROBABILITY ? 0.95
                                                             : 1;
        if (c->inputs[i].kind == INPUT_BINARY)
            rng_fill_bernoulli(r, in_host[i], m, 0.5);
        else
            rng_fill_uniform(r, in_host[i], m, lo, hi);
    }
    int64_t na = 0, nb = 0;
    double *a = run(c, DEVICE_CPU, dt, in_host, &na);
    double *b = run(c, DEVICE_CUDA, dt, in_host, &nb);
    double worst = 0, scale = 1e-30;
    bool ok = a && b && na == nb;
    for (int64_t i = 0; ok && i < na; i++) scale = fmax(scale, fabs(a[i]));
    int64_t at = 0;
    for (int64_t i = 0; ok && i < na; i++) {
        double e = fabs(a[i] - b[i]) / (fabs(a[i]) + floor * scale);
        if (e > worst) {
            worst = e;
            at = i;
        }
        if (isnan(b[i]) != isnan(a[i])) ok = false;
    }
    ok = ok && worst <= tol;
    if (a && b && !ok && !verbose && at < na)
        printf("  worst [%lld]: cpu %.17g cuda %.17g (largest %.3g)\n", (long long)at, a[at], b[at],
               scale);
    for (int64_t i = 0; verbose && a && b && i < na && i < 64; i++)
        printf("  [%lld] cpu %.9g cuda %.9g\n", (long long)i, a[i], b[i]);
    printf("%-48s %10.3e  %s%s\n", c->name, worst, ok ? "ok" : "FAIL", b ? "" : err_message());
    free(a);
    free(b);
    for (int i = 0; i < c->n_inputs; i++) free(in_host[i]);
    return ok;
}

// Random numbers are drawn inside the kernels from the same Philox stream on both devices:
// dropout masks and Bernoulli draws must be bit-identical, uniform and normal draws equal
// within the dtype's rounding. -1 when a draw failed.
static int compare_random(tensor_dtype dt, int *passed, int *failed) {
    const int64_t shape[4] = {64, 16, 32, 32};
    int64_t nel = 64 * 16 * 32 * 32;
    double *v[2][4];
    for (int d = 0; d < 2; d++) {
        tensor_device_type dv = d ? DEVICE_CUDA : DEVICE_CPU;
        rng rr;
        rng_init(&rr, 2026);
        tensor_scope_begin();
        tensor *ones = tensor_ones(dt, 4, shape, dv);
        tensor *t[4] = {op_dropout(ones, 0.3, true, &rr),
                        op_rand_bernoulli(&rr, dt, 4, shape, 0.25, dv),
                        op_rand_uniform(&rr, dt, 4, shape, -1, 1, dv),
                        op_rand_normal(&rr, dt, 4, shape, 0, 1, dv)};
        for (int i = 0; i < 4; i++) {
            v[d][i] = malloc(sizeof(double) * (size_t)nel);
            if (!t[i] || tensor_to_doubles(t[i], v[d][i])) {
                printf("random draws on %s: %s\n", tensor_device_name(dv), err_message());
                return 1;
            }
        }
        tensor_scope_end();
    }
    static const char *what[4] = {"dropout mask (p 0.3)", "bernoulli (p 0.25)", "uniform (-1, 1)",
                                  "normal (0, 1)"};
    for (int i = 0; i < 4; i++) {
        int64_t differ = 0;
        double worst = 0;
        for (int64_t j = 0; j < nel; j++) {
            differ += v[0][i][j] != v[1][i][j];
            worst = fmax(worst, fabs(v[0][i][j] - v[1][i][j]));
        }
        bool exact = i < 2, ok = exact ? differ == 0 : worst <= (dt == TENSOR_F64 ? 1e-12 : 1e-5);
        printf("random %-41s %10.3e  %s (%lld of %lld differ%s)\n", what[i], worst,
               ok ? "ok" : "FAIL", (long long)differ, (long long)nel, exact ? ", must be 0" : "");
        ok ? (*passed)++ : (*failed)++;
        free(v[0][i]);
        free(v[1][i]);
    }
    return 0;
}

int main(int argc, char **argv) {
    tensor_dtype dt = TENSOR_F64;
    bool with_gradcheck = true, verbose = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *d = argv[++i];
            if (strcmp(d, "f32") && strcmp(d, "f64")) goto usage;
            dt = !strcmp(d, "f32") ? TENSOR_F32 : TENSOR_F64;
        } else if (!strcmp(argv[i], "--no-gradcheck")) {
            with_gradcheck = false;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else {
            goto usage;
        }
    }
    if (!backend_for(DEVICE_CUDA)) {
        fprintf(stderr, "cuda-parity: %s\n", err_message());
        return 1;
    }
    const char *tf = getenv("BANIS_ALLOW_TF32");
    bool tf32 = dt == TENSOR_F32 && !(tf && !strcmp(tf, "0"));
    double tol = dt == TENSOR_F64 ? 1e-9 : tf32 ? 1e-2 : 1e-4;
    // the floor: float rounding of a sum of K terms is about eps sqrt(K) times the terms, which
    // are the size of the largest outputs; TF32 rounds every product's inputs to 10 bits
    double floor = tf32 ? 0.1 : 0.01;
    int n_table, passed = 0, failed = 0;
    const gradcheck_case *table = gradcheck_cases(&n_table);
    static gradcheck_case all[512];
    int n = n_table < 500 ? n_table : 500;
    memcpy(all, table, sizeof *all * (size_t)n);
    n += gemm_cases(all + n);
    n += sums_cases(all + n);
    const gradcheck_case *cases = all;
    printf("CUDA (%s) vs CPU, %s: each element within %.0e (|cpu| + %g x the largest |cpu|)\n",
           backend_cuda_device_name(), tensor_dtype_name(dt), tol, floor);
    rng r;
    rng_init(&r, 77);
    for (int k = 0; k < n; k++)
        if (!only || !strncmp(cases[k].name, only, strlen(only)))
            compare_case(&cases[k], dt, tol, floor, verbose, &r) ? passed++ : failed++;
    if (compare_random(dt, &passed, &failed)) return 1;
    if (dt == TENSOR_F64 && with_gradcheck) {
        printf("gradient check on CUDA, float64\n");
        for (int k = 0; k < n_table; k++) {
            gradcheck_result g = gradcheck_run(&cases[k], DEVICE_CUDA, 1000 + (uint64_t)k);
            printf("gradcheck %-38s %10.3e  %s %s\n", cases[k].name, g.worst_abs,
                   g.passed ? "ok" : "FAIL", g.message);
            g.passed ? passed++ : failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
usage:
    fprintf(
        stderr,
        "usage: cuda-parity [--dtype f64|f32] [--no-gradcheck] [--only NAME-PREFIX] [--verbose]\n");
    return 2;
}
