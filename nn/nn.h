// nn/: the API models are written against. Modules own named parameters and buffers,
// nest (hierarchical names such as "gen_a.3.weight"), switch between train and eval, and can
// be frozen (weights fixed, gradients still flowing through to earlier modules). A generic
// optimizer drives any list of parameters; checkpoints are safetensors files.
#pragma once
#include <stdbool.h>

#include "../ops/ops.h"

// ---- construction context ---------------------------------------------------------------
typedef struct {
    tensor_dtype dtype;
    tensor_device_type device;
    rng *init_rng;    // draws initial weights
    rng *dropout_rng; // draws dropout masks during training (may be NULL if no dropout)
} nn_ctx;

typedef enum { NN_INIT_ZEROS, NN_INIT_ONES, NN_INIT_GLOROT_UNIFORM, NN_INIT_HE_NORMAL } nn_init;
typedef enum { NN_PAD_SAME, NN_PAD_VALID } nn_padding;

// ---- modules ----------------------------------------------------------------------------
#define NN_NAME_MAX    96
#define NN_MAX_TENSORS 8

typedef struct nn_module nn_module;
typedef tensor *(*nn_forward_fn)(nn_module *m, tensor *x);

typedef struct {
    char name[NN_NAME_MAX];
    tensor *t; // owned (retained) by the module; a parameter's is NULL until nn_place
    // a parameter's declaration: what nn_place allocates in the flat buffer and how it fills it
    tensor_dtype dtype;
    tensor_device_type device;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int init;                // nn_init
    int64_t fan_in, fan_out; // as Keras computes them for the layer
    rng *init_rng;
} nn_named_tensor;

struct nn_module {
    const char *type;       // "Linear", "Conv2d", "Sequential", ...
    char name[NN_NAME_MAX]; // name inside its parent
    nn_forward_fn forward;
    void *config; // the layer's settings (owned)
    nn_named_tensor params[NN_MAX_TENSORS];
    int n_params;
    nn_named_tensor buffers[NN_MAX_TENSORS]; // state that is saved but not trained
    int n_buffers;
    nn_module **children;
    int n_children;
    bool training;
    bool frozen;
    tensor_storage *flat_params, *flat_grads; // set by nn_place on the module it was given
};

nn_module *nn_linear(const nn_ctx *c, int64_t in, int64_t out, bool bias);
// Keras-style layers: kernel k x k, stride s, padding 'same' or 'valid'; weights he_normal.
nn_module *nn_conv2d(const nn_ctx *c, int64_t in_ch, int64_t out_ch, int k, int stride,
                     nn_padding pad, bool bias);
nn_module *nn_conv_transpose2d(const nn_ctx *c, int64_t in_ch, int64_t out_ch, int k, int stride,
                               nn_padding pad, bool bias);
// BatchNorm over (N, C) or (N, C, H, W). Keras defaults: momentum 0.99, eps 1e-3.
nn_module *nn_batch_norm(const nn_ctx *c, int64_t channels, double momentum, double eps);
// Running statistics per input kind. A network whose BatchNorm layers see inputs of different
// distributions (BANIS's generators: z in the Pioneer, encoder codes in the Successor) keeps
// one pair of running statistics per kind: nn_bn_stat_sets gives every BatchNorm under m `n`
// sets (set k > 0 saved as running_mean_k and running_var_k; set 0 is running_mean/var), and
// nn_bn_use_stats picks the set that later passes read (inference) and update (training).
int nn_bn_stat_sets(const nn_ctx *c, nn_module *m, int n);
void nn_bn_use_stats(nn_module *m, int set);
nn_module *nn_dropout(const nn_ctx *c, double p);
nn_module *nn_leaky_relu(double slope);
nn_module *nn_relu(void);
nn_module *nn_tanh(void);
nn_module *nn_sigmoid(void);
nn_module *nn_flatten(void);
// Instance normalisation over H x W per sample and channel, no affine (op_instance_norm).
nn_module *nn_instance_norm(double eps);
// Reflection padding of H and W by p (op_reflection_pad2d).
nn_module *nn_reflection_pad(int p);
// x + body(x); takes body (freed on failure). Its parameters are named body.*.
nn_module *nn_residual(nn_module *body);
// Reshapes (N, ...) to (N, shape...).
nn_module *nn_reshape(int ndim, const int64_t *shape);
// Runs its children in order. Takes ownership of each child. A BatchNorm followed by an
// activation runs as one fused pass.
nn_module *nn_sequential(int n, nn_module *const *children);
int nn_sequential_add(nn_module *seq, nn_module *child);
// A container with named children and no forward of its own (a model's root).
nn_module *nn_container(const char *type);
int nn_add_child(nn_module *parent, const char *name, nn_module *child); // -1: not added
// Adds n children named `names` (NULL: by their index in the parent), taking every one, also on
// failure: a NULL child (one that could not be built) or no memory frees those not yet added
// and returns -1 (err_message).
int nn_adopt(nn_module *parent, int n, const char *const *names, nn_module *const *children);
// Changes a layer's weight initialiser (drawn again from the ctx's rng).
int nn_reinit(const nn_ctx *c, nn_module *m, const char *param, nn_init init);

tensor *nn_forward(nn_module *m, tensor *x);
void nn_free(nn_module *m);
void nn_set_training(nn_module *m, bool training);
void nn_freeze(nn_module *m, bool frozen); // Keras trainable = !frozen
nn_module *nn_child(nn_module *m, const char *name);

// ---- named tensor lists -------------------------------------------------------------------
typedef struct {
    int n, cap;
    nn_named_tensor *items; // tensors retained by the list
    int dropped;            // adds that failed (out of memory): users of the list refuse it
} nn_tensor_list;

int nn_list_add(nn_tensor_list *l, const char *name, tensor *t); // -1 (err_message) on OOM
void nn_list_free(nn_tensor_list *l);
tensor *nn_list_find(const nn_tensor_list *l, const char *name);
// Appends m's parameters (and/or buffers) with names prefixed by `prefix` ("" for none).
void nn_collect(nn_module *m, const char *prefix, bool params, bool buffers, nn_tensor_list *out);
int64_t nn_count_parameters(nn_module *m);
// 0 if every parameter and buffer of m is finite; else -1, err_message() naming the first
// tensor with a NaN or an infinity (one reduction per tensor, on its device).
int nn_check_finite(nn_module *m);

// Layers declare their parameters; nn_place creates them, once, inside one flat buffer (and
// their gradients inside another), in the order nn_collect lists them, and initialises them in
// that order from their ctx's init_rng. Until then a parameter has no tensor (nn_forward
// refuses the module); views of it exist only after it lives where it always will. An
// optimizer given the placed module (nn_optimizer_for) updates it in one pass over one array,
// and zeroes its gradients with one fill. -1 (err_message) on failure or if already placed.
int nn_place(nn_module *m);

// ---- initialisers -------------------------------------------------------------------------
// Fill t in place. fan_in/fan_out as Keras computes them for the layer.
int nn_init_tensor(tensor *t, nn_init init, int64_t fan_in, int64_t fan_out, rng *r);

// ---- losses (means) -----------------------------------------------------------------------
static inline tensor *nn_bce_loss(tensor *p, tensor *target) { return op_bce(p, target); }
static inline tensor *nn_mse_loss(tensor *a, tensor *b) { return op_mse(a, b); }

// ---- the optimizer module -----------------------------------------------------------------
typedef enum { NN_SGD, NN_ADAM } nn_optim_kind;

#define NN_MAX_MILESTONES 8
typedef struct {
    nn_optim_kind kind;
    double lr;
    double momentum;          // SGD (0: plain SGD)
    double beta1, beta2, eps; // Adam; Keras defaults 0.9, 0.999, 1e-7
    // Schedule: lr is multiplied by `factor` at each milestone step (constant when none).
    int n_milestones;
    int64_t milestones[NN_MAX_MILESTONES];
    double factor;
} nn_optim_config;

nn_optim_config nn_sgd(double lr, double momentum);
nn_optim_config nn_adam(double lr, double beta1, double beta2, double eps);

typedef struct nn_optimizer nn_optimizer;
// Drives the parameters in `params` (from one module or several). `name` prefixes its state.
nn_optimizer *nn_optimizer_new(const char *name, nn_optim_config cfg, const nn_tensor_list *params);
// The same over every parameter of the given modules (names prefixed by each module's name):
// a module given to nn_place is one run (one update pass over its flat buffer); any other
// parameter is its own run.
nn_optimizer *nn_optimizer_for(const char *name, nn_optim_config cfg, int n_modules,
                               nn_module *const *modules);
void nn_optimizer_free(nn_optimizer *o);
int nn_optimizer_step(nn_optimizer *o); // one update from the parameters' gradients
int nn_optimizer_zero_grad(nn_optimizer *o);
// One training update: reads the scalar `loss` into *value, refuses NaN or Inf (a message
// naming the value), backpropagates and steps `o`. Zero the gradients first.
int nn_minimize(nn_optimizer *o, tensor *loss, double *value);
// The same without reading the loss: it stays on the device (no synchronisation); read a
// step's losses together with nn_read_scalars and check them there.
int nn_minimize_deferred(nn_optimizer *o, tensor *loss);
// Reads n one-element tensors (same dtype and device) with one copy to the host.
int nn_read_scalars(int n, tensor *const *scalars, double *values);
// Writes n one-element tensors into dst[0 .. n) (a vector on their device), without reading
// anything back: a step that stays on the device (a CUDA graph) leaves its losses there.
int nn_gather_scalars(int n, tensor *const *scalars, tensor *dst);
double nn_optimizer_lr(const nn_optimizer *o); // the rate the next step uses
int64_t nn_optimizer_steps(const nn_optimizer *o);
int nn_optimizer_set_steps(nn_optimizer *o, int64_t steps); // the host's count and the device's
// The host's count only, for a replayed step (nn_graph): the device advanced its own.
void nn_optimizer_advance_steps(nn_optimizer *o, int64_t by);
// Kernel launches one step makes (one per contiguous run of parameters).
int nn_optimizer_launches(const nn_optimizer *o);
// Its state tensors ("<name>.m.<i>", ...) for checkpoints.
void nn_optimizer_state(nn_optimizer *o, nn_tensor_list *out);
const char *nn_optimizer_name(const nn_optimizer *o);
