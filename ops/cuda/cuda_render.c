// The one renderer: elementwise IR -> CUDA C.
#include "cuda_render.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t n, cap;
} sbuf;

static void add(sbuf *s, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int w = vsnprintf(s->buf ? s->buf + s->n : NULL, s->buf ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if (s->buf && s->n + (size_t)w < s->cap) {
            s->n += (size_t)w;
            return;
        }
        size_t cap = (s->cap + (size_t)w + 1) * 2;
        char *b = realloc(s->buf, cap);
        if (!b) return;
        s->buf = b;
        s->cap = cap;
    }
}

static const char *fn1(ew_opcode op, bool f64) {
    switch (op) {
    case EW_EXP: return f64 ? "exp" : "expf";
    case EW_LOG: return f64 ? "log" : "logf";
    case EW_SQRT: return f64 ? "sqrt" : "sqrtf";
    case EW_RSQRT: return f64 ? "rsqrt" : "rsqrtf";
    case EW_ABS: return f64 ? "fabs" : "fabsf";
    case EW_TANH: return f64 ? "tanh" : "tanhf";
    default: return "";
    }
}

static bool contiguous_over(const tensor *t, const tensor *like) {
    return tensor_same_shape(t, like) && tensor_is_contiguous(t);
}

char *cuda_render_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins,
                              char name[64]) {
    const tensor *o0 = outs[0];
    int n_ops = p->n_outputs + p->n_inputs, nd = o0->ndim;
    bool contig = true;
    tensor_dtype dt[CUDA_EW_MAX_OPERANDS];
    for (int k = 0; k < n_ops; k++) {
        const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
        dt[k] = t->dtype;
        contig = contig && contiguous_over(t, o0);
    }
    bool f64 = o0->dtype == TENSOR_F64;
    const char *T = f64 ? "double" : "float";
    // the name: program hash + specialisation
    uint64_t h = ew_hash(p) ^ (uint64_t)(contig ? 0x9e37 : nd) * 0x100000001b3ull;
    for (int k = 0; k < n_ops; k++) h = (h ^ (uint64_t)dt[k]) * 0x100000001b3ull;
    snprintf(name, 64, "ew_%016llx", (unsigned long long)h);
    char desc[2048];
    ew_describe(p, desc, sizeof desc);
    sbuf s = {0};
    add(&s, "// %s\n// %s, %s\n", desc, contig ? "contiguous" : "strided", f64 ? "float64" : "float32");
    add(&s, "struct ew_args { long long n; int shape[%d]; long long strides[%d][%d]; void *ptr[%d]; };\n",
        TENSOR_MAX_DIMS, CUDA_EW_MAX_OPERANDS, TENSOR_MAX_DIMS, CUDA_EW_MAX_OPERANDS);
    add(&s, "extern \"C\" __global__ void %s(ew_args a) {\n", name);
    add(&s, "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.n;"
            " i += (long long)gridDim.x * blockDim.x) {\n");
    if (contig) {
        for (int k = 0; k < n_ops; k++) add(&s, "    long long o%d = i;\n", k);
    } else {
        for (int k = 0; k < n_ops; k++) add(&s, "    long long o%d = 0;\n", k);
        add(&s, "    long long r = i;\n");
        for (int d = nd - 1; d >= 0; d--) {
            add(&s, "    { long long x = r %% a.shape[%d]; r /= a.shape[%d];", d, d);
            for (int k = 0; k < n_ops; k++) add(&s, " o%d += x * a.strides[%d][%d];", k, k, d);
            add(&s, " }\n");
        }
    }
    bool live[EW_MAX_NODES];
    ew_live_nodes(p, live);
    for (int v = 0; v < p->n_nodes; v++) {
        if (!live[v]) continue;
        const ew_node *e = &p->nodes[v];
        add(&s, "    %s v%d = ", T, v);
        int a = e->a, b = e->b, c = e->c;
        switch ((ew_opcode)e->op) {
        case EW_INPUT: {
            int k = p->n_outputs + e->input;
            add(&s, "(%s)((const %s *)a.ptr[%d])[o%d]", T, dt[k] == TENSOR_F64 ? "double" : "float", k, k);
            break;
        }
        case EW_CONST:
            if (isnan(e->value)) add(&s, "(%s)__longlong_as_double(0x7ff8000000000000ULL)", T);
            else if (isinf(e->value))
                add(&s, "(%s)(%s__longlong_as_double(0x7ff0000000000000ULL))", T, e->value < 0 ? "-" : "");
            else add(&s, "(%s)(%.17g)", T, e->value);
            break;
        case EW_NEG: add(&s, "-v%d", a); break;
        case EW_EXP: case EW_LOG: case EW_SQRT: case EW_RSQRT: case EW_ABS: case EW_TANH:
            add(&s, "%s(v%d)", fn1(e->op, f64), a);
            break;
        case EW_SIGMOID: add(&s, f64 ? "1.0 / (1.0 + exp(-v%d))" : "1.0f / (1.0f + expf(-v%d))", a); break;
        case EW_RELU: add(&s, "v%d > 0 ? v%d : 0", a, a); break;
        case EW_SIGN: add(&s, "(%s)((v%d > 0) - (v%d < 0))", T, a, a); break;
        case EW_ADD: add(&s, "v%d + v%d", a, b); break;
        case EW_SUB: add(&s, "v%d - v%d", a, b); break;
        case EW_MUL: add(&s, "v%d * v%d", a, b); break;
        case EW_DIV: add(&s, "v%d / v%d", a, b); break;
        case EW_MAX: add(&s, "v%d >= v%d ? v%d : v%d", a, b, a, b); break;
        case EW_MIN: add(&s, "v%d <= v%d ? v%d : v%d", a, b, a, b); break;
        case EW_POW: add(&s, "%s(v%d, v%d)", f64 ? "pow" : "powf", a, b); break;
        case EW_LT: add(&s, "(%s)(v%d < v%d)", T, a, b); break;
        case EW_LE: add(&s, "(%s)(v%d <= v%d)", T, a, b); break;
        case EW_GT: add(&s, "(%s)(v%d > v%d)", T, a, b); break;
        case EW_GE: add(&s, "(%s)(v%d >= v%d)", T, a, b); break;
        case EW_EQ: add(&s, "(%s)(v%d == v%d)", T, a, b); break;
        case EW_NE: add(&s, "(%s)(v%d != v%d)", T, a, b); break;
        case EW_WHERE: add(&s, "v%d != 0 ? v%d : v%d", a, b, c); break;
        default: add(&s, "0"); break;
        }
        add(&s, ";\n");
    }
    for (int k = 0; k < p->n_outputs; k++)
        add(&s, "    ((%s *)a.ptr[%d])[o%d] = (%s)v%d;\n", dt[k] == TENSOR_F64 ? "double" : "float", k, k,
            dt[k] == TENSOR_F64 ? "double" : "float", p->outputs[k]);
    add(&s, "  }\n}\n");
    return s.buf;
}
