// conv2d and conv_transpose2d. The backend supplies three primitives of one convolution
// (forward, input gradient, weight gradient); the transposed convolution is the same three
// with the roles of forward and input gradient exchanged.
#include "../tensor/error.h"
#include "backend.h"
#include "ops.h"

op_conv_opts op_conv_valid(int stride) {
    return (op_conv_opts){.stride_h = stride, .stride_w = stride};
}

static void same_pad(int64_t in, int k, int stride, int *lo, int *hi) {
    int64_t out = (in + stride - 1) / stride;
    int64_t total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *lo = (int)(total / 2);
    *hi = (int)(total - total / 2);
}

op_conv_opts op_conv_same(int64_t in_h, int64_t in_w, int k_h, int k_w, int stride) {
    op_conv_opts o = {.stride_h = stride, .stride_w = stride};
    same_pad(in_h, k_h, stride, &o.pad_top, &o.pad_bottom);
    same_pad(in_w, k_w, stride, &o.pad_left, &o.pad_right);
    return o;
}

op_conv_opts op_conv_transpose_same(int64_t in_h, int64_t in_w, int k_h, int k_w, int stride) {
    // The padding of the forward convolution that maps in*stride back to in.
    op_conv_opts o = op_conv_same(in_h * stride, in_w * stride, k_h, k_w, stride);
    o.output_pad_h = (int)(in_h * stride - ((in_h - 1) * stride - o.pad_top - o.pad_bottom + k_h));
    o.output_pad_w = (int)(in_w * stride - ((in_w - 1) * stride - o.pad_left - o.pad_right + k_w));
    return o;
}

static int check_conv(const char *who, tensor *x, tensor *w, tensor *bias, const op_conv_opts *o,
                      int64_t w_in_channels) {
    char sx[96], sw[96];
    if (x->ndim != 4 || w->ndim != 4) {
        err_set("%s: expects x (N, C, H, W) and a 4-d weight; got %s and %s", who,
                tensor_shape_str(x, sx, sizeof sx), tensor_shape_str(w, sw, sizeof sw));
        return -1;
    }
    if (x->shape[1] != w_in_channels) {
        err_set("%s: x has %lld channels but the weight %s expects %lld", who,
                (long long)x->shape[1], tensor_shape_str(w, sw, sizeof sw),
                (long long)w_in_channels);
        return -1;
    }
    if (o->stride_h < 1 || o->stride_w < 1 || o->pad_top < 0 || o->pad_bottom < 0 ||
        o->pad_left < 0 || o->pad_right < 0 || o->output_pad_h < 0 || o->output_pad_w < 0) {
        err_set("%s: strides must be >= 1 and paddings >= 0", who);
        return -1;
    }
    if (x->dtype != w->dtype || tensor_device(x) != tensor_device(w) ||
        (bias && (bias->dtype != x->dtype || tensor_device(bias) != tensor_device(x)))) {
        err_set("%s: operands differ in dtype or device", who);
        return -1;
    }
    return 0;
}

static int64_t conv_flops(const conv_geometry *g) {
    return 2 * g->N * g->K * g->C * g->R * g->S * g->OH * g->OW;
}

// The bias is added by the pass that writes the output (the backend's epilogue): a convolution
// with a bias is one tensor, one pass and one node (its backward sums g for the bias), not a
// convolution and a broadcast add, which kept a second tensor of the output's size for the
// graph and a third in its backward. The bias: one value per output channel, contiguous.
static int check_bias(tensor *bias, int64_t channels, tensor **contiguous) {
    *contiguous = NULL;
    if (!bias) return 0;
    if (bias->ndim != 1 || bias->shape[0] != channels) {
        err_set("conv: bias must have shape (%lld)", (long long)channels);
        return -1;
    }
    *contiguous = tensor_contiguous(bias);
    return *contiguous ? 0 : -1;
}

// d bias = g summed over the batch and the pixels: where the backend has per-channel sums
// (CUDA), one pass that also adds it to the bias's leaf gradient; else a reduction
static int bias_gradient(tensor *bias, tensor *g, tensor **gbias) {
    g = op_contiguous(g);
    if (!g) return -1;
    const backend *be = tensor_backend(g);
    if (be->channel_sums) {
        tensor *acc = ag_leaf_grad(bias);
        tensor *s = tensor_empty(g->dtype, 1, bias->shape, tensor_device(g));
        channel_sums_args a = {.mode = SUMS_PLAIN, .x = g, .out1 = s, .acc1 = acc};
        if (!s || be->channel_sums(&a)) {
            err_prefix("bias gradient: ");
            return -1;
        }
        if (!acc) *gbias = s;
        return 0;
    }
    tensor *s = g->ndim == 4 ? op_sum(g, 3, (const int[]){0, 2, 3}, true)
                             : op_sum(g, 1, (const int[]){0}, true);
    *gbias = s ? op_reshape(s, 1, bias->shape) : NULL;
    return *gbias ? 0 : -1;
}

static int bias_grad(ag_node *n, tensor *g, tensor **gin) {
    if (n->n_inputs < 3 || !n->inputs[2]->requires_grad) return 0;
    return bias_gradient(n->inputs[2], g, &gin[2]);
}

// ---- a bias per channel (axis 1), for dense layers ------------------------------------------
static int add_bias_backward(ag_node *n, tensor *g, tensor **gin) {
    if (n->inputs[0]->requires_grad) gin[0] = g;
    return n->inputs[1]->requires_grad ? bias_gradient(n->inputs[1], g, &gin[1]) : 0;
}

tensor *op_add_bias(tensor *y, tensor *bias) {
    if (!y || !bias) return NULL;
    if ((y->ndim != 2 && y->ndim != 4) || bias->ndim != 1 || bias->shape[0] != y->shape[1] ||
        y->dtype != bias->dtype || tensor_device(y) != tensor_device(bias)) {
        char sy[96], sb[96];
        err_set("add_bias: expects y (N, C) or (N, C, H, W) and a bias (C) of its dtype and "
                "device; got %s and %s",
                tensor_shape_str(y, sy, sizeof sy), tensor_shape_str(bias, sb, sizeof sb));
        return NULL;
    }
    bool prev = ag_set_grad_enabled(false);
    ew_program p;
    ew_init(&p, 2);
    ew_output(&p, ew_add(&p, ew_input(&p, 0), ew_input(&p, 1)));
    int64_t bshape[4] = {1, y->shape[1], 1, 1};
    tensor *out = op_ew("add_bias", &p, 2, (tensor *[]){y, op_reshape(bias, y->ndim, bshape)});
    ag_set_grad_enabled(prev);
    tensor *in[2] = {y, bias};
    if (out && ag_record(out, "add_bias", add_bias_backward, 2, in, NULL, 0)) return NULL;
    return out;
}

// ---- conv2d -------------------------------------------------------------------------------
// The two gradients of a convolution (transposed: of a transposed one, whose geometry maps its
// output back to its input): d input = backward_input(g, w) (transposed: forward(g, w)),
// d weight = backward_weight(x, g) (transposed: backward_weight(g, x)).
static int conv_grads(ag_node *n, tensor *g, tensor **gin, bool transposed) {
    const conv_geometry *geo = n->ctx;
    tensor *x = n->inputs[0], *w = n->inputs[1];
    const backend *be = tensor_backend(x);
    g = op_contiguous(g);
    if (!g) return -1;
    op_flops_add(conv_flops(geo) * (x->requires_grad + w->requires_grad));
    if (x->requires_grad) {
        gin[0] = tensor_empty(x->dtype, x->ndim, x->shape, tensor_device(x));
        tensor *wc = op_contiguous(w);
        if (!gin[0] || !wc ||
            (transposed ? be->conv2d_forward(geo, g, wc, NULL, gin[0])
                        : be->conv2d_backward_input(geo, g, wc, NULL, gin[0])))
            return -1;
    }
    if (w->requires_grad) {
        // into the leaf's gradient buffer directly where the backend can add (CUDA: in the pass
        // that sums split K's partials), else a fresh tensor that the walk accumulates
        tensor *acc = be->conv2d_backward_weight_add ? ag_leaf_grad(w) : NULL;
        tensor *dw =
            acc ? acc : (gin[1] = tensor_empty(w->dtype, w->ndim, w->shape, tensor_device(w)));
        tensor *xc = op_contiguous(x);
        if (!dw || !xc ||
            (acc ? be->conv2d_backward_weight_add
                 : be->conv2d_backward_weight)(geo, transposed ? g : xc, transposed ? xc : g, dw))
            return -1;
    }
    return 0;
}

static int conv2d_backward(ag_node *n, tensor *g, tensor **gin) {
    return conv_grads(n, g, gin, false) || bias_grad(n, g, gin) ? -1 : 0;
}

tensor *op_conv2d(tensor *x, tensor *w, tensor *bias, const op_conv_opts *o) {
    if (!x || !w) return NULL;
    if (check_conv("conv2d", x, w, bias, o, w->ndim == 4 ? w->shape[1] : -1)) return NULL;
    conv_geometry g = {
        .N = x->shape[0],
        .C = x->shape[1],
        .H = x->shape[2],
        .W = x->shape[3],
        .K = w->shape[0],
        .R = w->shape[2],
        .S = w->shape[3],
        .stride_h = o->stride_h,
        .stride_w = o->stride_w,
        .pad_top = o->pad_top,
        .pad_left = o->pad_left,
    };
    g.OH = (g.H + o->pad_top + o->pad_bottom - g.R) / o->stride_h + 1;
    g.OW = (g.W + o->pad_left + o->pad_right - g.S) / o->stride_w + 1;
    if (g.H + o->pad_top + o->pad_bottom < g.R || g.W + o->pad_left + o->pad_right < g.S) {
        err_set("conv2d: kernel %lldx%lld is larger than the padded input %lldx%lld",
                (long long)g.R, (long long)g.S, (long long)(g.H + o->pad_top + o->pad_bottom),
                (long long)(g.W + o->pad_left + o->pad_right));
        return NULL;
    }
    tensor *xc = tensor_contiguous(x), *wc = tensor_contiguous(w), *bc;
    if (check_bias(bias, g.K, &bc)) {
        err_prefix("conv2d: ");
        return NULL;
    }
    tensor *y = tensor_empty(x->dtype, SHAPE(g.N, g.K, g.OH, g.OW), tensor_device(x));
    if (!xc || !wc || !y) return NULL;
    op_flops_add(conv_flops(&g));
    if (tensor_backend(x)->conv2d_forward(&g, xc, wc, bc, y)) {
        err_prefix("conv2d: ");
        return NULL;
    }
    tensor *in[3] = {x, w, bias};
    if (ag_record(y, "conv2d", conv2d_backward, bias ? 3 : 2, in, &g, sizeof g)) return NULL;
    return y;
}

// ---- conv_transpose2d ---------------------------------------------------------------------
// In the geometry the "convolution" maps the transposed conv's output (N, K, OH, OW) back to
// its input (N, C, H, W): geometry.C is the output channels, geometry.K the input channels.
static int conv_transpose2d_backward(ag_node *n, tensor *g, tensor **gin) {
    return conv_grads(n, g, gin, true) || bias_grad(n, g, gin) ? -1 : 0;
}

tensor *op_conv_transpose2d(tensor *x, tensor *w, tensor *bias, const op_conv_opts *o) {
    if (!x || !w) return NULL;
    if (check_conv("conv_transpose2d", x, w, bias, o, w->ndim == 4 ? w->shape[0] : -1)) return NULL;
    int64_t R = w->shape[2], S = w->shape[3];
    int64_t OH = (x->shape[2] - 1) * o->stride_h - o->pad_top - o->pad_bottom + R + o->output_pad_h;
    int64_t OW = (x->shape[3] - 1) * o->stride_w - o->pad_left - o->pad_right + S + o->output_pad_w;
    if (OH <= 0 || OW <= 0 || o->output_pad_h >= o->stride_h || o->output_pad_w >= o->stride_w) {
        err_set("conv_transpose2d: output size %lldx%lld is empty, or output padding is not "
                "smaller than the stride",
                (long long)OH, (long long)OW);
        return NULL;
    }
    conv_geometry g = {
        .N = x->shape[0],
        .C = w->shape[1],
        .H = OH,
        .W = OW,
        .K = w->shape[0],
        .R = R,
        .S = S,
        .OH = x->shape[2],
        .OW = x->shape[3],
        .stride_h = o->stride_h,
        .stride_w = o->stride_w,
        .pad_top = o->pad_top,
        .pad_left = o->pad_left,
    };
    tensor *xc = tensor_contiguous(x), *wc = tensor_contiguous(w), *bc;
    if (check_bias(bias, g.C, &bc)) {
        err_prefix("conv_transpose2d: ");
        return NULL;
    }
    tensor *y = tensor_empty(x->dtype, SHAPE(g.N, g.C, OH, OW), tensor_device(x));
    if (!xc || !wc || !y) return NULL;
    op_flops_add(conv_flops(&g));
    if (tensor_backend(x)->conv2d_backward_input(&g, xc, wc, bc, y)) {
        err_prefix("conv_transpose2d: ");
        return NULL;
    }
    tensor *in[3] = {x, w, bias};
    if (ag_record(y, "conv_transpose2d", conv_transpose2d_backward, bias ? 3 : 2, in, &g, sizeof g))
        return NULL;
    return y;
}
