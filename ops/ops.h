// The op table: every function here computes on the inputs' device, records its backward
// when an input requires a gradient, and returns a new tensor (owned by the innermost scope)
// or NULL with err_message() naming the op and what was wrong. A NULL input yields NULL, so a
// chain of ops can be checked once at its end.
#pragma once
#include "../autograd/autograd.h"
#include "../tensor/rng.h"
#include "../tensor/tensor.h"
#include "ew_ir.h"

// ---- elementwise (broadcasting, NumPy rules) ------------------------------------------
// The general form: one program output over broadcast inputs, differentiated symbolically.
tensor *op_ew(const char *name, const ew_program *p, int n_inputs, tensor *const *inputs);
// Non-differentiable, multi-output, in place allowed: outs[k] = output k of p. The outputs share
// a dtype, which the program computes in; inputs of another dtype are converted as loaded.
int op_ew_into(const char *who, const ew_program *p, int n_outputs, tensor *const *outs,
               int n_inputs, tensor *const *inputs);

tensor *op_neg(tensor *x);
tensor *op_exp(tensor *x);
tensor *op_log(tensor *x);
tensor *op_sqrt(tensor *x);
tensor *op_abs(tensor *x);
tensor *op_tanh(tensor *x);
tensor *op_sigmoid(tensor *x);
tensor *op_relu(tensor *x);
tensor *op_leaky_relu(tensor *x, double slope);
tensor *op_square(tensor *x);
tensor *op_add(tensor *a, tensor *b);
tensor *op_sub(tensor *a, tensor *b);
tensor *op_mul(tensor *a, tensor *b);
tensor *op_div(tensor *a, tensor *b);
tensor *op_maximum(tensor *a, tensor *b);
tensor *op_minimum(tensor *a, tensor *b);
tensor *op_compare(ew_opcode cmp, tensor *a, tensor *b); // EW_LT ... EW_NE: 1.0 or 0.0
tensor *op_where(tensor *cond, tensor *a, tensor *b);
tensor *op_add_scalar(tensor *x, double s);
tensor *op_mul_scalar(tensor *x, double s);
tensor *op_pow_scalar(tensor *x, double exponent);
tensor *op_clamp(tensor *x, double lo, double hi);
// The shape both operands broadcast to; -1 with a message naming `who` when they don't.
int op_broadcast_shape(const char *who, int n, tensor *const *ts, int *ndim, int64_t *shape);
// Sums g over the broadcast dimensions so that it has `like`'s shape.
tensor *op_sum_to_shape(tensor *g, const tensor *like);

// ---- reductions -------------------------------------------------------------------------
// axes: n_axes indices (negative counts from the end); n_axes 0 reduces every axis.
tensor *op_sum(tensor *x, int n_axes, const int *axes, bool keepdim);
tensor *op_mean(tensor *x, int n_axes, const int *axes, bool keepdim);
tensor *op_max(tensor *x, int n_axes, const int *axes, bool keepdim);
#define AXES(...)                                                                                  \
    (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)), (const int[]) { __VA_ARGS__ }
#define ALL_AXES 0, NULL

// ---- linear algebra ---------------------------------------------------------------------
// (M, K) @ (K, N) -> (M, N); (B, M, K) @ (B, K, N) -> (B, M, N); (B, M, K) @ (K, N).
tensor *op_matmul(tensor *a, tensor *b);

// ---- convolutions -----------------------------------------------------------------------
typedef struct {
    int stride_h, stride_w;
    int pad_top, pad_bottom, pad_left, pad_right;
    int output_pad_h, output_pad_w; // conv_transpose2d only
} op_conv_opts;

// Keras padding='same' / 'valid' for a kernel and stride over an input of in_h x in_w.
op_conv_opts op_conv_same(int64_t in_h, int64_t in_w, int k_h, int k_w, int stride);
op_conv_opts op_conv_valid(int stride);
// The transposed convolution whose output is in*stride ('same'), as Keras Conv2DTranspose.
op_conv_opts op_conv_transpose_same(int64_t in_h, int64_t in_w, int k_h, int k_w, int stride);

// x: (N, C, H, W), w: (K, C, R, S), bias: (K) or NULL -> (N, K, OH, OW)
tensor *op_conv2d(tensor *x, tensor *w, tensor *bias, const op_conv_opts *o);
// y + bias per channel (axis 1) of y (N, C) or (N, C, H, W); its backward sums the gradient
// per channel in one pass that also adds it to the bias's leaf gradient where the backend can.
tensor *op_add_bias(tensor *y, tensor *bias);
// x: (N, C, H, W), w: (C, K, R, S) as PyTorch, bias: (K) or NULL -> (N, K, OH, OW) with
// OH = (H - 1) * stride - pad_top - pad_bottom + R + output_pad_h.
tensor *op_conv_transpose2d(tensor *x, tensor *w, tensor *bias, const op_conv_opts *o);

// ---- shape --------------------------------------------------------------------------------
tensor *op_reshape(tensor *x, int ndim, const int64_t *shape); // one -1 allowed
tensor *op_flatten(tensor *x, int start_dim);                  // (N, ...) -> (N, prod)
tensor *op_permute(tensor *x, const int *perm);
tensor *op_transpose(tensor *x, int dim0, int dim1);
tensor *op_slice(tensor *x, int dim, int64_t start, int64_t stop, int64_t step);
tensor *op_expand(tensor *x, int ndim, const int64_t *shape);
tensor *op_contiguous(tensor *x);
tensor *op_concat(int n, tensor *const *xs, int dim);
// Splits x along dim into n parts of the given sizes (summing to x's extent).
int op_split(tensor *x, int dim, int n, const int64_t *sizes, tensor **outs);
// A tensor that shares x's values but is cut from the graph.
tensor *op_detach(tensor *x);

// ---- layers' ops ------------------------------------------------------------------------
typedef enum {
    OP_ACT_NONE,
    OP_ACT_LEAKY_RELU,
    OP_ACT_RELU,
    OP_ACT_TANH,
    OP_ACT_SIGMOID
} op_activation;
typedef struct {
    bool training;   // batch statistics (and update the running ones) or running ones
    double momentum; // running = momentum * running + (1 - momentum) * batch (Keras)
    double eps;
    op_activation act; // fused after the affine transform
    double slope;      // for OP_ACT_LEAKY_RELU
} op_bn_opts;
// x: (N, C) or (N, C, H, W); gamma, beta, running_mean, running_var: (C). The running
// statistics are updated in place in training mode (variance unbiased, as PyTorch).
tensor *op_batch_norm(tensor *x, tensor *gamma, tensor *beta, tensor *running_mean,
                      tensor *running_var, const op_bn_opts *o);
// Instance normalisation (Ulyanov et al., Cycle-GAN's): each sample's every channel normalised
// over its H x W, (x - mean) / sqrt(var + eps) with the biased variance; no affine, no running
// statistics (PyTorch's InstanceNorm2d defaults). x: (N, C, H, W).
tensor *op_instance_norm(tensor *x, double eps);
// Reflection padding of H and W by p on every side (PyTorch's ReflectionPad2d: the edge pixel
// is not repeated); 1 <= p <= 8, p < H, p < W. x: (N, C, H, W) -> (N, C, H + 2p, W + 2p).
tensor *op_reflection_pad2d(tensor *x, int p);
// Inverted dropout: zero with probability p, scale the rest by 1/(1-p). Identity when !training.
tensor *op_dropout(tensor *x, double p, bool training, rng *r);
// Random tensors drawn on their device by the elementwise kernels (Philox, tensor/rng.h):
// the same numbers as tensor_rand_* on the host for the same stream, which advances by numel.
tensor *op_rand_uniform(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double lo,
                        double hi, tensor_device_type dev);
tensor *op_rand_normal(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double mean,
                       double std, tensor_device_type dev);
tensor *op_rand_bernoulli(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double prob,
                          tensor_device_type dev);
// Applies an activation (the fused one's unfused form).
tensor *op_activation_apply(tensor *x, op_activation act, double slope);

// ---- accounting (for benchmarks) -----------------------------------------------------
// Floating-point operations issued by matmul and the convolutions (forward and backward)
// since the last reset; multiply-add = 2.
int64_t op_flops(void);
void op_flops_reset(void);
void op_flops_add(int64_t n);

// ---- losses (means over all elements) ----------------------------------------------------
// Binary cross-entropy on probabilities, clamped to [1e-7, 1 - 1e-7] (its gradient vanishes
// once p saturates: prefer op_bce_logits for a model that ends in a sigmoid).
tensor *op_bce(tensor *p, tensor *target);
// Binary cross-entropy of sigmoid(x) computed from the logits x, as Keras does for a sigmoid
// output: max(x, 0) - x y + log(1 + exp(-|x|)). No clamping; the gradient sigmoid(x) - y never
// vanishes while the prediction is wrong.
tensor *op_bce_logits(tensor *x, tensor *target);
tensor *op_mse(tensor *a, tensor *b);
#define OP_BCE_EPSILON 1e-7
