// Convolutions as GEMMs over im2col (cpu_conv_impl.h, for float and double).
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

typedef enum { CONV_FORWARD, CONV_BACKWARD_INPUT, CONV_BACKWARD_WEIGHT } conv_pass;

// Stride 2, the most common in BANIS, eight floats at a time (a strided store is scalar
// otherwise): dst[2 i] += src[i] for i < n, where `avail` elements from dst may be read; the odd
// elements read on the way are added -0.0 (which leaves every float as it is).
typedef float v8f __attribute__((vector_size(32)));
static void scatter_add2_f32(float *dst, const float *src, int64_t n, int64_t avail) {
    int64_t i = 0;
    const v8f z = {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f};
    for (; i + 8 <= n && 2 * i + 16 <= avail; i += 8) {
        v8f s, d0, d1;
        memcpy(&s, src + i, sizeof s);
        memcpy(&d0, dst + 2 * i, sizeof d0);
        memcpy(&d1, dst + 2 * i + 8, sizeof d1);
        d0 += __builtin_shufflevector(s, z, 0, 8, 1, 9, 2, 10, 3, 11);
        d1 += __builtin_shufflevector(s, z, 4, 12, 5, 13, 6, 14, 7, 15);
        memcpy(dst + 2 * i, &d0, sizeof d0);
        memcpy(dst + 2 * i + 8, &d1, sizeof d1);
    }
    for (; i < n; i++) dst[2 * i] += src[i];
}
static void scatter_add2_f64(double *dst, const double *src, int64_t n, int64_t avail) {
    (void)avail;
    for (int64_t i = 0; i < n; i++) dst[2 * i] += src[i];
}

#define CPU_TEMPLATE "cpu_conv_impl.h" // its functions for float and double
#include "cpu_template.h"

static int run(conv_pass pass, const conv_geometry *g, const tensor *a, const tensor *b,
               tensor *out) {
    if (out->dtype == TENSOR_F64) return conv_f64(pass, g, cpu_data(a), cpu_data(b), cpu_data(out));
    return conv_f32(pass, g, cpu_data(a), cpu_data(b), cpu_data(out));
}

int cpu_conv2d_forward(const conv_geometry *g, const tensor *x, const tensor *w, tensor *y) {
    return run(CONV_FORWARD, g, x, w, y);
}
int cpu_conv2d_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w,
                              tensor *dx) {
    return run(CONV_BACKWARD_INPUT, g, dy, w, dx);
}
int cpu_conv2d_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy,
                               tensor *dw) {
    return run(CONV_BACKWARD_WEIGHT, g, x, dy, dw);
}
