// Convolutions as GEMMs over im2col (cpu_conv_impl.h, for float and double).
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

typedef enum { CONV_FORWARD, CONV_BACKWARD_INPUT, CONV_BACKWARD_WEIGHT } conv_pass;

#define CPU_TEMPLATE "cpu_conv_impl.h" // its functions for float and double
#include "cpu_template.h"

static int run(conv_pass pass, const conv_geometry *g, const tensor *a, const tensor *b,
               tensor *out) {
    if (out->dtype == TENSOR_F64) return conv_f64(pass, g, cpu_data(a), cpu_data(b), cpu_data(out));
    return conv_f32(pass, g, cpu_data(a), cpu_data(b), cpu_data(out));
}

// out (N, channels, pixels) += bias per channel, after the convolution (in out's precision).
static void add_bias(const tensor *bias, tensor *out) {
    if (!bias) return;
    int64_t n = out->shape[0], ch = out->shape[1], pix = out->shape[2] * out->shape[3];
    const void *b = cpu_data(bias);
    void *o = cpu_data(out);
    for (int64_t i = 0; i < n * ch; i++)
        for (int64_t p = 0; p < pix; p++)
            if (out->dtype == TENSOR_F64)
                ((double *)o)[i * pix + p] += ((const double *)b)[i % ch];
            else
                ((float *)o)[i * pix + p] += ((const float *)b)[i % ch];
}

int cpu_conv2d_forward(const conv_geometry *g, const tensor *x, const tensor *w, const tensor *bias,
                       tensor *y) {
    if (run(CONV_FORWARD, g, x, w, y)) return -1;
    add_bias(bias, y);
    return 0;
}
int cpu_conv2d_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w,
                              const tensor *bias, tensor *dx) {
    if (run(CONV_BACKWARD_INPUT, g, dy, w, dx)) return -1;
    add_bias(bias, dx);
    return 0;
}
int cpu_conv2d_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy,
                               tensor *dw) {
    return run(CONV_BACKWARD_WEIGHT, g, x, dy, dw);
}
