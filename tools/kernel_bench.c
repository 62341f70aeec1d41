// kernel-bench (needs a GPU): BANIS's convolution shapes (forward, input gradient, weight
// gradient) and its elementwise / batch-norm kernels on the CUDA backend, with achieved TFLOP/s
// and GB/s, each result checked against the CPU backend. bench/conv_torch.py times the same
// shapes through PyTorch (cuDNN, TF32) and bench/compare.sh prints the ratios.
// Usage: kernel-bench [--reps N]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../ops/backend.h"
#include "../ops/ops.h"
#include "../tensor/error.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *name;
    int n, c, h, w, k, r, stride;
    bool transpose;
} conv_shape;

// The paper's sizes, batch 128.
static const conv_shape shapes[] = {
    {"G convT 8x8 256->256 s1", 128, 256, 8, 8, 256, 5, 1, true},
    {"G convT 8x8 256->128 s2", 128, 256, 8, 8, 128, 5, 2, true},
    {"G convT 16x16 128->64 s2", 128, 128, 16, 16, 64, 5, 2, true},
    {"G convT 32x32 64->1 s2", 128, 64, 32, 32, 1, 5, 2, true},
    {"D/E conv 64x64 1->64 s2", 128, 1, 64, 64, 64, 5, 2, false},
    {"D conv 32x32 64->128 s2", 128, 64, 32, 32, 128, 5, 2, false},
    {"E conv 32x32 128->256 s2", 128, 128, 32, 32, 256, 5, 2, false},
    {"E conv 16x16 256->512 s2", 128, 256, 16, 16, 512, 5, 2, false},
};

static double rel_err(tensor *a, tensor *b) {
    int64_t n = tensor_numel(a);
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n), worst = 0, scale = 1e-30;
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

int main(int argc, char **argv) {
    int reps = 20;
    if (argc == 3 && !strcmp(argv[1], "--reps")) reps = atoi(argv[2]);
    if (argc == 2 || argc > 3 || reps < 1) {
        fprintf(stderr, "usage: kernel-bench [--reps N]   (N >= 1)\n");
        return 2;
    }
    if (!backend_for(DEVICE_CUDA)) {
        fprintf(stderr, "kernel-bench: %s\n", err_message());
        return 1;
    }
    const backend *be = backend_for(DEVICE_CUDA);
    rng r;
    rng_init(&r, 1);
    printf("%-28s %-8s %10s %10s %10s\n", "shape", "pass", "ms", "TFLOP/s", "rel err");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const conv_shape *s = &shapes[i];
        tensor_scope_begin();
        tensor *x = tensor_rand_normal(&r, TENSOR_F32, SHAPE(s->n, s->c, s->h, s->w), 0, 1, DEVICE_CPU);
        tensor *w = s->transpose ? tensor_rand_normal(&r, TENSOR_F32, SHAPE(s->c, s->k, s->r, s->r), 0, 0.05, DEVICE_CPU)
                                 : tensor_rand_normal(&r, TENSOR_F32, SHAPE(s->k, s->c, s->r, s->r), 0, 0.05, DEVICE_CPU);
        op_conv_opts o = s->transpose ? op_conv_transpose_same(s->h, s->w, s->r, s->r, s->stride)
                                      : op_conv_same(s->h, s->w, s->r, s->r, s->stride);
        tensor *xg = tensor_to_device(x, DEVICE_CUDA), *wg = tensor_to_device(w, DEVICE_CUDA);
        xg->requires_grad = wg->requires_grad = true;
        // forward, timed; then backward (input + weight gradients), timed
        tensor *y = NULL;
        double flops = 0;
        for (int pass = 0; pass < 2; pass++) {
            double t = 0;
            for (int k = -1; k < reps; k++) {
                tensor_scope_begin();
                be->synchronize();
                op_flops_reset();
                double t0 = now();
                tensor *yy = s->transpose ? op_conv_transpose2d(xg, wg, NULL, &o) : op_conv2d(xg, wg, NULL, &o);
                if (pass == 0) {
                    be->synchronize();
                    if (k >= 0) t += now() - t0;
                    flops = (double)op_flops();
                    if (k == reps - 1) y = tensor_keep(yy);
                } else {
                    tensor *l = op_sum(yy, ALL_AXES, false);
                    be->synchronize();
                    op_flops_reset();
                    double t1 = now();
                    ag_backward(l, NULL);
                    be->synchronize();
                    if (k >= 0) t += now() - t1;
                    flops = (double)op_flops();
                }
                tensor_scope_end();
            }
            t /= reps;
            double err = 0;
            if (pass == 0) {
                tensor *ycpu = s->transpose ? op_conv_transpose2d(x, w, NULL, &o) : op_conv2d(x, w, NULL, &o);
                err = rel_err(ycpu, y);
            }
            printf("%-28s %-8s %10.3f %10.2f %10.1e\n", s->name, pass ? "backward" : "forward", 1e3 * t, flops / t / 1e12, err);
        }
        tensor_release(y);
        tensor_scope_end();
    }
    // elementwise: fused batch-norm apply + LeakyReLU over (128, 128, 16, 16), GB/s moved
    tensor_scope_begin();
    tensor *x = tensor_to_device(tensor_rand_normal(&r, TENSOR_F32, SHAPE(128, 128, 16, 16), 0, 1, DEVICE_CPU), DEVICE_CUDA);
    tensor *g = tensor_ones(TENSOR_F32, SHAPE(128), DEVICE_CUDA), *b = tensor_zeros(TENSOR_F32, SHAPE(128), DEVICE_CUDA);
    tensor *rm = tensor_zeros(TENSOR_F32, SHAPE(128), DEVICE_CUDA), *rv = tensor_ones(TENSOR_F32, SHAPE(128), DEVICE_CUDA);
    op_bn_opts bn = {.training = true, .momentum = 0.8, .eps = 1e-3, .act = OP_ACT_LEAKY_RELU, .slope = 0.2};
    double t = 0;
    for (int k = -1; k < reps; k++) {
        tensor_scope_begin();
        be->synchronize();
        double t0 = now();
        op_batch_norm(x, g, b, rm, rv, &bn);
        be->synchronize();
        if (k >= 0) t += now() - t0;
        tensor_scope_end();
    }
    t /= reps;
    double bytes = 4.0 * (double)tensor_numel(x) * 4; // read x twice (stats), once (apply), write y
    printf("%-28s %-8s %10.3f %10.1f GB/s\n", "batch-norm+LeakyReLU train", "forward", 1e3 * t, bytes / t / 1e9);
    tensor_scope_end();
    return 0;
}
