// Elementwise ops: one generic op over an ew_program; its backward is the symbolic
// derivative of the program, itself one fused elementwise pass per input.
#include <stdio.h>
#include <string.h>

#include "../tensor/error.h"
#include "backend.h"
#include "ops.h"

int op_broadcast_shape(const char *who, int n, tensor *const *ts, int *ndim, int64_t *shape) {
    int nd = 0;
    for (int i = 0; i < n; i++)
        if (ts[i]->ndim > nd) nd = ts[i]->ndim;
    for (int d = 0; d < nd; d++) shape[d] = 1;
    for (int i = 0; i < n; i++) {
        int lead = nd - ts[i]->ndim;
        for (int d = 0; d < ts[i]->ndim; d++) {
            int64_t e = ts[i]->shape[d];
            int64_t *s = &shape[lead + d];
            if (*s == 1)
                *s = e;
            else if (e != 1 && e != *s) {
                char a[96], b[96];
                err_set("%s: shapes %s and %s do not broadcast", who,
                        tensor_shape_str(ts[0], a, sizeof a), tensor_shape_str(ts[i], b, sizeof b));
                return -1;
            }
        }
    }
    *ndim = nd;
    return 0;
}

static int check_operands(const char *who, int n, tensor *const *ts, bool same_dtype) {
    for (int i = 0; i < n; i++)
        if (!ts[i]) return -1;
    for (int i = 1; i < n; i++) {
        if (same_dtype && ts[i]->dtype != ts[0]->dtype) {
            err_set("%s: dtypes differ (%s and %s)", who, tensor_dtype_name(ts[0]->dtype),
                    tensor_dtype_name(ts[i]->dtype));
            return -1;
        }
        if (tensor_device(ts[i]) != tensor_device(ts[0])) {
            err_set("%s: devices differ (%s and %s)", who, tensor_device_name(tensor_device(ts[0])),
                    tensor_device_name(tensor_device(ts[i])));
            return -1;
        }
    }
    return 0;
}

// Runs p over inputs broadcast to their common shape; fills outs[0..p->n_outputs).
static int run_program_multi(const char *who, const ew_program *p, int n, tensor *const *inputs,
                             tensor **outs) {
    if (p->overflow) {
        err_set("%s: expression has more than %d nodes", who, EW_MAX_NODES);
        return -1;
    }
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    if (op_broadcast_shape(who, n, inputs, &ndim, shape)) return -1;
    for (int k = 0; k < p->n_outputs; k++) {
        outs[k] = tensor_empty(inputs[0]->dtype, ndim, shape, tensor_device(inputs[0]));
        if (!outs[k]) return -1;
    }
    const tensor *views[EW_MAX_INPUTS];
    for (int i = 0; i < n; i++) {
        views[i] = tensor_view_expand(inputs[i], ndim, shape);
        if (!views[i]) return -1;
    }
    if (backend_elementwise(who, p, outs, views)) {
        err_prefix("%s: ", who);
        return -1;
    }
    return 0;
}

static tensor *run_program(const char *who, const ew_program *p, int n, tensor *const *inputs) {
    tensor *out;
    return run_program_multi(who, p, n, inputs, &out) ? NULL : out;
}

typedef struct {
    const char *name;
    ew_program program;
} ew_ctx;

// The gradients of every input that needs one, from one pass over the symbolic derivatives
// (the forward subexpressions they share are computed once), then summed over broadcast dims.
static int ew_backward(ag_node *node, tensor *g, tensor **gin) {
    const ew_ctx *c = node->ctx;
    int n = node->n_inputs;
    tensor *args[EW_MAX_INPUTS + 1];
    memcpy(args, node->inputs, (size_t)n * sizeof *args);
    args[n] = g;
    ew_program p = c->program;
    p.n_inputs = n + 1;
    p.n_outputs = 0;
    int which[EW_MAX_OUTPUTS], count = 0;
    for (int k = 0; k < n; k++) {
        if (!node->inputs[k]->requires_grad) continue;
        int d = ew_derivative(&p, c->program.outputs[0], k);
        if (p.nodes[d].op == EW_CONST && p.nodes[d].value == 0) continue; // e.g. comparisons
        if (p.nodes[d].op == EW_CONST && p.nodes[d].value == 1) {
            // g itself (an add's inputs): no pass, and no copy of g kept by the walk
            bool same = tensor_same_shape(g, node->inputs[k]);
            gin[k] = op_sum_to_shape(same ? g : op_contiguous(g), node->inputs[k]);
            if (!gin[k]) return -1;
            continue;
        }
        ew_output(&p, ew_mul(&p, ew_input(&p, n), d));
        which[count++] = k;
    }
    if (count == 0) return 0;
    tensor *full[EW_MAX_OUTPUTS];
    if (run_program_multi(c->name, &p, n + 1, args, full)) return -1;
    for (int j = 0; j < count; j++) {
        gin[which[j]] = op_sum_to_shape(full[j], node->inputs[which[j]]);
        if (!gin[which[j]]) return -1;
    }
    return 0;
}

tensor *op_ew(const char *name, const ew_program *p, int n_inputs, tensor *const *inputs) {
    if (n_inputs < 1 || n_inputs > EW_MAX_INPUTS || p->n_outputs != 1) {
        err_set("%s: an elementwise op takes 1 to %d inputs and has one output", name,
                EW_MAX_INPUTS);
        return NULL;
    }
    if (check_operands(name, n_inputs, inputs, true)) return NULL;
    tensor *out = run_program(name, p, n_inputs, inputs);
    if (!out) return NULL;
    ew_ctx c = {.name = name, .program = *p};
    if (ag_record(out, name, ew_backward, n_inputs, inputs, &c, sizeof c)) return NULL;
    return out;
}

int op_ew_into(const char *who, const ew_program *p, int n_outputs, tensor *const *outs,
               int n_inputs, tensor *const *inputs) {
    if (n_outputs != p->n_outputs || n_outputs < 1 || n_inputs != p->n_inputs || p->overflow) {
        err_set("ew_into: program has %d outputs and %d inputs; %d and %d given", p->n_outputs,
                p->n_inputs, n_outputs, n_inputs);
        return -1;
    }
    // the outputs share a dtype (the program computes in it); inputs are converted as loaded
    if (check_operands("ew_into", n_outputs, outs, true)) return -1;
    if (n_inputs && check_operands("ew_into", n_inputs, inputs, false)) return -1;
    const tensor *views[EW_MAX_INPUTS];
    tensor_scope_begin();
    int rc = 0;
    for (int k = 1; k < n_outputs && !rc; k++)
        if (!tensor_same_shape(outs[k], outs[0])) {
            err_set("ew_into: outputs differ in shape");
            rc = -1;
        }
    for (int i = 0; i < n_inputs && !rc; i++) {
        if (tensor_device(inputs[i]) != tensor_device(outs[0])) {
            err_set("ew_into: input %d is on %s, output on %s", i,
                    tensor_device_name(tensor_device(inputs[i])),
                    tensor_device_name(tensor_device(outs[0])));
            rc = -1;
            break;
        }
        views[i] = tensor_view_expand(inputs[i], outs[0]->ndim, outs[0]->shape);
        if (!views[i]) rc = -1;
    }
    if (!rc) rc = backend_elementwise(who, p, outs, views);
    tensor_scope_end();
    return rc;
}

tensor *op_sum_to_shape(tensor *g, const tensor *like) {
    if (!g) return NULL;
    if (tensor_same_shape(g, like)) return g;
    int axes[TENSOR_MAX_DIMS], n = 0, lead = g->ndim - like->ndim;
    for (int d = 0; d < g->ndim; d++)
        if (d < lead || (like->shape[d - lead] == 1 && g->shape[d] != 1)) axes[n++] = d;
    tensor *s = n ? op_sum(g, n, axes, true) : g;
    return op_reshape(s, like->ndim, like->shape);
}

// ---- the named elementwise ops -----------------------------------------------------------
static tensor *unary(const char *name, ew_opcode op, tensor *x) {
    ew_program p;
    ew_init(&p, 1);
    ew_output(&p, ew_unary(&p, op, ew_input(&p, 0)));
    return op_ew(name, &p, 1, &x);
}

static tensor *binary(const char *name, ew_opcode op, tensor *a, tensor *b) {
    ew_program p;
    ew_init(&p, 2);
    ew_output(&p, ew_binary(&p, op, ew_input(&p, 0), ew_input(&p, 1)));
    tensor *in[2] = {a, b};
    return op_ew(name, &p, 2, in);
}

tensor *op_neg(tensor *x) { return unary("neg", EW_NEG, x); }
tensor *op_exp(tensor *x) { return unary("exp", EW_EXP, x); }
tensor *op_log(tensor *x) { return unary("log", EW_LOG, x); }
tensor *op_sqrt(tensor *x) { return unary("sqrt", EW_SQRT, x); }
tensor *op_abs(tensor *x) { return unary("abs", EW_ABS, x); }
tensor *op_tanh(tensor *x) { return unary("tanh", EW_TANH, x); }
tensor *op_sigmoid(tensor *x) { return unary("sigmoid", EW_SIGMOID, x); }
tensor *op_relu(tensor *x) { return unary("relu", EW_RELU, x); }
tensor *op_add(tensor *a, tensor *b) { return binary("add", EW_ADD, a, b); }
tensor *op_sub(tensor *a, tensor *b) { return binary("sub", EW_SUB, a, b); }
tensor *op_mul(tensor *a, tensor *b) { return binary("mul", EW_MUL, a, b); }
tensor *op_div(tensor *a, tensor *b) { return binary("div", EW_DIV, a, b); }
tensor *op_maximum(tensor *a, tensor *b) { return binary("maximum", EW_MAX, a, b); }
tensor *op_minimum(tensor *a, tensor *b) { return binary("minimum", EW_MIN, a, b); }

tensor *op_compare(ew_opcode cmp, tensor *a, tensor *b) {
    if (cmp < EW_LT || cmp > EW_NE) {
        err_set("compare: %s is not a comparison", ew_opcode_name(cmp));
        return NULL;
    }
    return binary(ew_opcode_name(cmp), cmp, a, b);
}

tensor *op_where(tensor *cond, tensor *a, tensor *b) {
    ew_program p;
    ew_init(&p, 3);
    ew_output(&p, ew_where(&p, ew_input(&p, 0), ew_input(&p, 1), ew_input(&p, 2)));
    tensor *in[3] = {cond, a, b};
    return op_ew("where", &p, 3, in);
}

// x (op) constant, as one-input programs so the constant is baked into the kernel.
static tensor *with_scalar(const char *name, ew_opcode op, tensor *x, double s) {
    ew_program p;
    ew_init(&p, 1);
    ew_output(&p, ew_binary(&p, op, ew_input(&p, 0), ew_const(&p, s)));
    return op_ew(name, &p, 1, &x);
}

tensor *op_add_scalar(tensor *x, double s) { return with_scalar("add_scalar", EW_ADD, x, s); }
tensor *op_mul_scalar(tensor *x, double s) { return with_scalar("mul_scalar", EW_MUL, x, s); }
tensor *op_pow_scalar(tensor *x, double e) { return with_scalar("pow_scalar", EW_POW, x, e); }

tensor *op_square(tensor *x) {
    ew_program p;
    ew_init(&p, 1);
    int a = ew_input(&p, 0);
    ew_output(&p, ew_mul(&p, a, a));
    return op_ew("square", &p, 1, &x);
}

tensor *op_leaky_relu(tensor *x, double slope) {
    ew_program p;
    ew_init(&p, 1);
    ew_output(&p, ew_leaky_relu(&p, ew_input(&p, 0), slope));
    return op_ew("leaky_relu", &p, 1, &x);
}

tensor *op_clamp(tensor *x, double lo, double hi) {
    ew_program p;
    ew_init(&p, 1);
    int a = ew_input(&p, 0);
    ew_output(&p,
              ew_binary(&p, EW_MIN, ew_binary(&p, EW_MAX, a, ew_const(&p, lo)), ew_const(&p, hi)));
    return op_ew("clamp", &p, 1, &x);
}
