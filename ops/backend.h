// One backend interface, two implementations (ops/cpu/, ops/cuda/). Ops in ops/*.c check
// shapes, allocate outputs and record the graph; then they call exactly one of these.
// Every function returns 0 on success or -1 with err_set() naming the op.
#pragma once
#include <stdbool.h>

#include "../tensor/memory.h"
#include "../tensor/rng.h"
#include "../tensor/tensor.h"
#include "ew_ir.h"

typedef enum { REDUCE_SUM, REDUCE_MAX } reduce_kind;

// C[b] = A[b] @ B[b] for b < batch; A: (M, K), B: (K, N) addressed by element strides
// (so a transpose is free); C: contiguous (batch, M, N).
typedef struct {
    int64_t batch, M, N, K;
    const tensor *a, *b, *c; // element offsets come from the tensors
    int64_t a_batch_stride, a_row_stride, a_col_stride;
    int64_t b_batch_stride, b_row_stride, b_col_stride;
} gemm_args;

// 2-D convolution geometry. x: (N, C, H, W), w: (K, C, R, S), y: (N, K, OH, OW), all
// contiguous. Padding may be asymmetric (Keras 'same'): pad_bottom/right are implied by OH/OW.
typedef struct {
    int64_t N, C, H, W, K, R, S, OH, OW;
    int64_t stride_h, stride_w, pad_top, pad_left;
} conv_geometry;

// Per-channel sums in one pass, fused (an optional entry: without it the ops compose them from
// elementwise passes and reductions, as on the CPU). x: (N, C) or (N, C, H, W), every tensor
// contiguous, the per-channel ones C values each.
//   SUMS_STATS: out1 = the batch mean, out2 = the biased variance; when running_mean is given,
//     running = momentum * running + (1 - momentum) * batch (variance unbiased).
//   SUMS_BN_GRAD (g: x's shape): with xhat = (x - mean) rsqrt(var + eps) and gp the gradient at
//     pre = xhat gamma + beta through activation `act` (op_activation, ops.h; `slope` for leaky
//     ReLU): out1 = sum gp (dbeta), out2 = sum gp xhat (dgamma).
//   SUMS_PLAIN: out1 = sum x (a bias gradient).
// acc1 += out1 and acc2 += out2 where given (leaf gradients, accumulated in the same pass).
typedef enum { SUMS_STATS, SUMS_BN_GRAD, SUMS_PLAIN } sums_mode;
typedef struct {
    sums_mode mode;
    const tensor *x, *g, *mean, *var, *gamma, *beta;
    tensor *out1, *out2, *acc1, *acc2, *running_mean, *running_var;
    double eps, slope, momentum;
    int act;
} channel_sums_args;

// A device's backend: its memory (what tensor/ sees of it; first, so a storage's memory is its
// backend), then the compute.
typedef struct backend {
    tensor_memory mem;
    // outs[k] = program output k, evaluated at every index of outs[0]'s shape; each input is
    // already a view broadcast (stride 0) to that shape. Outputs may alias inputs exactly.
    // `op` names the op the program belongs to (for kernel names, profiles and messages).
    int (*elementwise)(const char *op, const ew_program *p, tensor *const *outs,
                       const tensor *const *ins);
    // out has in's ndim with extent 1 on the reduced axes.
    int (*reduce)(reduce_kind kind, const tensor *in, tensor *out);
    int (*gemm)(const gemm_args *args);
    // The two passes that make a convolution's (or a transposed one's) output also add `bias`
    // to it when given (one value per output channel; NULL: none), in the same pass.
    int (*conv2d_forward)(const conv_geometry *g, const tensor *x, const tensor *w,
                          const tensor *bias, tensor *y);
    int (*conv2d_backward_input)(const conv_geometry *g, const tensor *dy, const tensor *w,
                                 const tensor *bias, tensor *dx);
    int (*conv2d_backward_weight)(const conv_geometry *g, const tensor *x, const tensor *dy,
                                  tensor *dw);
    // Optional fusions (NULL: the op composes them, as on the CPU): dw += the weight gradient
    // and C += A @ B, in the pass that sums split K's partials (a leaf gradient accumulated
    // without a pass of its own); per-channel sums (above).
    int (*conv2d_backward_weight_add)(const conv_geometry *g, const tensor *x, const tensor *dy,
                                      tensor *dw);
    int (*gemm_add)(const gemm_args *args); // C += A @ B, batch 1 (a dense layer's weight)
    int (*channel_sums)(const channel_sums_args *a);
} backend;

// The backend that computes on t's storage.
static inline const backend *tensor_backend(const tensor *t) {
    return (const backend *)t->storage->memory; // mem is backend's first member
}
// The strided copy (with dtype conversion) and the fill tensor/ is given: elementwise programs
// run by the tensor's backend.
int backend_copy(tensor *dst, const tensor *src);
int backend_fill(tensor *t, double value);

// Every elementwise call goes through here: it dispatches to the tensors' backend, and first
// shows the program to the observer if one is set (tools/nvrtc-check records what the library
// generates this way).
int backend_elementwise(const char *op, const ew_program *p, tensor *const *outs,
                        const tensor *const *ins);
typedef void (*ew_observer_fn)(const char *op, const ew_program *p, tensor *const *outs,
                               const tensor *const *ins);
void backend_set_ew_observer(ew_observer_fn fn);

const backend *backend_cpu(void);
const backend *backend_for(tensor_device_type dev);
// What a program says it runs on: "CPU" or the CUDA device's name (a GPU, or the emulated device).
const char *backend_device_description(tensor_device_type dev);
// What only the CUDA backend has (its device, counters, graphs): ops/cuda/cuda.h.
