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
