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

cuda_ew_layout cuda_ew_plan(const ew_program *p, tensor *const *outs, const tensor *const *ins,
                            cuda_ew_args *a) {
    const tensor *o0 = outs[0];
    int n_ops = p->n_outputs + p->n_inputs, nd = 0;
    int64_t shape[TENSOR_MAX_DIMS], st[CUDA_EW_MAX_OPERANDS][TENSOR_MAX_DIMS];
    for (int d = 0; d < o0->ndim; d++) {
        if (o0->shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int k = 0; merge && k < n_ops; k++) {
            const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
            if (st[k][nd - 1] != t->strides[d] * o0->shape[d]) merge = false;
        }
        for (int k = 0; k < n_ops; k++) {
            const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
            st[k][merge ? nd - 1 : nd] = t->strides[d];
        }
        if (merge)
            shape[nd - 1] *= o0->shape[d];
        else
            shape[nd++] = o0->shape[d];
    }
    cuda_ew_layout L = {.nd = nd, .contig = nd <= 1, .idx32 = true};
    for (int k = 0; k < n_ops && nd == 1; k++)
        if (st[k][0] != 1) L.contig = false;
    for (int k = 0; k < n_ops; k++) {
        int64_t reach = 0;
        for (int d = 0; d < nd; d++)
            reach += (shape[d] - 1) * (st[k][d] < 0 ? -st[k][d] : st[k][d]);
        if (reach >= (1ll << 31)) L.idx32 = false;
    }
    if (tensor_numel(o0) >= (1ll << 31)) L.idx32 = false;
    if (a) {
        a->n = tensor_numel(o0);
        for (int d = 0; d < nd; d++) {
            a->shape[d] = (int)shape[d];
            for (int k = 0; k < n_ops; k++) a->strides[k][d] = st[k][d];
        }
        for (int k = 0; k < n_ops; k++) {
            const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
            a->ptr[k] = (char *)t->storage->data + t->offset * (int64_t)tensor_dtype_size(t->dtype);
        }
    }
    return L;
}

uint64_t cuda_ew_key(const ew_program *p, const cuda_ew_layout *L, tensor *const *outs,
                     const tensor *const *ins) {
    uint64_t h = ew_hash(p) ^
                 (uint64_t)(L->contig ? 0x9e37 : L->nd + (L->idx32 ? 0x40 : 0)) * 0x100000001b3ull;
    for (int k = 0; k < p->n_outputs + p->n_inputs; k++) {
        const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
        h = (h ^ (uint64_t)t->dtype) * 0x100000001b3ull;
    }
    return h;
}

// Philox4x32-10 and the conversions of tensor/rng.c, for kernels that draw random numbers.
static const char philox_source[] =
    "__device__ __forceinline__ void ew_philox(unsigned long long seed, unsigned long long i, "
    "unsigned w[4]) {\n"
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
    "  return ((double)((((unsigned long long)hi << 32) | lo) >> 11) + 0.5) * "
    "1.1102230246251565e-16;\n"
    "}\n";

// ew_<op as an identifier>_<the program's key>: one kernel whatever op renders it.
static void kernel_name(const char *op, uint64_t key, char name[64]) {
    char id[32]; // the op's name as an identifier
    int len = 0;
    for (const char *c = op; *c && len < (int)sizeof id - 1; c++)
        id[len++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
                        ? *c
                        : '_';
    id[len] = 0;
    snprintf(name, 64, "ew_%s_%016llx", id, (unsigned long long)key);
}

// Each operand's offset o<k> for the flat index i: i itself when all are contiguous, else
// from i's coordinates (the innermost dimension last), in 32- or 64-bit arithmetic.
static void render_offsets(sbuf *s, const cuda_ew_layout *L, int n_ops) {
    int nd = L->nd;
    bool contig = L->contig;
    const char *I = L->idx32 ? "int" : "long long", *U = L->idx32 ? "unsigned" : "long long";
    if (contig) {
        for (int k = 0; k < n_ops; k++) add(s, "    long long o%d = i;\n", k);
    } else {
        for (int k = 0; k < n_ops; k++) add(s, "    %s o%d = 0;\n", I, k);
        add(s, "    %s r = (%s)i;\n", U, U);
        for (int d = nd - 1; d >= 0; d--) {
            if (d > 0)
                add(s, "    { %s x = r %% (%s)a.shape[%d]; r /= (%s)a.shape[%d];", U, U, d, U, d);
            else
                add(s, "    { %s x = r;", U);
            for (int k = 0; k < n_ops; k++)
                add(s, " o%d += (%s)x * (%s)a.strides[%d][%d];", k, I, I, k, d);
            add(s, " }\n");
        }
    }
}

// Node v's value: `T vV = <expression>;` (dt: each operand's dtype; slot: each constant's
// argument slot, or -1 where it is written into the source).
static void render_node(sbuf *s, const ew_program *p, int v, bool f64, const tensor_dtype *dt,
                        const int *slot) {
    const char *T = f64 ? "double" : "float";
    const ew_node *e = &p->nodes[v];
    add(s, "    %s v%d = ", T, v);
    int a = e->a, b = e->b, c = e->c;
    switch ((ew_opcode)e->op) {
        case EW_INPUT: {
            int k = p->n_outputs + e->input;
            add(s, "(%s)((const %s *)a.ptr[%d])[o%d]", T, dt[k] == TENSOR_F64 ? "double" : "float",
                k, k);
            break;
        }
        case EW_CONST:
            if (slot[v] >= 0)
                add(s, "(%s)a.scalar[%d]", T, slot[v]);
            else if (isnan(e->value))
                add(s, "(%s)__longlong_as_double(0x7ff8000000000000ULL)", T);
            else if (isinf(e->value))
                add(s, "(%s)(%s__longlong_as_double(0x7ff0000000000000ULL))", T,
                    e->value < 0 ? "-" : "");
            else
                add(s, "(%s)(%.17g)", T, e->value);
            break;
        case EW_NEG: add(s, "-v%d", a); break;
        case EW_RAND_U01: add(s, "(%s)ew_u01(w[0], w[1])", T); break;
        case EW_RAND_NORMAL:
            add(s,
                "(%s)(sqrt(-2.0 * log(ew_u01(w[0], w[1]))) * cos(6.283185307179586 * "
                "ew_u01(w[2], w[3])))",
                T);
            break;
        case EW_BERNOULLI: // compared in double, as on the CPU, so masks are bit-identical
            if (p->nodes[a].op == EW_CONST && slot[a] >= 0)
                add(s, "(%s)(ew_u01(w[0], w[1]) < a.scalar[%d])", T, slot[a]);
            else
                add(s, "(%s)(ew_u01(w[0], w[1]) < (double)v%d)", T, a);
            break;
        case EW_EXP:
        case EW_LOG:
        case EW_SQRT:
        case EW_RSQRT:
        case EW_ABS:
        case EW_TANH: add(s, "%s(v%d)", fn1(e->op, f64), a); break;
        case EW_SIGMOID:
            add(s, f64 ? "1.0 / (1.0 + exp(-v%d))" : "1.0f / (1.0f + expf(-v%d))", a);
            break;
        case EW_RELU: add(s, "v%d > 0 ? v%d : 0", a, a); break;
        case EW_SIGN: add(s, "(%s)((v%d > 0) - (v%d < 0))", T, a, a); break;
        case EW_ADD: add(s, "v%d + v%d", a, b); break;
        case EW_SUB: add(s, "v%d - v%d", a, b); break;
        case EW_MUL: add(s, "v%d * v%d", a, b); break;
        case EW_DIV: add(s, "v%d / v%d", a, b); break;
        case EW_MAX: add(s, "v%d >= v%d ? v%d : v%d", a, b, a, b); break;
        case EW_MIN: add(s, "v%d <= v%d ? v%d : v%d", a, b, a, b); break;
        case EW_POW: add(s, "%s(v%d, v%d)", f64 ? "pow" : "powf", a, b); break;
        case EW_LT: add(s, "(%s)(v%d < v%d)", T, a, b); break;
        case EW_LE: add(s, "(%s)(v%d <= v%d)", T, a, b); break;
        case EW_GT: add(s, "(%s)(v%d > v%d)", T, a, b); break;
        case EW_GE: add(s, "(%s)(v%d >= v%d)", T, a, b); break;
        case EW_EQ: add(s, "(%s)(v%d == v%d)", T, a, b); break;
        case EW_NE: add(s, "(%s)(v%d != v%d)", T, a, b); break;
        case EW_WHERE: add(s, "v%d != 0 ? v%d : v%d", a, b, c); break;
        default: add(s, "0"); break;
    }
    add(s, ";\n");
}

char *cuda_render_elementwise(const ew_program *p, const cuda_ew_layout *L, tensor *const *outs,
                              const tensor *const *ins, const char *op, char name[64]) {
    const tensor *o0 = outs[0];
    int n_ops = p->n_outputs + p->n_inputs, nd = L->nd;
    bool contig = L->contig, draws = ew_uses_rng(p);
    tensor_dtype dt[CUDA_EW_MAX_OPERANDS];
    for (int k = 0; k < n_ops; k++)
        dt[k] = (k < p->n_outputs ? outs[k] : ins[k - p->n_outputs])->dtype;
    bool f64 = o0->dtype == TENSOR_F64;
    kernel_name(op, cuda_ew_key(p, L, outs, ins), name);
    double scalars[EW_MAX_NODES];
    int slot[EW_MAX_NODES];
    ew_scalar_args(p, scalars, slot);
    char desc[2048];
    ew_describe(p, desc, sizeof desc);
    sbuf s = {0};
    add(&s,
        "// %s\n// %s, rank %d, %s indices, %s; constants other than 0, +-1, NaN, +-inf are "
        "arguments (a.scalar)\n",
        desc, contig ? "contiguous" : "strided", nd, L->idx32 ? "32-bit" : "64-bit",
        f64 ? "float64" : "float32");
    add(&s,
        "struct ew_args { long long n; int shape[%d]; long long strides[%d][%d]; void *ptr[%d];\n"
        "  unsigned long long rng_seed, rng_offset; const unsigned long long *rng_delta;\n"
        "  double scalar[%d]; };\n",
        TENSOR_MAX_DIMS, CUDA_EW_MAX_OPERANDS, TENSOR_MAX_DIMS, CUDA_EW_MAX_OPERANDS, EW_MAX_NODES);
    if (draws) add(&s, "%s", philox_source);
    add(&s, "extern \"C\" __global__ void %s(const ew_args a) {\n", name);
    if (draws) add(&s, "  const unsigned long long rng_base = a.rng_offset + *a.rng_delta;\n");
    add(&s, "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.n;"
            " i += (long long)gridDim.x * blockDim.x) {\n");
    if (draws)
        add(&s, "    unsigned w[4]; ew_philox(a.rng_seed, rng_base + (unsigned long long)i, w);\n");
    render_offsets(&s, L, n_ops);
    bool live[EW_MAX_NODES];
    ew_live_nodes(p, live);
    for (int v = 0; v < p->n_nodes; v++)
        if (live[v]) render_node(&s, p, v, f64, dt, slot);
    for (int k = 0; k < p->n_outputs; k++)
        add(&s, "    ((%s *)a.ptr[%d])[o%d] = (%s)v%d;\n", dt[k] == TENSOR_F64 ? "double" : "float",
            k, k, dt[k] == TENSOR_F64 ? "double" : "float", p->outputs[k]);
    add(&s, "  }\n}\n");
    return s.buf;
}
