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

static bool all_contiguous(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    for (int k = 0; k < p->n_outputs + p->n_inputs; k++)
        if (!contiguous_over(k < p->n_outputs ? outs[k] : ins[k - p->n_outputs], outs[0])) return false;
    return true;
}

uint64_t cuda_ew_key(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    bool contig = all_contiguous(p, outs, ins);
    uint64_t h = ew_hash(p) ^ (uint64_t)(contig ? 0x9e37 : outs[0]->ndim) * 0x100000001b3ull;
    for (int k = 0; k < p->n_outputs + p->n_inputs; k++) {
        const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
        h = (h ^ (uint64_t)t->dtype) * 0x100000001b3ull;
    }
    return h;
}

// Philox4x32-10 and the conversions of tensor/rng.c, for kernels that draw random numbers.
static const char philox_source[] =
    "__device__ __forceinline__ void ew_philox(unsigned long long seed, unsigned long long i, unsigned w[4]) {\n"
    "  unsigned c0 = (unsigned)i, c1 = (unsigned)(i >> 32), c2 = 0, c3 = 0;\n"
    "  unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);\n"
    "  #pragma unroll\n"
    "  for (int r = 0; r < 10; r++) {\n"
    "    unsigned hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;\n"
    "    unsigned hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;\n"
    "    unsigned n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;\n"
    "    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;\n"
    "    k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;\n"
    "  }\n"
    "  w[0] = c0; w[1] = c1; w[2] = c2; w[3] = c3;\n"
    "}\n"
    "__device__ __forceinline__ double ew_u01(unsigned hi, unsigned lo) {\n"
    "  return ((double)((((unsigned long long)hi << 32) | lo) >> 11) + 0.5) * 1.1102230246251565e-16;\n"
    "}\n";

char *cuda_render_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins,
                              char name[64]) {
    const tensor *o0 = outs[0];
    int n_ops = p->n_outputs + p->n_inputs, nd = o0->ndim;
    bool contig = all_contiguous(p, outs, ins), rng = ew_uses_rng(p);
    tensor_dtype dt[CUDA_EW_MAX_OPERANDS];
    for (int k = 0; k < n_ops; k++) dt[k] = (k < p->n_outputs ? outs[k] : ins[k - p->n_outputs])->dtype;
    bool f64 = o0->dtype == TENSOR_F64;
    const char *T = f64 ? "double" : "float";
    snprintf(name, 64, "ew_%016llx", (unsigned long long)cuda_ew_key(p, outs, ins));
    double scalars[EW_MAX_NODES];
    int slot[EW_MAX_NODES];
    ew_scalar_args(p, scalars, slot);
    char desc[2048];
    ew_describe(p, desc, sizeof desc);
    sbuf s = {0};
    add(&s, "// %s\n// %s, %s; constants other than 0, +-1, NaN, +-inf are arguments (a.scalar)\n", desc,
        contig ? "contiguous" : "strided", f64 ? "float64" : "float32");
    add(&s, "struct ew_args { long long n; int shape[%d]; long long strides[%d][%d]; void *ptr[%d];\n"
            "  unsigned long long rng_seed, rng_offset; double scalar[%d]; };\n",
        TENSOR_MAX_DIMS, CUDA_EW_MAX_OPERANDS, TENSOR_MAX_DIMS, CUDA_EW_MAX_OPERANDS, EW_MAX_NODES);
    if (rng) add(&s, "%s", philox_source);
    add(&s, "extern \"C\" __global__ void %s(const ew_args a) {\n", name);
    add(&s, "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.n;"
            " i += (long long)gridDim.x * blockDim.x) {\n");
    if (rng) add(&s, "    unsigned w[4]; ew_philox(a.rng_seed, a.rng_offset + (unsigned long long)i, w);\n");
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
            if (slot[v] >= 0) add(&s, "(%s)a.scalar[%d]", T, slot[v]);
            else if (isnan(e->value)) add(&s, "(%s)__longlong_as_double(0x7ff8000000000000ULL)", T);
            else if (isinf(e->value))
                add(&s, "(%s)(%s__longlong_as_double(0x7ff0000000000000ULL))", T, e->value < 0 ? "-" : "");
            else add(&s, "(%s)(%.17g)", T, e->value);
            break;
        case EW_NEG: add(&s, "-v%d", a); break;
        case EW_RAND_U01: add(&s, "(%s)ew_u01(w[0], w[1])", T); break;
        case EW_RAND_NORMAL:
            add(&s, "(%s)(sqrt(-2.0 * log(ew_u01(w[0], w[1]))) * cos(6.283185307179586 * ew_u01(w[2], w[3])))", T);
            break;
        case EW_BERNOULLI: // compared in double, as on the CPU, so masks are bit-identical
            if (p->nodes[a].op == EW_CONST && slot[a] >= 0) add(&s, "(%s)(ew_u01(w[0], w[1]) < a.scalar[%d])", T, slot[a]);
            else add(&s, "(%s)(ew_u01(w[0], w[1]) < (double)v%d)", T, a);
            break;
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
