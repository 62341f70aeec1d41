// kernel-bench: BANIS's ops one by one, at its shapes, on the CPU or CUDA backend: each
// convolution forward, input gradient and weight gradient; batch norm (+ LeakyReLU, fused)
// forward and backward; LeakyReLU forward and backward; Adam's update; the Linear layers' GEMMs.
// Prints milliseconds and GFLOP/s (or GB/s for memory-bound ops), and on the CPU the fraction of
// the machine's FP32 peak, measured here by an FMA loop on every thread. bench/ops_torch.py
// times the same ops in PyTorch, and bench/compare.sh prints the two side by side with ratios.
// On CUDA, each convolution's forward result is also checked against the CPU backend.
// Usage: kernel-bench [--device cpu|cuda] [--batch N] [--width F] [--reps N] [--only PREFIX]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../tensor/clock.h"
#include "../../nn/nn.h"
#include "../../ops/backend.h"
#include "../../ops/cuda/cuda.h"
#include "../../tensor/error.h"

// The machine's FP32 peak: 12 independent FMA chains on vectors of the widest width the CPU
// has (a vector wider than the registers would be kept in memory, and measure that instead),
// on every thread.
#define FMA_LOOP(name, isa, bytes)                                                                 \
    __attribute__((target(isa), optimize("fp-contract=fast"))) static float name(long iters) {     \
        typedef float v __attribute__((vector_size(bytes)));                                       \
        v acc[12];                                                                                 \
        for (int i = 0; i < 12; i++) acc[i] = (v){0} + (float)i * 1e-3f;                           \
        const v m = (v){0} + 0.999999f, a = (v){0} + 1e-7f;                                        \
        for (long k = 0; k < iters; k++)                                                           \
            for (int i = 0; i < 12; i++) acc[i] = acc[i] * m + a;                                  \
        float s = 0;                                                                               \
        for (int i = 0; i < 12; i++) s += acc[i][0];                                               \
        return s;                                                                                  \
    }
FMA_LOOP(fma_loop_avx512, "arch=x86-64-v4", 64)
FMA_LOOP(fma_loop_avx2, "arch=x86-64-v3", 32)
FMA_LOOP(fma_loop_sse2, "arch=x86-64", 16)
#undef FMA_LOOP

static double cpu_peak_gflops(void) {
    const long iters = 20000000;
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f"),
         avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    float (*loop)(long) = avx512 ? fma_loop_avx512 : avx2 ? fma_loop_avx2 : fma_loop_sse2;
    int lanes = avx512 ? 16 : avx2 ? 8 : 4;
    volatile float sink = 0;
    double t0 = now_seconds();
    int threads = 1;
#pragma omp parallel reduction(+ : sink)
    {
        sink += loop(iters);
#ifdef _OPENMP
#pragma omp single
        threads = omp_get_num_threads();
#endif
    }
    double t = now_seconds() - t0;
    (void)sink;
    return (double)threads * (double)iters * 12 * lanes * 2 / t / 1e9; // 12 chains, 2 flops
}

typedef struct {
    const char *name;
    int c, h, k, stride; // input channels, side, output channels
    bool transpose;
} conv_shape;

static int ch(double width, int n) {
    int c = (int)lround(n * width);
    return c < 1 ? 1 : c;
}

static const backend *be;
static tensor_device_type dev;
static const char *only = ""; // --only PREFIX: the ops whose name starts with it
static bool wanted(const char *name) { return !strncmp(name, only, strlen(only)); }
static double peak; // GFLOP/s, CPU only

static void report(const char *name, const char *pass, double seconds, double amount, bool bytes) {
    double rate = amount / seconds / 1e9;
    printf("%-28s %-8s %10.3f %10.1f %-6s", name, pass, 1e3 * seconds, rate,
           bytes ? "GB/s" : "GFLOP/s");
    if (!bytes && peak > 0) printf(" %5.1f%%", 100 * rate / peak);
    printf("\n");
    fflush(stdout);
}

// Mean seconds of `reps` runs of fn after one untimed run; each run in its own scope.
typedef void (*bench_fn)(void *ctx);
static double timed(int reps, bench_fn fn, void *ctx) {
    double t = 0;
    for (int k = -1; k < reps; k++) {
        tensor_scope_begin();
        be->mem.synchronize();
        double t0 = now_seconds();
        fn(ctx);
        be->mem.synchronize();
        if (k >= 0) t += now_seconds() - t0;
        tensor_scope_end();
    }
    return t / reps;
}

typedef struct {
    tensor *x, *w, *y, *seed, *gamma, *beta, *rm, *rv;
    op_conv_opts o;
    bool transpose;
    op_bn_opts bn;
    nn_optimizer *opt;
} bench_ctx;

static tensor *conv(bench_ctx *c) {
    return c->transpose ? op_conv_transpose2d(c->x, c->w, NULL, &c->o)
                        : op_conv2d(c->x, c->w, NULL, &c->o);
}
static void conv_forward(void *p) { conv(p); }
static void conv_backward(void *p) { // the gradient of whichever of x, w requires one
    bench_ctx *c = p;
    ag_backward(conv(c), c->seed);
    tensor_release(c->x->grad);
    tensor_release(c->w->grad);
    c->x->grad = c->w->grad = NULL;
}
static void bn_forward(void *p) {
    bench_ctx *c = p;
    op_batch_norm(c->x, c->gamma, c->beta, c->rm, c->rv, &c->bn);
}
static void bn_backward(void *p) {
    bench_ctx *c = p;
    ag_backward(op_batch_norm(c->x, c->gamma, c->beta, c->rm, c->rv, &c->bn), c->seed);
    tensor_release(c->x->grad);
    tensor_release(c->gamma->grad);
    tensor_release(c->beta->grad);
    c->x->grad = c->gamma->grad = c->beta->grad = NULL;
}
static void lrelu_forward(void *p) { op_leaky_relu(((bench_ctx *)p)->x, 0.2); }
static void lrelu_backward(void *p) {
    bench_ctx *c = p;
    ag_backward(op_leaky_relu(c->x, 0.2), c->seed);
    tensor_release(c->x->grad);
    c->x->grad = NULL;
}
static void adam_step(void *p) { nn_optimizer_step(((bench_ctx *)p)->opt); }
static void matmul_forward(void *p) {
    bench_ctx *c = p;
    op_matmul(c->x, c->w);
}
static void matmul_backward(void *p) {
    bench_ctx *c = p;
    ag_backward(op_matmul(c->x, c->w), c->seed);
    tensor_release(c->x->grad);
    tensor_release(c->w->grad);
    c->x->grad = c->w->grad = NULL;
}

static tensor *randn(rng *r, int ndim, const int64_t *shape, double std) {
    tensor *t = tensor_rand_normal(r, TENSOR_F32, ndim, shape, 0, std, DEVICE_CPU); // the scope's
    return dev == DEVICE_CPU ? t : tensor_to_device(t, dev);
}

static double rel_err(tensor *a, tensor *b) {
    int64_t n = tensor_numel(a);
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n),
           worst = 0, scale = 1e-30;
    tensor_to_doubles(a, x);
    tensor_to_doubles(b, y);
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(x[i] - y[i]));
        scale = fmax(scale, fabs(x[i]));
    }
    free(x);
    free(y);
    return worst / scale;
}

// Each of BANIS's convolutions: forward, input gradient (but for the data's layers), weight
// gradient; on CUDA the forward result against the CPU backend.
static void bench_convs(bench_ctx *c, rng *r, int n, double width, int reps) {
    const conv_shape shapes[] = {
        {"G convT 8x8 s1", ch(width, 256), 8, ch(width, 256), 1, true},
        {"G convT 8x8 s2", ch(width, 256), 8, ch(width, 128), 2, true},
        {"G convT 16x16 s2", ch(width, 128), 16, ch(width, 64), 2, true},
        {"G convT 32x32 s2 ->1", ch(width, 64), 32, 1, 2, true},
        {"D conv 64x64 s2 1->", 1, 64, ch(width, 64), 2, false},
        {"E conv 64x64 s2 1->", 1, 64, ch(width, 128), 2, false},
        {"D conv 32x32 s2", ch(width, 64), 32, ch(width, 128), 2, false},
        {"E conv 32x32 s2", ch(width, 128), 32, ch(width, 256), 2, false},
        {"E conv 16x16 s2", ch(width, 256), 16, ch(width, 512), 2, false},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const conv_shape *s = &shapes[i];
        if (!wanted(s->name)) continue;
        tensor_scope_begin();
        int oh = s->transpose ? s->h * s->stride : (s->h + s->stride - 1) / s->stride;
        c->transpose = s->transpose;
        c->x = randn(r, SHAPE(n, s->c, s->h, s->h), 1);
        c->w = s->transpose ? randn(r, SHAPE(s->c, s->k, 5, 5), 0.05)
                            : randn(r, SHAPE(s->k, s->c, 5, 5), 0.05);
        c->seed = randn(r, SHAPE(n, s->k, oh, oh), 1);
        c->o = s->transpose ? op_conv_transpose_same(s->h, s->h, 5, 5, s->stride)
                            : op_conv_same(s->h, s->h, 5, 5, s->stride);
        double macs =
            (double)n * s->c * s->k * 25 * (s->transpose ? (double)s->h * s->h : (double)oh * oh);
        report(s->name, "forward", timed(reps, conv_forward, c), 2 * macs, false);
        if (s->c > 1) { // the first layers' input is the data: no gradient wanted there
            c->x->requires_grad = true;
            report(s->name, "dx", timed(reps, conv_backward, c), 2 * macs, false);
            c->x->requires_grad = false;
        }
        c->w->requires_grad = true;
        report(s->name, "dw", timed(reps, conv_backward, c), 2 * macs, false);
        c->w->requires_grad = false;
        if (dev == DEVICE_CUDA) { // the forward result against the CPU backend
            tensor *xc = tensor_to_device(c->x, DEVICE_CPU),
                   *wc = tensor_to_device(c->w, DEVICE_CPU);
            tensor *ycpu = s->transpose ? op_conv_transpose2d(xc, wc, NULL, &c->o)
                                        : op_conv2d(xc, wc, NULL, &c->o);
            printf("%-28s %-8s rel err vs CPU %.1e\n", s->name, "check",
                   rel_err(ycpu, tensor_to_device(conv(c), DEVICE_CPU)));
        }
        tensor_scope_end();
    }
}

static void bench_batch_norm(bench_ctx *c, rng *r, int n, double width, int reps) {
    // batch norm (training statistics) + LeakyReLU, fused: E's third layer and G's first
    struct {
        const char *name;
        int ndim;
        int64_t shape[4];
    } bns[] = {{"BN+LReLU (N,C,16,16)", 4, {n, ch(width, 256), 16, 16}},
               {"BN+LReLU (N,8*8*C)", 2, {n, 64 * ch(width, 256)}}};
    for (int i = 0; i < 2; i++) {
        if (!wanted(bns[i].name)) continue;
        tensor_scope_begin();
        int64_t cdim = bns[i].shape[1];
        c->x = randn(r, bns[i].ndim, bns[i].shape, 1);
        c->seed = randn(r, bns[i].ndim, bns[i].shape, 1);
        c->gamma = tensor_ones(TENSOR_F32, SHAPE(cdim), dev);
        c->beta = tensor_zeros(TENSOR_F32, SHAPE(cdim), dev);
        c->rm = tensor_zeros(TENSOR_F32, SHAPE(cdim), dev);
        c->rv = tensor_ones(TENSOR_F32, SHAPE(cdim), dev);
        c->bn = (op_bn_opts){
            .training = true, .momentum = 0.8, .eps = 1e-3, .act = OP_ACT_LEAKY_RELU, .slope = 0.2};
        double bytes = 4.0 * (double)tensor_numel(c->x);
        report(bns[i].name, "forward", timed(reps, bn_forward, c), 3 * bytes,
               true); // x twice, y once
        c->x->requires_grad = c->gamma->requires_grad = c->beta->requires_grad = true;
        // forward (3) + backward: x, dy twice (sums, then dx), dx written
        report(bns[i].name, "backward", timed(reps, bn_backward, c), 8 * bytes, true);
        c->x->requires_grad = c->gamma->requires_grad = c->beta->requires_grad = false;
        tensor_scope_end();
    }
}

static void bench_leaky_relu(bench_ctx *c, rng *r, int n, double width, int reps) {
    if (wanted("LeakyReLU")) {
        tensor_scope_begin();
        c->x = randn(r, SHAPE(n, ch(width, 128), 32, 32), 1);
        c->seed = randn(r, SHAPE(n, ch(width, 128), 32, 32), 1);
        double bytes = 4.0 * (double)tensor_numel(c->x);
        report("LeakyReLU (N,C,32,32)", "forward", timed(reps, lrelu_forward, c), 2 * bytes, true);
        c->x->requires_grad = true;
        report("LeakyReLU (N,C,32,32)", "backward", timed(reps, lrelu_backward, c), 5 * bytes,
               true);
        tensor_scope_end();
    }
}

static void bench_adam(bench_ctx *c, rng *r, int n, double width, int reps) {
    // Adam over the parameters of BANIS's six networks at this width (about 3.37M at 0.25)
    if (wanted("Adam")) {
        tensor_scope_begin();
        int64_t n_params = (int64_t)lround(3366058.0 * width * width / 0.0625);
        tensor *param = randn(r, SHAPE(n_params), 0.05);
        param->requires_grad = true;
        param->grad = tensor_keep(randn(r, SHAPE(n_params), 1e-3)); // owned by param
        nn_tensor_list list = {0};
        nn_list_add(&list, "p", param);
        c->opt = nn_optimizer_new("adam", nn_adam(2e-4, 0.5, 0.999, 1e-7), &list);
        nn_list_free(&list);
        // reads p, g, m, v; writes p, m, v
        report("Adam (BANIS's parameters)", "step", timed(reps, adam_step, c),
               4.0 * 7 * (double)n_params, true);
        nn_optimizer_free(c->opt);
        tensor_scope_end();
    }
}

static void bench_linear(bench_ctx *c, rng *r, int n, double width, int reps) {
    // the Linear layers: E's last (8*8*C -> 100) and G's first (100 -> 8*8*C)
    struct {
        const char *name;
        int64_t in, out;
    } lins[] = {{"E Linear 8*8*C->100", 64 * ch(width, 512), 100},
                {"G Linear 100->8*8*C", 100, 64 * ch(width, 256)}};
    for (int i = 0; i < 2; i++) {
        if (!wanted(lins[i].name)) continue;
        tensor_scope_begin();
        c->x = randn(r, SHAPE(n, lins[i].in), 1);
        c->w = randn(r, SHAPE(lins[i].in, lins[i].out), 0.05);
        c->seed = randn(r, SHAPE(n, lins[i].out), 1);
        double flops = 2.0 * n * (double)lins[i].in * (double)lins[i].out;
        report(lins[i].name, "forward", timed(reps, matmul_forward, c), flops, false);
        c->x->requires_grad = c->w->requires_grad = true;
        report(lins[i].name, "backward", timed(reps, matmul_backward, c), 2 * flops, false);
        c->x->requires_grad = c->w->requires_grad = false;
        tensor_scope_end();
    }
}

int main(int argc, char **argv) {
    int reps = 10, batch = 128;
    double width = 1;
    const char *device = "cuda";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kernel-bench [--device cpu|cuda] [--batch N] [--width F] [--reps N] "
                   "[--only PREFIX]\n"
                   "Times BANIS's ops one by one at its shapes (default: the paper's, batch 128, "
                   "width 1).\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kernel-bench: %s needs a value (--help)\n", argv[i]);
            return 2;
        }
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--device"))
            device = v;
        else if (!strcmp(a, "--batch"))
            batch = atoi(v);
        else if (!strcmp(a, "--width"))
            width = atof(v);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else if (!strcmp(a, "--only"))
            only = v;
        else {
            fprintf(stderr, "kernel-bench: unknown option %s (--help)\n", a);
            return 2;
        }
    }
    if (reps < 1 || batch < 1 || !(width > 0 && width <= 4) ||
        (strcmp(device, "cpu") && strcmp(device, "cuda"))) {
        fprintf(stderr,
                "kernel-bench: --device cpu|cuda, --batch >= 1, --width in (0, 4], --reps >= 1\n");
        return 2;
    }
    dev = !strcmp(device, "cpu") ? DEVICE_CPU : DEVICE_CUDA;
    be = backend_for(dev);
    if (!be) {
        fprintf(stderr, "kernel-bench: %s\n", err_message());
        return 1;
    }
    printf("kernel-bench on %s: batch %d, width %g, float32, %d timed reps after 1 untimed\n",
           backend_device_description(dev), batch, width, reps);
    if (dev == DEVICE_CPU) {
        peak = cpu_peak_gflops();
        printf("machine FP32 peak (FMA loop on every thread): %.1f GFLOP/s\n", peak);
    }
    printf("%-28s %-8s %10s %10s\n", "op", "pass", "ms", "rate");
    rng r;
    rng_init(&r, 1);
    bench_ctx c = {0};
    bench_convs(&c, &r, batch, width, reps);
    bench_batch_norm(&c, &r, batch, width, reps);
    bench_leaky_relu(&c, &r, batch, width, reps);
    bench_adam(&c, &r, batch, width, reps);
    bench_linear(&c, &r, batch, width, reps);
    return 0;
}
