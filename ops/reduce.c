// Reductions over chosen axes: sum, mean, max.
#include <string.h>

#include "../tensor/error.h"
#include "backend.h"
#include "ops.h"

typedef struct {
    int n_axes;
    int axes[TENSOR_MAX_DIMS];
    bool keepdim;
} reduce_ctx;

// Normalises axes into a mask; n_axes == 0 means all.
static int axes_mask(const char *who, const tensor *x, int n_axes, const int *axes,
                     bool mask[TENSOR_MAX_DIMS]) {
    memset(mask, 0, TENSOR_MAX_DIMS * sizeof(bool));
    if (n_axes == 0) {
        for (int d = 0; d < x->ndim; d++) mask[d] = true;
        return 0;
    }
    for (int i = 0; i < n_axes; i++) {
        int a = axes[i] < 0 ? axes[i] + x->ndim : axes[i];
        if (a < 0 || a >= x->ndim || mask[a]) {
            err_set("%s: axis %d is out of range or repeated for a %d-d tensor", who, axes[i],
                    x->ndim);
            return -1;
        }
        mask[a] = true;
    }
    return 0;
}

// Runs the backend reduction; returns the keepdim-shaped result.
static tensor *reduce_keepdim(const char *who, reduce_kind kind, tensor *x,
                              const bool mask[TENSOR_MAX_DIMS]) {
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = mask[d] ? 1 : x->shape[d];
    for (int d = 0; d < x->ndim; d++)
        if (kind == REDUCE_MAX && mask[d] && x->shape[d] == 0) {
            err_set("%s: max over an empty axis", who);
            return NULL;
        }
    tensor *out = tensor_empty(x->dtype, x->ndim, shape, tensor_device(x));
    if (!out) return NULL;
    if (tensor_backend(x)->reduce(kind, x, out)) {
        err_prefix("%s: ", who);
        return NULL;
    }
    return out;
}

static tensor *squeeze(tensor *t, const bool mask[TENSOR_MAX_DIMS], bool keepdim) {
    if (!t || keepdim) return t;
    int64_t shape[TENSOR_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < t->ndim; d++)
        if (!mask[d]) shape[n++] = t->shape[d];
    return op_reshape(t, n, shape);
}

// The gradient arrives in the reduced shape; give it back its unit axes.
static tensor *unsqueeze_like(tensor *g, const tensor *x, const reduce_ctx *c) {
    bool mask[TENSOR_MAX_DIMS];
    axes_mask("reduce", x, c->n_axes, c->axes, mask);
    int64_t shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = mask[d] ? 1 : x->shape[d];
    return op_reshape(g, x->ndim, shape);
}

static int sum_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *x = n->inputs[0];
    gin[0] = op_expand(unsqueeze_like(g, x, n->ctx), x->ndim, x->shape);
    return gin[0] ? 0 : -1;
}

// A reduction recorded with its backward: the forward without recording, then one node.
static tensor *reduce_op(const char *who, reduce_kind kind, ag_backward_fn backward, tensor *x,
                         int n_axes, const int *axes, bool keepdim) {
    if (!x) return NULL;
    bool mask[TENSOR_MAX_DIMS];
    if (axes_mask(who, x, n_axes, axes, mask)) return NULL;
    tensor *out;
    {
        bool prev = ag_set_grad_enabled(false);
        out = squeeze(reduce_keepdim(who, kind, x, mask), mask, keepdim);
        ag_set_grad_enabled(prev);
    }
    reduce_ctx c = {.n_axes = n_axes, .keepdim = keepdim};
    if (n_axes) memcpy(c.axes, axes, (size_t)n_axes * sizeof *axes);
    if (out && ag_record(out, who, backward, 1, &x, &c, sizeof c)) return NULL;
    return out;
}

tensor *op_sum(tensor *x, int n_axes, const int *axes, bool keepdim) {
    return reduce_op("sum", REDUCE_SUM, sum_backward, x, n_axes, axes, keepdim);
}

tensor *op_mean(tensor *x, int n_axes, const int *axes, bool keepdim) {
    if (!x) return NULL;
    bool mask[TENSOR_MAX_DIMS];
    if (axes_mask("mean", x, n_axes, axes, mask)) return NULL;
    int64_t count = 1;
    for (int d = 0; d < x->ndim; d++)
        if (mask[d]) count *= x->shape[d];
    return op_mul_scalar(op_sum(x, n_axes, axes, keepdim), count ? 1.0 / (double)count : 0.0);
}

// d max / dx: the gradient goes to the elements equal to the max, shared among ties.
static int max_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *x = n->inputs[0];
    const reduce_ctx *c = n->ctx;
    bool mask[TENSOR_MAX_DIMS];
    axes_mask("max", x, c->n_axes, c->axes, mask);
    tensor *m = reduce_keepdim("max", REDUCE_MAX, x, mask);
    tensor *is_max = op_compare(EW_EQ, x, m);
    tensor *count = op_sum(is_max, c->n_axes, c->axes, true);
    gin[0] = op_div(op_mul(is_max, unsqueeze_like(g, x, c)), count);
    return gin[0] ? 0 : -1;
}

tensor *op_max(tensor *x, int n_axes, const int *axes, bool keepdim) {
    return reduce_op("max", REDUCE_MAX, max_backward, x, n_axes, axes, keepdim);
}
