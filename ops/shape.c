// Differentiable views and layout ops: reshape, permute, slice, expand, contiguous, concat,
// split, detach. Views share storage; their backward maps the gradient back to the input.
#include <string.h>

#include "../tensor/error.h"
#include "backend.h"
#include "ops.h"

static int reshape_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = op_reshape(g, n->inputs[0]->ndim, n->inputs[0]->shape);
    return gin[0] ? 0 : -1;
}

tensor *op_reshape(tensor *x, int ndim, const int64_t *shape_in) {
    if (!x) return NULL;
    if (ndim > TENSOR_MAX_DIMS) {
        err_set("reshape: %d dimensions (at most %d)", ndim, TENSOR_MAX_DIMS);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    if (ndim) memcpy(shape, shape_in, (size_t)ndim * sizeof *shape);
    if (tensor_infer_shape("reshape", tensor_numel(x), ndim, shape)) return NULL;
    tensor *y = tensor_view_reshape(x, ndim, shape);
    if (!y) {
        err_clear();
        tensor *c = tensor_clone(x); // not viewable: copy first
        y = c ? tensor_view_reshape(c, ndim, shape) : NULL;
    }
    if (y && ag_record(y, "reshape", reshape_backward, 1, &x, NULL, 0)) return NULL;
    return y;
}

tensor *op_flatten(tensor *x, int start_dim) {
    if (!x) return NULL;
    if (start_dim < 0 || start_dim >= x->ndim) {
        err_set("flatten: start dimension %d out of range for %d dims", start_dim, x->ndim);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)start_dim * sizeof *shape);
    shape[start_dim] = -1;
    if (tensor_numel(x) == 0) {
        shape[start_dim] = 1;
        for (int d = start_dim; d < x->ndim; d++) shape[start_dim] *= x->shape[d];
    }
    return op_reshape(x, start_dim + 1, shape);
}

static int permute_backward(ag_node *n, tensor *g, tensor **gin) {
    const int *perm = n->ctx;
    int inv[TENSOR_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) inv[perm[d]] = d;
    gin[0] = op_permute(g, inv);
    return gin[0] ? 0 : -1;
}

tensor *op_permute(tensor *x, const int *perm) {
    if (!x) return NULL;
    tensor *y = tensor_view_permute(x, perm);
    if (y && ag_record(y, "permute", permute_backward, 1, &x, perm, (size_t)x->ndim * sizeof *perm))
        return NULL;
    return y;
}

tensor *op_transpose(tensor *x, int d0, int d1) {
    if (!x) return NULL;
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim) {
        err_set("transpose: dimensions out of range for a %d-d tensor", x->ndim);
        return NULL;
    }
    int perm[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    perm[d0] = d1;
    perm[d1] = d0;
    return op_permute(x, perm);
}

typedef struct {
    int dim;
    int64_t start, stop, step;
} slice_ctx;

static int slice_backward(ag_node *n, tensor *g, tensor **gin) {
    const slice_ctx *c = n->ctx;
    tensor *x = n->inputs[0];
    tensor *z = tensor_zeros(g->dtype, x->ndim, x->shape, tensor_device(g));
    tensor *window = tensor_view_slice(z, c->dim, c->start, c->stop, c->step);
    if (!window || tensor_copy_(window, g)) return -1;
    gin[0] = z;
    return 0;
}

tensor *op_slice(tensor *x, int dim, int64_t start, int64_t stop, int64_t step) {
    if (!x) return NULL;
    if (dim < 0) dim += x->ndim;
    tensor *y = tensor_view_slice(x, dim, start, stop, step);
    slice_ctx c = {dim, start, stop, step};
    if (y && ag_record(y, "slice", slice_backward, 1, &x, &c, sizeof c)) return NULL;
    return y;
}

static int expand_backward(ag_node *n, tensor *g, tensor **gin) {
    gin[0] = op_sum_to_shape(g, n->inputs[0]);
    return gin[0] ? 0 : -1;
}

tensor *op_expand(tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    tensor *y = tensor_view_expand(x, ndim, shape);
    if (y && ag_record(y, "expand", expand_backward, 1, &x, NULL, 0)) return NULL;
    return y;
}

static int identity_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)n;
    gin[0] = g;
    return 0;
}

tensor *op_contiguous(tensor *x) {
    tensor *y = tensor_contiguous(x);
    if (y && ag_record(y, "contiguous", identity_backward, 1, &x, NULL, 0)) return NULL;
    return y;
}

tensor *op_detach(tensor *x) {
    if (!x) return NULL;
    return tensor_view(x, x->ndim, x->shape, x->strides, x->offset);
}

typedef struct {
    int dim;
} concat_ctx;

static int concat_backward(ag_node *n, tensor *g, tensor **gin) {
    int dim = ((const concat_ctx *)n->ctx)->dim;
    int64_t at = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        int64_t e = n->inputs[k]->shape[dim];
        if (n->inputs[k]->requires_grad) {
            gin[k] = tensor_view_slice(g, dim, at, at + e, 1);
            if (!gin[k]) return -1;
        }
        at += e;
    }
    return 0;
}

tensor *op_concat(int n, tensor *const *xs, int dim) {
    if (n < 1 || n > AG_MAX_INPUTS) {
        err_set("concat: 1 to %d tensors, not %d", AG_MAX_INPUTS, n);
        return NULL;
    }
    for (int k = 0; k < n; k++)
        if (!xs[k]) return NULL;
    const tensor *x0 = xs[0];
    if (dim < 0) dim += x0->ndim;
    if (dim < 0 || dim >= x0->ndim) {
        err_set("concat: dimension out of range for %d-d tensors", x0->ndim);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[dim] = 0;
    for (int k = 0; k < n; k++) {
        const tensor *x = xs[k];
        bool ok =
            x->ndim == x0->ndim && x->dtype == x0->dtype && tensor_device(x) == tensor_device(x0);
        for (int d = 0; ok && d < x->ndim; d++)
            if (d != dim && x->shape[d] != x0->shape[d]) ok = false;
        if (!ok) {
            char a[96], b[96];
            err_set("concat: tensor %d %s does not match tensor 0 %s outside dimension %d", k,
                    tensor_shape_str(x, a, sizeof a), tensor_shape_str(x0, b, sizeof b), dim);
            return NULL;
        }
        shape[dim] += x->shape[dim];
    }
    tensor *y = tensor_empty(x0->dtype, x0->ndim, shape, tensor_device(x0));
    int64_t at = 0;
    for (int k = 0; y && k < n; k++) {
        tensor *window = tensor_view_slice(y, dim, at, at + xs[k]->shape[dim], 1);
        if (!window || tensor_copy_(window, xs[k])) return NULL;
        at += xs[k]->shape[dim];
    }
    concat_ctx c = {dim};
    if (y && ag_record(y, "concat", concat_backward, n, xs, &c, sizeof c)) return NULL;
    return y;
}

int op_split(tensor *x, int dim, int n, const int64_t *sizes, tensor **outs) {
    if (!x) return -1;
    if (dim < 0) dim += x->ndim;
    if (dim < 0 || dim >= x->ndim) {
        err_set("split: dimension out of range for a %d-d tensor", x->ndim);
        return -1;
    }
    int64_t total = 0;
    for (int k = 0; k < n; k++) total += sizes[k];
    if (total != x->shape[dim]) {
        err_set("split: sizes sum to %lld, dimension %d has %lld", (long long)total, dim,
                (long long)x->shape[dim]);
        return -1;
    }
    int64_t at = 0;
    for (int k = 0; k < n; k++) {
        outs[k] = op_slice(x, dim, at, at + sizes[k], 1);
        if (!outs[k]) return -1;
        at += sizes[k];
    }
    return 0;
}
