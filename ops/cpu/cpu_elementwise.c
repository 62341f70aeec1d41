// The elementwise IR interpreter: the index space is cut into chunks; for each chunk every
// live node is computed over the whole chunk (a tight loop the compiler vectorises), in
// double precision, then the outputs are stored in their dtype.
#include <math.h>
#include <string.h>

#include "../../tensor/error.h"
#include "../../tensor/rng.h"
#include "cpu.h"

#define CHUNK 128
#define MAX_OPERANDS (EW_MAX_INPUTS + EW_MAX_OUTPUTS)

typedef struct {
    char *base;
    tensor_dtype dtype;
    int64_t strides[TENSOR_MAX_DIMS];
} operand;

static _Thread_local double values[EW_MAX_NODES][CHUNK];

static inline __attribute__((always_inline)) void eval_node(const ew_node *e, int n, int self) {
    double *r = values[self];
    const double *a = values[e->a], *b = values[e->b], *c = values[e->c];
    switch ((ew_opcode)e->op) {
    case EW_NEG: for (int i = 0; i < n; i++) r[i] = -a[i]; break;
    case EW_EXP: for (int i = 0; i < n; i++) r[i] = exp(a[i]); break;
    case EW_LOG: for (int i = 0; i < n; i++) r[i] = log(a[i]); break;
    case EW_SQRT: for (int i = 0; i < n; i++) r[i] = sqrt(a[i]); break;
    case EW_RSQRT: for (int i = 0; i < n; i++) r[i] = 1.0 / sqrt(a[i]); break;
    case EW_ABS: for (int i = 0; i < n; i++) r[i] = fabs(a[i]); break;
    case EW_TANH: for (int i = 0; i < n; i++) r[i] = tanh(a[i]); break;
    case EW_SIGMOID: for (int i = 0; i < n; i++) r[i] = 1.0 / (1.0 + exp(-a[i])); break;
    case EW_RELU: for (int i = 0; i < n; i++) r[i] = a[i] > 0 ? a[i] : 0; break;
    case EW_SIGN: for (int i = 0; i < n; i++) r[i] = (a[i] > 0) - (a[i] < 0); break;
    case EW_ADD: for (int i = 0; i < n; i++) r[i] = a[i] + b[i]; break;
    case EW_SUB: for (int i = 0; i < n; i++) r[i] = a[i] - b[i]; break;
    case EW_MUL: for (int i = 0; i < n; i++) r[i] = a[i] * b[i]; break;
    case EW_DIV: for (int i = 0; i < n; i++) r[i] = a[i] / b[i]; break;
    case EW_MAX: for (int i = 0; i < n; i++) r[i] = a[i] >= b[i] ? a[i] : b[i]; break;
    case EW_MIN: for (int i = 0; i < n; i++) r[i] = a[i] <= b[i] ? a[i] : b[i]; break;
    case EW_POW: for (int i = 0; i < n; i++) r[i] = pow(a[i], b[i]); break;
    case EW_LT: for (int i = 0; i < n; i++) r[i] = a[i] < b[i]; break;
    case EW_LE: for (int i = 0; i < n; i++) r[i] = a[i] <= b[i]; break;
    case EW_GT: for (int i = 0; i < n; i++) r[i] = a[i] > b[i]; break;
    case EW_GE: for (int i = 0; i < n; i++) r[i] = a[i] >= b[i]; break;
    case EW_EQ: for (int i = 0; i < n; i++) r[i] = a[i] == b[i]; break;
    case EW_NE: for (int i = 0; i < n; i++) r[i] = a[i] != b[i]; break;
    case EW_WHERE: for (int i = 0; i < n; i++) r[i] = a[i] != 0 ? b[i] : c[i]; break;
    default: break;
    }
}

// One work item: every live node over n consecutive elements of a row, then the stores.
// Cloned for AVX-512 and AVX2 (picked at run time) so that the node loops use wide vectors.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static void eval_item(const ew_program *p, const bool *live, const operand *ops, int last, const int64_t *off, int n,
                      uint64_t first) {
    const rng stream = {p->rng_seed, p->rng_offset};
    for (int v = 0; v < p->n_nodes; v++) {
        if (!live[v]) continue;
        const ew_node *e = &p->nodes[v];
        double *r = values[v];
        if (e->op == EW_RAND_U01 || e->op == EW_RAND_NORMAL || e->op == EW_BERNOULLI) {
            const double *a = values[e->a];
            for (int i = 0; i < n; i++) {
                uint32_t w[4];
                rng_block(&stream, first + (uint64_t)i, 0, w);
                r[i] = e->op == EW_RAND_NORMAL ? rng_box_muller(w)
                       : e->op == EW_RAND_U01  ? rng_u01(w[0], w[1])
                                               : rng_u01(w[0], w[1]) < a[i];
            }
        } else if (e->op == EW_INPUT) {
            int k = p->n_outputs + e->input;
            int64_t st = ops[k].strides[last];
            if (ops[k].dtype == TENSOR_F64) {
                const double *src = (const double *)ops[k].base + off[k];
                if (st == 1) memcpy(r, src, (size_t)n * sizeof *r);
                else if (st == 0) for (int i = 0; i < n; i++) r[i] = src[0];
                else for (int i = 0; i < n; i++) r[i] = src[i * st];
            } else {
                const float *src = (const float *)ops[k].base + off[k];
                if (st == 1) for (int i = 0; i < n; i++) r[i] = src[i];
                else if (st == 0) for (int i = 0; i < n; i++) r[i] = src[0];
                else for (int i = 0; i < n; i++) r[i] = src[i * st];
            }
        } else if (e->op == EW_CONST) {
            for (int i = 0; i < n; i++) r[i] = e->value;
        } else {
            eval_node(e, n, v);
        }
    }
    for (int k = 0; k < p->n_outputs; k++) {
        const double *src = values[p->outputs[k]];
        int64_t st = ops[k].strides[last];
        if (ops[k].dtype == TENSOR_F64) {
            double *dst = (double *)ops[k].base + off[k];
            for (int i = 0; i < n; i++) dst[i * st] = src[i];
        } else {
            float *dst = (float *)ops[k].base + off[k];
            if (st == 1) for (int i = 0; i < n; i++) dst[i] = (float)src[i];
            else for (int i = 0; i < n; i++) dst[i * st] = (float)src[i];
        }
    }
}

int cpu_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    const tensor *o0 = outs[0];
    int64_t numel = tensor_numel(o0);
    if (numel == 0) return 0;
    // Operands: outputs first, then inputs. Collapse dimensions that are contiguous in all.
    operand ops[MAX_OPERANDS];
    int n_ops = p->n_outputs + p->n_inputs;
    for (int k = 0; k < n_ops; k++) {
        const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
        ops[k].base = cpu_data(t);
        ops[k].dtype = t->dtype;
        memcpy(ops[k].strides, t->strides, sizeof ops[k].strides);
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    for (int d = 0; d < o0->ndim; d++) {
        if (o0->shape[d] == 1) continue;
        bool merge = ndim > 0;
        for (int k = 0; merge && k < n_ops; k++)
            if (ops[k].strides[ndim - 1] != ops[k].strides[d] * o0->shape[d]) merge = false;
        if (merge) {
            shape[ndim - 1] *= o0->shape[d];
            for (int k = 0; k < n_ops; k++) ops[k].strides[ndim - 1] = ops[k].strides[d];
        } else {
            shape[ndim] = o0->shape[d];
            for (int k = 0; k < n_ops; k++) ops[k].strides[ndim] = ops[k].strides[d];
            ndim++;
        }
    }
    if (ndim == 0) {
        shape[0] = 1;
        for (int k = 0; k < n_ops; k++) ops[k].strides[0] = 0;
        ndim = 1;
    }
    bool live[EW_MAX_NODES];
    ew_live_nodes(p, live);
    // Work items: (row of the outer dims, chunk of the innermost dim). Each operand's offset is
    // computed once per item; along the row it advances by the innermost stride.
    int last = ndim - 1;
    int64_t inner = shape[last], rows = numel / inner;
    int64_t chunks_per_row = (inner + CHUNK - 1) / CHUNK, items = rows * chunks_per_row;
#pragma omp parallel for schedule(static) if (numel > 65536)
    for (int64_t item = 0; item < items; item++) {
        int64_t row = item / chunks_per_row, j0 = (item % chunks_per_row) * CHUNK;
        int n = (int)(inner - j0 < CHUNK ? inner - j0 : CHUNK);
        int64_t off[MAX_OPERANDS];
        for (int k = 0; k < n_ops; k++) off[k] = j0 * ops[k].strides[last];
        int64_t rem = row;
        for (int d = last - 1; d >= 0; d--) {
            int64_t i = rem % shape[d];
            rem /= shape[d];
            for (int k = 0; k < n_ops; k++) off[k] += i * ops[k].strides[d];
        }
        eval_item(p, live, ops, last, off, n, (uint64_t)(row * inner + j0));
    }
    return 0;
}
