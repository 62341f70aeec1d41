// The gradient-check table: every differentiable op, in float64, its analytic gradient
// against central differences. Shared by tools/gradcheck and tests/test_gradcheck.
#pragma once
#include <stdbool.h>

#include "../ops/ops.h"

typedef enum { INPUT_UNIFORM, INPUT_POSITIVE, INPUT_PROBABILITY, INPUT_BINARY } gc_input_kind;

typedef struct {
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    gc_input_kind kind;
    bool transposed; // stored transposed and viewed back: a non-contiguous input
    bool no_grad;    // a target or a mask: not differentiated
} gc_input;

typedef struct {
    char name[80];
    int n_inputs;
    gc_input inputs[4];
    tensor *(*fn)(tensor **in, const void *arg);
    union {
        op_conv_opts conv;
        double scalar;
        int axes[4];
        op_bn_opts bn;
    } arg;
    bool preset_grads; // cuda-parity: the inputs' gradients exist before the backward (0.5
                       // each, as an optimizer's preallocated buffers), so it adds to them
} gradcheck_case;

typedef struct {
    double worst_abs;    // max |analytic - numeric|
    double worst_excess; // max of |a-n| - (atol + rtol*|n|): <= 0 passes
    int64_t checked;     // elements compared
    bool passed;
    char message[256]; // why it failed, if it did
} gradcheck_result;

#define GRADCHECK_EPS  1e-6
#define GRADCHECK_ATOL 1e-5
#define GRADCHECK_RTOL 1e-3

// The table (built once).
const gradcheck_case *gradcheck_cases(int *n);
// Runs one case on `dev`, inputs drawn from `seed`.
gradcheck_result gradcheck_run(const gradcheck_case *c, tensor_device_type dev, uint64_t seed);
