// Ops that layers are made of: batch normalisation (with a fused activation), dropout,
// and the activations by name. Built from the elementwise and reduction ops, so their
// gradients come from those ops' rules; batch norm's per-channel sums run as the backend's
// fused kernels where it has them (CUDA), composed from those ops where not (the CPU, which
// is thus the reference the fused kernels are checked against).
#include <math.h>

#include "../tensor/error.h"
#include "backend.h"
#include "ops.h"

// Appends activation `act` applied to node v.
static int apply_act(ew_program *p, int v, op_activation act, double slope) {
    switch (act) {
        case OP_ACT_LEAKY_RELU: return ew_leaky_relu(p, v, slope);
        case OP_ACT_RELU: return ew_unary(p, EW_RELU, v);
        case OP_ACT_TANH: return ew_unary(p, EW_TANH, v);
        case OP_ACT_SIGMOID: return ew_unary(p, EW_SIGMOID, v);
        default: return v;
    }
}

tensor *op_activation_apply(tensor *x, op_activation act, double slope) {
    if (act == OP_ACT_NONE) return op_reshape(x, x ? x->ndim : 0, x ? x->shape : NULL);
    ew_program p;
    ew_init(&p, 1);
    ew_output(&p, apply_act(&p, ew_input(&p, 0), act, slope));
    return op_ew("activation", &p, 1, &x);
}

// d act(v) / dv times g, for the activation fused into batch norm, at pre-activation v.
static int act_backward(ew_program *p, int g, int v, op_activation act, double slope) {
    int pos = ew_binary(p, EW_GT, v, ew_const(p, 0));
    switch (act) {
        case OP_ACT_LEAKY_RELU: return ew_where(p, pos, g, ew_mul(p, g, ew_const(p, slope)));
        case OP_ACT_RELU: return ew_where(p, pos, g, ew_const(p, 0));
        case OP_ACT_TANH: {
            int t = ew_unary(p, EW_TANH, v);
            return ew_mul(p, g, ew_sub(p, ew_const(p, 1), ew_mul(p, t, t)));
        }
        case OP_ACT_SIGMOID: {
            int s = ew_unary(p, EW_SIGMOID, v);
            return ew_mul(p, g, ew_mul(p, s, ew_sub(p, ew_const(p, 1), s)));
        }
        default: return g;
    }
}

// xhat = (x - mean) * rsqrt(var + eps), from inputs 0 (x), 1 (mean), 2 (var).
static int bn_xhat(ew_program *p, double eps) {
    return ew_mul(p, ew_sub(p, ew_input(p, 0), ew_input(p, 1)),
                  ew_unary(p, EW_RSQRT, ew_add(p, ew_input(p, 2), ew_const(p, eps))));
}

typedef struct {
    double eps, slope;
    op_activation act;
} bn_ctx;

// The training-mode gradients in two elementwise passes and two reductions (the textbook
// batch-norm backward), instead of the many passes of the graph of its parts:
//   gp = dL/d(pre-activation), dbeta = sum gp, dgamma = sum gp * xhat,
//   dx = gamma rsqrt(var + eps) (gp - dbeta / M - xhat dgamma / M), M values per channel.
// Inputs: x, gamma, beta, and the batch mean and variance (saved, no gradient). gp and gp * xhat
// live only for their sums: the pass that writes dx computes gp again from x and g (the same
// reads as loading a stored gp), so the backward holds g and two tensors of x's size at most,
// then g and dx, never four.
static int bn_pre_grad(ew_program *p, const bn_ctx *c) { // inputs x, mean, var, gamma, beta, g
    int xhat = bn_xhat(p, c->eps);
    int pre = ew_add(p, ew_mul(p, xhat, ew_input(p, 3)), ew_input(p, 4));
    return act_backward(p, ew_input(p, 5), pre, c->act, c->slope);
}

// The backend's fused per-channel sums (backend.h), when it has them and every operand is
// contiguous; else NULL (the op composes them).
static const backend *fused_bn(int n, const tensor *const *ts) {
    const backend *be = tensor_backend(ts[0]);
    if (!be->channel_sums) return NULL;
    for (int i = 0; i < n; i++)
        if (ts[i] && !tensor_is_contiguous(ts[i])) return NULL;
    return be;
}

// dbeta = sum gp and dgamma = sum gp * xhat over each channel, as (1, C[, 1, 1]). Fused: one
// pass that stores neither, adding them to gamma's and beta's leaf gradients as it goes (then
// *acc_gamma / *acc_beta are set). Composed: gp and gp * xhat as tensors, then two sums.
static int bn_grad_sums(const bn_ctx *c, tensor *const in[6], tensor **dbeta, tensor **dgamma,
                        bool *acc_beta, bool *acc_gamma) {
    tensor *x = in[0], *gamma = in[3], *beta = in[4], *g = in[5];
    int nd = x->ndim, n_axes = nd == 4 ? 3 : 1;
    int64_t C = x->shape[1], bshape[4] = {1, C, 1, 1};
    tensor *gb = ag_leaf_grad(beta), *gg = ag_leaf_grad(gamma);
    tensor *ops[8] = {x, g, in[1], in[2], gamma, beta, gb, gg};
    const backend *be = fused_bn(8, (const tensor *const *)ops);
    *acc_beta = *acc_gamma = false;
    if (be) {
        *dbeta = tensor_empty(x->dtype, nd, bshape, tensor_device(x));
        *dgamma = tensor_empty(x->dtype, nd, bshape, tensor_device(x));
        channel_sums_args a = {.mode = SUMS_BN_GRAD,
                               .x = x,
                               .g = g,
                               .mean = in[1],
                               .var = in[2],
                               .gamma = gamma,
                               .beta = beta,
                               .out1 = *dbeta,
                               .out2 = *dgamma,
                               .acc1 = gb,
                               .acc2 = gg,
                               .eps = c->eps,
                               .slope = c->slope,
                               .act = (int)c->act};
        if (!*dbeta || !*dgamma || be->channel_sums(&a)) {
            err_prefix("batch_norm backward: ");
            return -1;
        }
        *acc_beta = gb != NULL;
        *acc_gamma = gg != NULL;
        return 0;
    }
    const int *axes = nd == 4 ? (const int[]){0, 2, 3} : (const int[]){0};
    tensor *ins[6] = {x, in[1], in[2], op_reshape(gamma, nd, bshape), op_reshape(beta, nd, bshape),
                      g};
    ew_program p;
    ew_init(&p, 6); // x, mean, var, gamma, beta, g
    int gp = bn_pre_grad(&p, c);
    ew_output(&p, gp);
    ew_output(&p, ew_mul(&p, gp, bn_xhat(&p, c->eps)));
    tensor_scope_begin(); // gp and gp * xhat: freed once summed
    tensor *GP = tensor_empty(x->dtype, x->ndim, x->shape, tensor_device(x));
    tensor *GPX = tensor_empty(x->dtype, x->ndim, x->shape, tensor_device(x));
    tensor *outs[2] = {GP, GPX};
    *dbeta = *dgamma = NULL;
    if (GP && GPX && !op_ew_into("batch_norm backward", &p, 2, outs, 6, ins)) {
        *dbeta = op_sum(GP, n_axes, axes, true);
        *dgamma = op_sum(GPX, n_axes, axes, true);
    }
    tensor_scope_end_keeping(2, (tensor *[]){*dbeta, *dgamma});
    return *dbeta && *dgamma ? 0 : -1;
}

static int bn_backward(ag_node *n, tensor *g, tensor **gin) {
    const bn_ctx *c = n->ctx;
    tensor *x = n->inputs[0], *gamma = n->inputs[1], *beta = n->inputs[2];
    tensor *mean = n->inputs[3], *var = n->inputs[4];
    int nd = x->ndim;
    int64_t C = x->shape[1], bshape[4] = {1, C, 1, 1};
    double M = (double)(tensor_numel(x) / C);
    tensor *gm = op_reshape(gamma, nd, bshape), *bt = op_reshape(beta, nd, bshape);
    tensor *dbeta, *dgamma;
    bool acc_beta, acc_gamma;
    if (bn_grad_sums(c, (tensor *[]){x, mean, var, gamma, beta, g}, &dbeta, &dgamma, &acc_beta,
                     &acc_gamma))
        return -1;
    ew_program p;
    if (x->requires_grad) {
        ew_init(&p, 8); // x, mean, var, gamma, beta, g, dbeta, dgamma
        int gp2 = bn_pre_grad(&p, c);
        int xh = bn_xhat(&p, c->eps);
        int rstd = ew_unary(&p, EW_RSQRT, ew_add(&p, ew_input(&p, 2), ew_const(&p, c->eps)));
        int centred = ew_sub(&p, ew_sub(&p, gp2, ew_mul(&p, ew_input(&p, 6), ew_const(&p, 1 / M))),
                             ew_mul(&p, xh, ew_mul(&p, ew_input(&p, 7), ew_const(&p, 1 / M))));
        ew_output(&p, ew_mul(&p, ew_mul(&p, ew_input(&p, 3), rstd), centred));
        tensor *in2[8] = {x, mean, var, gm, bt, g, dbeta, dgamma};
        gin[0] = op_ew("batch_norm backward", &p, 8, in2);
        if (!gin[0]) return -1;
    }
    if (gamma->requires_grad && !acc_gamma && !(gin[1] = op_reshape(dgamma, 1, &C))) return -1;
    if (beta->requires_grad && !acc_beta && !(gin[2] = op_reshape(dbeta, 1, &C))) return -1;
    return 0;
}

// The batch mean and biased variance of each channel, as (1, C[, 1, 1]), and the running ones
// updated in place: running = momentum * running + (1 - momentum) * batch, variance unbiased.
// Fused: one pass over x in the backend's kernels. Composed: the mean, then the mean of the
// squared deviations, then the running update.
static int bn_statistics(tensor *x, tensor *running_mean, tensor *running_var, const op_bn_opts *o,
                         int64_t count, tensor **mean, tensor **var) {
    int nd = x->ndim, n_axes = nd == 4 ? 3 : 1;
    int64_t C = x->shape[1], bshape[4] = {1, C, 1, 1};
    const backend *be = fused_bn(3, (const tensor *[]){x, running_mean, running_var});
    if (be) {
        *mean = tensor_empty(x->dtype, nd, bshape, tensor_device(x));
        *var = tensor_empty(x->dtype, nd, bshape, tensor_device(x));
        channel_sums_args a = {.mode = SUMS_STATS,
                               .x = x,
                               .out1 = *mean,
                               .out2 = *var,
                               .running_mean = running_mean,
                               .running_var = running_var,
                               .momentum = o->momentum};
        if (!*mean || !*var || be->channel_sums(&a)) {
            err_prefix("batch_norm: ");
            return -1;
        }
        return 0;
    }
    const int *axes = nd == 4 ? (const int[]){0, 2, 3} : (const int[]){0};
    // in a scope of their own: x - mean and its square are as large as x, and only the
    // per-channel statistics are needed after (they outlive it)
    tensor_scope_begin();
    *mean = op_mean(x, n_axes, axes, true);
    *var = op_mean(op_square(op_sub(x, *mean)), n_axes, axes, true);
    tensor_scope_end_keeping(2, (tensor *[]){*mean, *var});
    ew_program p;
    ew_init(&p, 4);
    int m = ew_const(&p, o->momentum), one_m = ew_const(&p, 1 - o->momentum);
    ew_output(&p, ew_add(&p, ew_mul(&p, m, ew_input(&p, 0)), ew_mul(&p, one_m, ew_input(&p, 2))));
    int unbiased = ew_mul(&p, ew_input(&p, 3), ew_const(&p, (double)count / (double)(count - 1)));
    ew_output(&p, ew_add(&p, ew_mul(&p, m, ew_input(&p, 1)), ew_mul(&p, one_m, unbiased)));
    tensor *outs[2] = {running_mean, running_var};
    tensor *ins[4] = {running_mean, running_var, op_reshape(*mean, 1, &C), op_reshape(*var, 1, &C)};
    return *var && !op_ew_into("batch_norm running statistics", &p, 2, outs, 4, ins) ? 0 : -1;
}

tensor *op_batch_norm(tensor *x, tensor *gamma, tensor *beta, tensor *running_mean,
                      tensor *running_var, const op_bn_opts *o) {
    if (!x || !gamma || !beta || !running_mean || !running_var) return NULL;
    char s[96];
    if (x->ndim != 2 && x->ndim != 4) {
        err_set("batch_norm: expects (N, C) or (N, C, H, W), got %s",
                tensor_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t C = x->shape[1];
    tensor *params[4] = {gamma, beta, running_mean, running_var};
    for (int i = 0; i < 4; i++)
        if (params[i]->ndim != 1 || params[i]->shape[0] != C) {
            err_set("batch_norm: parameter %d has shape %s, expected (%lld)", i,
                    tensor_shape_str(params[i], s, sizeof s), (long long)C);
            return NULL;
        }
    // Per-channel tensors broadcast as (1, C) or (1, C, 1, 1).
    int64_t bshape[4] = {1, C, 1, 1};
    int nd = x->ndim;
    tensor *mean, *var;
    // Training: the batch statistics, and the output, are computed without a graph; one node
    // with bn_backward stands for the whole op.
    bool prev = ag_set_grad_enabled(!o->training && ag_grad_enabled());
    if (o->training) {
        int64_t count = tensor_numel(x) / (C ? C : 1);
        if (count < 2) {
            ag_set_grad_enabled(prev);
            err_set("batch_norm: training needs more than one value per channel (got %lld)",
                    (long long)count);
            return NULL;
        }
        if (bn_statistics(x, running_mean, running_var, o, count, &mean, &var)) {
            ag_set_grad_enabled(prev);
            return NULL;
        }
    } else {
        mean = op_reshape(running_mean, nd, bshape);
        var = op_reshape(running_var, nd, bshape);
    }
    // y = act((x - mean) * rsqrt(var + eps) * gamma + beta), one fused pass.
    ew_program p;
    ew_init(&p, 5);
    int y = ew_add(&p, ew_mul(&p, bn_xhat(&p, o->eps), ew_input(&p, 3)), ew_input(&p, 4));
    ew_output(&p, apply_act(&p, y, o->act, o->slope));
    tensor *in[5] = {x, mean, var, op_reshape(gamma, nd, bshape), op_reshape(beta, nd, bshape)};
    tensor *out = op_ew("batch_norm", &p, 5, in);
    ag_set_grad_enabled(prev);
    if (!out || !o->training) return out;
    bn_ctx c = {o->eps, o->slope, o->act};
    tensor *saved[5] = {x, gamma, beta, mean, var};
    return ag_record(out, "batch_norm", bn_backward, 5, saved, &c, sizeof c) ? NULL : out;
}

tensor *op_dropout(tensor *x, double p, bool training, rng *r) {
    if (!x) return NULL;
    if (p < 0 || p >= 1) {
        err_set("dropout: probability %g is not in [0, 1)", p);
        return NULL;
    }
    if (!training || p == 0) return op_reshape(x, x->ndim, x->shape); // identity
    // The mask is drawn inside the kernel (forward, and again in the backward, from the same
    // stream position): nothing random is stored or crosses the bus.
    ew_program prog;
    ew_init(&prog, 1);
    prog.rng_seed = r->seed;
    prog.rng_offset = r->offset;
    prog.rng_stream = r;
    r->offset += (uint64_t)tensor_numel(x);
    int keep = ew_unary(&prog, EW_BERNOULLI, ew_const(&prog, 1 - p));
    ew_output(&prog, ew_mul(&prog, ew_mul(&prog, ew_input(&prog, 0), keep),
                            ew_const(&prog, 1.0 / (1.0 - p))));
    return op_ew("dropout", &prog, 1, &x);
}

// A tensor filled by a program of no inputs whose random nodes draw from r.
static tensor *random_tensor(const char *who, ew_program *prog, rng *r, tensor_dtype dt, int ndim,
                             const int64_t *shape, tensor_device_type dev) {
    tensor *t = tensor_empty(dt, ndim, shape, dev);
    if (!t) return NULL;
    prog->rng_seed = r->seed;
    prog->rng_offset = r->offset;
    prog->rng_stream = r;
    if (op_ew_into(who, prog, 1, &t, 0, NULL)) {
        err_prefix("%s: ", who);
        return NULL;
    }
    r->offset += (uint64_t)tensor_numel(t);
    return t;
}

tensor *op_rand_uniform(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double lo,
                        double hi, tensor_device_type dev) {
    ew_program p;
    ew_init(&p, 0);
    ew_output(&p, ew_add(&p, ew_const(&p, lo),
                         ew_mul(&p, ew_const(&p, hi - lo), ew_random(&p, EW_RAND_U01))));
    return random_tensor("rand_uniform", &p, r, dt, ndim, shape, dev);
}

tensor *op_rand_normal(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double mean,
                       double std, tensor_device_type dev) {
    ew_program p;
    ew_init(&p, 0);
    ew_output(&p, ew_add(&p, ew_const(&p, mean),
                         ew_mul(&p, ew_const(&p, std), ew_random(&p, EW_RAND_NORMAL))));
    return random_tensor("rand_normal", &p, r, dt, ndim, shape, dev);
}

tensor *op_rand_bernoulli(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double prob,
                          tensor_device_type dev) {
    ew_program p;
    ew_init(&p, 0);
    ew_output(&p, ew_unary(&p, EW_BERNOULLI, ew_const(&p, prob)));
    return random_tensor("rand_bernoulli", &p, r, dt, ndim, shape, dev);
}

// ---- instance norm, reflection padding --------------------------------------------------
// Both are made of reductions, elementwise ops, slices and concatenations: their gradients,
// and every backend, come with those ops.
static int check_4d(const char *op, const tensor *x) {
    if (x->ndim == 4) return 0;
    char s[96];
    err_set("%s: expects (N, C, H, W), got %s", op, tensor_shape_str(x, s, sizeof s));
    return -1;
}

tensor *op_instance_norm(tensor *x, double eps) {
    if (!x || check_4d("instance_norm", x)) return NULL;
    tensor *d = op_sub(x, op_mean(x, AXES(2, 3), true));
    tensor *var = op_mean(op_square(d), AXES(2, 3), true);
    return op_mul(d, op_pow_scalar(op_add_scalar(var, eps), -0.5));
}

// x padded on dimension `dim`: the p pixels after the first, mirrored, before it; the p before
// the last, mirrored, after it.
static tensor *reflect_dim(tensor *x, int dim, int p) {
    int64_t n = x->shape[dim];
    tensor *before[8], *after[8];
    for (int i = 0; i < p; i++) {
        before[i] = op_slice(x, dim, p - i, p - i + 1, 1);
        after[i] = op_slice(x, dim, n - 2 - i, n - 1 - i, 1);
    }
    tensor *parts[3] = {p > 1 ? op_concat(p, before, dim) : before[0], x,
                        p > 1 ? op_concat(p, after, dim) : after[0]};
    return op_concat(3, parts, dim);
}

tensor *op_reflection_pad2d(tensor *x, int p) {
    if (!x || check_4d("reflection_pad2d", x)) return NULL;
    if (p < 1 || p > 8 || p >= x->shape[2] || p >= x->shape[3]) {
        err_set("reflection_pad2d: padding %d of a %lldx%lld image (1 to 8, less than each side)",
                p, (long long)x->shape[2], (long long)x->shape[3]);
        return NULL;
    }
    return reflect_dim(reflect_dim(x, 2, p), 3, p);
}
