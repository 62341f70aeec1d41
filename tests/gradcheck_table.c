#include "gradcheck_table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"

// ---- the functions under test ---------------------------------------------------------------
#define UNARY(NAME, CALL)                                                                          \
    static tensor *f_##NAME(tensor **in, const void *arg) {                                        \
        (void)arg;                                                                                 \
        return CALL;                                                                               \
    }
UNARY(neg, op_neg(in[0]))
UNARY(exp, op_exp(in[0]))
UNARY(log, op_log(in[0]))
UNARY(sqrt, op_sqrt(in[0]))
UNARY(abs, op_abs(in[0]))
UNARY(tanh, op_tanh(in[0]))
UNARY(sigmoid, op_sigmoid(in[0]))
UNARY(relu, op_relu(in[0]))
UNARY(leaky_relu, op_leaky_relu(in[0], 0.2))
UNARY(square, op_square(in[0]))
UNARY(pow, op_pow_scalar(in[0], 1.5))
UNARY(clamp, op_clamp(in[0], -0.5, 0.5))
UNARY(add_scalar, op_add_scalar(in[0], 0.75))
UNARY(mul_scalar, op_mul_scalar(in[0], -1.25))
UNARY(add, op_add(in[0], in[1]))
UNARY(sub, op_sub(in[0], in[1]))
UNARY(mul, op_mul(in[0], in[1]))
UNARY(div, op_div(in[0], in[1]))
UNARY(maximum, op_maximum(in[0], in[1]))
UNARY(minimum, op_minimum(in[0], in[1]))
UNARY(lt, op_mul(op_compare(EW_LT, in[0], in[1]), in[0]))
UNARY(where, op_where(in[2], in[0], in[1]))
UNARY(matmul, op_matmul(in[0], in[1]))
UNARY(sum_all, op_sum(in[0], ALL_AXES, false))
UNARY(sum_axes, op_sum(in[0], AXES(0, 2), true))
UNARY(mean_axis, op_mean(in[0], AXES(1), false))
UNARY(max_axis, op_max(in[0], AXES(1), false))
UNARY(max_all, op_max(in[0], ALL_AXES, false))
UNARY(bce, op_bce(in[0], in[1]))
UNARY(bce_logits, op_bce_logits(op_mul_scalar(in[0], 4), in[1]))
UNARY(mse, op_mse(in[0], in[1]))
UNARY(reshape, op_reshape(in[0], SHAPE(4, -1)))
UNARY(flatten, op_flatten(in[0], 1))
UNARY(permute, op_permute(in[0], (const int[]){2, 0, 1}))
UNARY(transpose, op_transpose(in[0], 0, 1))
UNARY(slice, op_slice(in[0], 1, 1, 6, 2))
UNARY(expand, op_expand(in[0], SHAPE(3, 4, 5)))
UNARY(contiguous, op_contiguous(in[0]))
UNARY(concat, op_concat(3, in, 1))
UNARY(fused_chain, op_tanh(op_mul(op_leaky_relu(op_add(in[0], in[1]), 0.2), in[0])))
UNARY(instance_norm, op_instance_norm(in[0], 1e-5))
UNARY(reflection_pad1, op_reflection_pad2d(in[0], 1))
UNARY(reflection_pad3, op_reflection_pad2d(in[0], 3))

static tensor *f_split(tensor **in, const void *arg) {
    (void)arg;
    tensor *parts[3];
    if (op_split(in[0], 0, 3, (const int64_t[]){1, 2, 3}, parts)) return NULL;
    // weight the parts differently so a mix-up shows
    return op_concat(3, (tensor *[]){op_mul_scalar(parts[2], 3), parts[0], op_square(parts[1])}, 0);
}

static tensor *f_conv2d(tensor **in, const void *arg) {
    return op_conv2d(in[0], in[1], in[2], arg);
}
static tensor *f_conv_transpose2d(tensor **in, const void *arg) {
    return op_conv_transpose2d(in[0], in[1], in[2], arg);
}

static tensor *f_batch_norm(tensor **in, const void *arg) {
    const op_bn_opts *o = arg;
    int64_t C = in[0]->shape[1];
    tensor *rm = tensor_zeros(in[0]->dtype, 1, &C, tensor_device(in[0]));
    tensor *rv = tensor_full(in[0]->dtype, 1, &C, 1.5, tensor_device(in[0]));
    return op_batch_norm(in[0], in[1], in[2], rm, rv, o);
}

static tensor *f_dropout(tensor **in, const void *arg) {
    (void)arg;
    rng r;
    rng_init(&r, 1234); // the same mask at every evaluation
    return op_dropout(in[0], 0.3, true, &r);
}

// ---- the table --------------------------------------------------------------------------------
static gradcheck_case cases[256];
static int n_cases;

static gc_input in_shape(int ndim, const int64_t *shape, gc_input_kind kind) {
    gc_input g = {.ndim = ndim, .kind = kind};
    if (ndim) memcpy(g.shape, shape, (size_t)ndim * sizeof *shape);
    return g;
}
#define IN(kind, ...) in_shape(SHAPE(__VA_ARGS__), kind)

static gradcheck_case *add_case(const char *name, tensor *(*fn)(tensor **, const void *), int n,
                                const gc_input *ins) {
    gradcheck_case *c = &cases[n_cases++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->fn = fn;
    c->n_inputs = n;
    memcpy(c->inputs, ins, (size_t)n * sizeof *ins);
    return c;
}

#define CASE(name, fn, ...)                                                                        \
    add_case(name, fn, (int)(sizeof((gc_input[]){__VA_ARGS__}) / sizeof(gc_input)),                \
             (gc_input[]){__VA_ARGS__})

static gc_input transposed(gc_input g) {
    g.transposed = true;
    return g;
}
static gc_input nograd(gc_input g) {
    g.no_grad = true;
    return g;
}

// Elementwise ops (unary, binary with broadcasting, fused chains) and the normalisations and
// paddings built from them.
static void elementwise_cases(void) {
    CASE("neg", f_neg, IN(INPUT_UNIFORM, 3, 4));
    CASE("exp", f_exp, IN(INPUT_UNIFORM, 3, 4));
    CASE("log", f_log, IN(INPUT_POSITIVE, 3, 4));
    CASE("sqrt", f_sqrt, IN(INPUT_POSITIVE, 3, 4));
    CASE("abs", f_abs, IN(INPUT_UNIFORM, 3, 4));
    CASE("tanh", f_tanh, transposed(IN(INPUT_UNIFORM, 3, 4)));
    CASE("sigmoid", f_sigmoid, IN(INPUT_UNIFORM, 3, 4));
    CASE("relu", f_relu, IN(INPUT_UNIFORM, 3, 4));
    CASE("leaky_relu", f_leaky_relu, transposed(IN(INPUT_UNIFORM, 2, 3, 4)));
    CASE("square", f_square, IN(INPUT_UNIFORM, 5));
    CASE("pow_scalar", f_pow, IN(INPUT_POSITIVE, 3, 4));
    CASE("clamp", f_clamp, IN(INPUT_UNIFORM, 4, 5));
    CASE("add_scalar", f_add_scalar, IN(INPUT_UNIFORM, 3, 4));
    CASE("mul_scalar", f_mul_scalar, IN(INPUT_UNIFORM, 3, 4));
    CASE("add", f_add, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 3, 4));
    CASE("add broadcast (3,4)+(4)", f_add, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 4));
    CASE("sub broadcast (3,1)-(1,4)", f_sub, IN(INPUT_UNIFORM, 3, 1), IN(INPUT_UNIFORM, 1, 4));
    CASE("mul non-contiguous", f_mul, transposed(IN(INPUT_UNIFORM, 4, 3)), IN(INPUT_UNIFORM, 4, 3));
    CASE("mul broadcast (2,1,4)*(3,1)", f_mul, IN(INPUT_UNIFORM, 2, 1, 4), IN(INPUT_UNIFORM, 3, 1));
    CASE("div", f_div, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_POSITIVE, 3, 4));
    CASE("div broadcast scalar-like (1)", f_div, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_POSITIVE, 1));
    CASE("maximum", f_maximum, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 3, 4));
    CASE("minimum broadcast", f_minimum, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 4));
    CASE("lt (x * (a < b))", f_lt, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 3, 4));
    CASE("where", f_where, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 3, 4),
         nograd(IN(INPUT_BINARY, 3, 4)));
    CASE("fused chain tanh(lrelu(a+b)*a)", f_fused_chain, IN(INPUT_UNIFORM, 3, 4),
         IN(INPUT_UNIFORM, 4));
    CASE("instance_norm", f_instance_norm, IN(INPUT_UNIFORM, 2, 3, 4, 5));
    CASE("reflection_pad2d 1", f_reflection_pad1, IN(INPUT_UNIFORM, 2, 2, 3, 4));
    CASE("reflection_pad2d 3", f_reflection_pad3, IN(INPUT_UNIFORM, 1, 2, 5, 4));
}

// Reductions, matmuls and the view and shape ops.
static void reduction_and_shape_cases(void) {
    CASE("sum all", f_sum_all, transposed(IN(INPUT_UNIFORM, 3, 4)));
    CASE("sum axes (0,2) keepdim", f_sum_axes, IN(INPUT_UNIFORM, 2, 3, 4));
    CASE("mean axis 1", f_mean_axis, IN(INPUT_UNIFORM, 2, 3, 4));
    CASE("max axis 1", f_max_axis, IN(INPUT_UNIFORM, 2, 5, 3));
    CASE("max all", f_max_all, IN(INPUT_UNIFORM, 4, 5));
    CASE("matmul (5,4)@(4,3)", f_matmul, IN(INPUT_UNIFORM, 5, 4), IN(INPUT_UNIFORM, 4, 3));
    CASE("matmul transposed views", f_matmul, transposed(IN(INPUT_UNIFORM, 5, 4)),
         transposed(IN(INPUT_UNIFORM, 4, 3)));
    CASE("matmul batched (2,3,4)@(2,4,5)", f_matmul, IN(INPUT_UNIFORM, 2, 3, 4),
         IN(INPUT_UNIFORM, 2, 4, 5));
    CASE("matmul batched (2,3,4)@(4,5)", f_matmul, IN(INPUT_UNIFORM, 2, 3, 4),
         IN(INPUT_UNIFORM, 4, 5));
    CASE("reshape", f_reshape, transposed(IN(INPUT_UNIFORM, 2, 3, 4)));
    CASE("flatten", f_flatten, IN(INPUT_UNIFORM, 2, 3, 2, 2));
    CASE("permute", f_permute, IN(INPUT_UNIFORM, 2, 3, 4));
    CASE("transpose", f_transpose, IN(INPUT_UNIFORM, 3, 4));
    CASE("slice step 2", f_slice, IN(INPUT_UNIFORM, 3, 7));
    CASE("expand", f_expand, IN(INPUT_UNIFORM, 4, 1));
    CASE("contiguous", f_contiguous, transposed(IN(INPUT_UNIFORM, 3, 4)));
    CASE("concat", f_concat, IN(INPUT_UNIFORM, 2, 1, 3), IN(INPUT_UNIFORM, 2, 2, 3),
         transposed(IN(INPUT_UNIFORM, 2, 3, 3)));
    CASE("split", f_split, IN(INPUT_UNIFORM, 6, 2));
}

// Dropout and the losses.
static void loss_cases(void) {
    CASE("dropout p=0.3", f_dropout, IN(INPUT_UNIFORM, 4, 6));
    CASE("bce", f_bce, IN(INPUT_PROBABILITY, 4, 3), nograd(IN(INPUT_BINARY, 4, 3)));
    CASE("bce soft targets", f_bce, IN(INPUT_PROBABILITY, 6), IN(INPUT_PROBABILITY, 6));
    CASE("bce with logits (x4: saturating)", f_bce_logits, IN(INPUT_UNIFORM, 4, 3),
         nograd(IN(INPUT_BINARY, 4, 3)));
    CASE("bce with logits, soft targets", f_bce_logits, IN(INPUT_UNIFORM, 6),
         IN(INPUT_PROBABILITY, 6));
    CASE("mse", f_mse, IN(INPUT_UNIFORM, 3, 4), IN(INPUT_UNIFORM, 3, 4));
}

// Batch norm: training (4-D, 2-D, each fused activation) and inference.
static void batch_norm_cases(void) {
    op_bn_opts bn = {.training = true, .momentum = 0.8, .eps = 1e-3};
    gradcheck_case *c;
    c = CASE("batch_norm train (N,C,H,W)", f_batch_norm, IN(INPUT_UNIFORM, 3, 2, 3, 2),
             IN(INPUT_POSITIVE, 2), IN(INPUT_UNIFORM, 2));
    c->arg.bn = bn;
    c = CASE("batch_norm train (N,C)", f_batch_norm, transposed(IN(INPUT_UNIFORM, 5, 3)),
             IN(INPUT_POSITIVE, 3), IN(INPUT_UNIFORM, 3));
    c->arg.bn = bn;
    c = CASE("batch_norm train + leaky_relu fused", f_batch_norm, IN(INPUT_UNIFORM, 4, 2, 2, 2),
             IN(INPUT_POSITIVE, 2), IN(INPUT_UNIFORM, 2));
    c->arg.bn = bn;
    c->arg.bn.act = OP_ACT_LEAKY_RELU;
    c->arg.bn.slope = 0.2;
    static const struct {
        const char *name;
        op_activation act;
    } fused[3] = {{"batch_norm train + relu fused", OP_ACT_RELU},
                  {"batch_norm train + tanh fused", OP_ACT_TANH},
                  {"batch_norm train + sigmoid fused (N,C)", OP_ACT_SIGMOID}};
    for (int k = 0; k < 3; k++) {
        c = k < 2 ? CASE(fused[k].name, f_batch_norm, IN(INPUT_UNIFORM, 3, 2, 2, 3),
                         IN(INPUT_POSITIVE, 2), IN(INPUT_UNIFORM, 2))
                  : CASE(fused[k].name, f_batch_norm, IN(INPUT_UNIFORM, 6, 2),
                         IN(INPUT_POSITIVE, 2), IN(INPUT_UNIFORM, 2));
        c->arg.bn = bn;
        c->arg.bn.act = fused[k].act;
    }
    c = CASE("batch_norm inference", f_batch_norm, IN(INPUT_UNIFORM, 3, 2, 2, 2),
             IN(INPUT_POSITIVE, 2), IN(INPUT_UNIFORM, 2));
    c->arg.bn = bn;
    c->arg.bn.training = false;
}

// Convolutions: stride 1 and 2, kernels 1/3/5, 'same' and 'valid', bias or not, odd/even sizes,
// asymmetric padding, output padding, a non-contiguous input.
static void conv_cases(void) {
    gradcheck_case *c;
    for (int stride = 1; stride <= 2; stride++)
        for (int k = 1; k <= 5; k += 2)
            for (int same = 0; same <= 1; same++)
                for (int bias = 0; bias <= 1; bias++) {
                    int64_t hw = (k + stride + bias + same) % 2 ? 7 : 6; // odd and even sizes
                    char name[80];
                    snprintf(name, sizeof name, "conv2d k%d s%d %s %s %lldx%lld", k, stride,
                             same ? "same" : "valid", bias ? "bias" : "nobias", (long long)hw,
                             (long long)hw - 1);
                    c = bias ? CASE(name, f_conv2d, IN(INPUT_UNIFORM, 2, 3, hw, hw - 1),
                                    IN(INPUT_UNIFORM, 4, 3, k, k), IN(INPUT_UNIFORM, 4))
                             : CASE(name, f_conv2d, IN(INPUT_UNIFORM, 2, 3, hw, hw - 1),
                                    IN(INPUT_UNIFORM, 4, 3, k, k));
                    c->arg.conv =
                        same ? op_conv_same(hw, hw - 1, k, k, stride) : op_conv_valid(stride);

                    int64_t th = (k + stride + bias) % 2 ? 3 : 4;
                    snprintf(name, sizeof name, "conv_transpose2d k%d s%d %s %s %lldx%lld", k,
                             stride, same ? "same" : "valid", bias ? "bias" : "nobias",
                             (long long)th, (long long)th + 1);
                    c = bias ? CASE(name, f_conv_transpose2d, IN(INPUT_UNIFORM, 2, 3, th, th + 1),
                                    IN(INPUT_UNIFORM, 3, 2, k, k), IN(INPUT_UNIFORM, 2))
                             : CASE(name, f_conv_transpose2d, IN(INPUT_UNIFORM, 2, 3, th, th + 1),
                                    IN(INPUT_UNIFORM, 3, 2, k, k));
                    c->arg.conv = same ? op_conv_transpose_same(th, th + 1, k, k, stride)
                                       : op_conv_valid(stride);
                }
    c = CASE("conv2d asymmetric pad (0,2,1,0) s2", f_conv2d, IN(INPUT_UNIFORM, 1, 2, 5, 6),
             IN(INPUT_UNIFORM, 3, 2, 3, 3));
    c->arg.conv = (op_conv_opts){
        .stride_h = 2, .stride_w = 2, .pad_top = 0, .pad_bottom = 2, .pad_left = 1, .pad_right = 0};
    c = CASE("conv_transpose2d output_padding 1", f_conv_transpose2d, IN(INPUT_UNIFORM, 2, 2, 3, 3),
             IN(INPUT_UNIFORM, 2, 3, 3, 3));
    c->arg.conv = (op_conv_opts){.stride_h = 2,
                                 .stride_w = 2,
                                 .pad_top = 1,
                                 .pad_bottom = 1,
                                 .pad_left = 1,
                                 .pad_right = 1,
                                 .output_pad_h = 1,
                                 .output_pad_w = 1};
    c = CASE("conv2d non-contiguous input", f_conv2d, transposed(IN(INPUT_UNIFORM, 1, 2, 4, 5)),
             IN(INPUT_UNIFORM, 2, 2, 3, 3));
    c->arg.conv = op_conv_same(4, 5, 3, 3, 1);
}

// The table, in the order the tools print it (nvrtc-check --quick takes its first 20 cases).
static void build_table(void) {
    elementwise_cases();
    reduction_and_shape_cases();
    loss_cases();
    batch_norm_cases();
    conv_cases();
}

const gradcheck_case *gradcheck_cases(int *n) {
    if (!n_cases) build_table();
    *n = n_cases;
    return cases;
}

// ---- the check ----------------------------------------------------------------------------------
static tensor *make_input(const gc_input *g, rng *r, tensor_device_type dev) {
    double lo = -1, hi = 1;
    if (g->kind == INPUT_POSITIVE) lo = 0.5, hi = 2.0;
    if (g->kind == INPUT_PROBABILITY) lo = 0.05, hi = 0.95;
    if (g->kind == INPUT_BINARY)
        return tensor_rand_bernoulli(r, TENSOR_F64, g->ndim, g->shape, 0.5, dev);
    return tensor_rand_uniform(r, TENSOR_F64, g->ndim, g->shape, lo, hi, dev);
}

// The permutation that swaps the last two dims.
static tensor *swap_last_two(tensor *t) {
    int perm[TENSOR_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) perm[d] = d;
    perm[t->ndim - 1] = t->ndim - 2;
    perm[t->ndim - 2] = t->ndim - 1;
    return tensor_view_permute(t, perm);
}

// L = sum(f(x) * r) for a fixed random r.
static double objective(const gradcheck_case *c, tensor **in, tensor *proj) {
    tensor *y = c->fn(in, &c->arg);
    if (!y) return NAN;
    tensor *l = op_sum(op_mul(y, proj), ALL_AXES, false);
    return tensor_item(l);
}

gradcheck_result gradcheck_run(const gradcheck_case *c, tensor_device_type dev, uint64_t seed) {
    gradcheck_result res = {.passed = false};
    tensor_scope_begin();
    rng r;
    rng_init(&r, seed);
    tensor *in[4] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        gc_input g = c->inputs[i];
        bool tr = g.transposed && g.ndim >= 2;
        g.transposed = false;
        if (tr) { // draw the swapped shape, view it back: a non-contiguous leaf
            int64_t t = g.shape[g.ndim - 1];
            g.shape[g.ndim - 1] = g.shape[g.ndim - 2];
            g.shape[g.ndim - 2] = t;
        }
        in[i] = make_input(&g, &r, dev);
        if (in[i] && tr) in[i] = swap_last_two(in[i]);
        if (!in[i]) {
            snprintf(res.message, sizeof res.message, "making input %d: %s", i, err_message());
            goto done;
        }
        in[i]->requires_grad = !c->inputs[i].no_grad;
    }
    // forward + backward
    {
        tensor *probe = c->fn(in, &c->arg);
        if (!probe) {
            snprintf(res.message, sizeof res.message, "forward: %s", err_message());
            goto done;
        }
        tensor *proj = tensor_rand_uniform(&r, TENSOR_F64, probe->ndim, probe->shape, -1, 1, dev);
        tensor *l = op_sum(op_mul(probe, proj), ALL_AXES, false);
        if (!l || ag_backward(l, NULL)) {
            snprintf(res.message, sizeof res.message, "backward: %s", err_message());
            goto done;
        }
        bool prev = ag_set_grad_enabled(false);
        res.worst_excess = -INFINITY;
        for (int i = 0; i < c->n_inputs; i++) {
            if (c->inputs[i].no_grad) continue;
            tensor *x = in[i];
            int64_t n = tensor_numel(x);
            double *analytic = calloc((size_t)n, sizeof *analytic);
            if (x->grad) tensor_to_doubles(x->grad, analytic);
            int64_t idx[TENSOR_MAX_DIMS] = {0};
            for (int64_t e = 0; e < n; e++) {
                // element e's location in storage
                int64_t off = x->offset, rem = e;
                for (int d = x->ndim - 1; d >= 0; d--) {
                    idx[d] = rem % x->shape[d];
                    rem /= x->shape[d];
                    off += idx[d] * x->strides[d];
                }
                tensor *cell = tensor_view(x, 0, NULL, NULL, off);
                double v = tensor_item(cell);
                tensor_scope_begin();
                tensor_fill_(cell, v + GRADCHECK_EPS);
                double lp = objective(c, in, proj);
                tensor_fill_(cell, v - GRADCHECK_EPS);
                double lm = objective(c, in, proj);
                tensor_fill_(cell, v);
                tensor_scope_end();
                double numeric = (lp - lm) / (2 * GRADCHECK_EPS);
                double diff = fabs(analytic[e] - numeric);
                double excess = diff - (GRADCHECK_ATOL + GRADCHECK_RTOL * fabs(numeric));
                if (!(diff <= res.worst_abs)) res.worst_abs = diff; // NaN propagates
                if (!(excess <= res.worst_excess)) {
                    res.worst_excess = excess;
                    if (!(excess <= 0) && !res.message[0])
                        snprintf(res.message, sizeof res.message,
                                 "input %d element %lld: analytic %.9g, numeric %.9g", i,
                                 (long long)e, analytic[e], numeric);
                }
                res.checked++;
            }
            free(analytic);
        }
        ag_set_grad_enabled(prev);
    }
    res.passed = res.checked > 0 && res.worst_excess <= 0;
    if (res.checked == 0) snprintf(res.message, sizeof res.message, "no element was checked");
done:
    tensor_scope_end();
    return res;
}
