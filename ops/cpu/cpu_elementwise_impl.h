// The elementwise interpreter's node loops, written once and instantiated by cpu_elementwise.c
// for float and double (T, SUFFIX defined there): a program computes in its first output's
// dtype, as the CUDA backend's rendered kernels do. <tgmath.h> picks expf/exp, ... by type.
#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)

static _Thread_local T CAT(values_, SUFFIX)[EW_MAX_NODES][CHUNK + 16];
#define values CAT(values_, SUFFIX)

static inline __attribute__((always_inline)) void CAT(eval_node_, SUFFIX)(const ew_node *e, int n,
                                                                          int self) {
    // a node's operands come before it: its row is none of theirs
    T *restrict r = values[self];
    const T *restrict a = values[e->a], *restrict b = values[e->b], *restrict c = values[e->c];
    // each case one loop over the n elements: r[i] = the node's value (a whole chunk with a
    // constant trip count, which the compiler unrolls and vectorises without a remainder)
#define EACH(expr)                                                                                 \
    if (n == CHUNK)                                                                                \
        for (int i = 0; i < CHUNK; i++) r[i] = (expr);                                             \
    else                                                                                           \
        for (int i = 0; i < n; i++) r[i] = (expr);                                                 \
    break
    switch ((ew_opcode)e->op) {
        case EW_NEG: EACH(-a[i]);
        case EW_EXP: EACH(exp(a[i]));
        case EW_LOG: EACH(log(a[i]));
        case EW_SQRT: EACH(sqrt(a[i]));
        case EW_RSQRT: EACH((T)1 / sqrt(a[i]));
        case EW_ABS: EACH(fabs(a[i]));
        case EW_TANH: EACH(tanh(a[i]));
        case EW_SIGMOID: EACH((T)1 / ((T)1 + exp(-a[i])));
        case EW_RELU: EACH(a[i] > 0 ? a[i] : 0);
        case EW_SIGN: EACH((T)((a[i] > 0) - (a[i] < 0)));
        case EW_ADD: EACH(a[i] + b[i]);
        case EW_SUB: EACH(a[i] - b[i]);
        case EW_MUL: EACH(a[i] * b[i]);
        case EW_DIV: EACH(a[i] / b[i]);
        case EW_MAX: EACH(a[i] >= b[i] ? a[i] : b[i]);
        case EW_MIN: EACH(a[i] <= b[i] ? a[i] : b[i]);
        case EW_POW: EACH(pow(a[i], b[i]));
        case EW_LT: EACH((T)(a[i] < b[i]));
        case EW_LE: EACH((T)(a[i] <= b[i]));
        case EW_GT: EACH((T)(a[i] > b[i]));
        case EW_GE: EACH((T)(a[i] >= b[i]));
        case EW_EQ: EACH((T)(a[i] == b[i]));
        case EW_NE: EACH((T)(a[i] != b[i]));
        case EW_WHERE: EACH(a[i] != 0 ? b[i] : c[i]);
        default: break;
    }
#undef EACH
}

// One work item: every live node over n consecutive elements of a row, then the stores.
// Cloned for AVX-512 and AVX2 (picked at run time) so that the node loops use wide vectors.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static void
CAT(eval_item_, SUFFIX)(const ew_program *p, const bool *live, const operand *ops, int last,
                        const int64_t *off, int n, uint64_t first) {
    const rng stream = {p->rng_seed, p->rng_offset};
    // uniform[v]: node v has one value over the whole item (a constant, a broadcast input, or an
    // op of such nodes, like batch norm's rsqrt(var + eps) along a channel's pixels); it is
    // computed once and splatted, the same arithmetic on the same values as element by element.
    bool uniform[EW_MAX_NODES];
    for (int v = 0; v < p->n_nodes; v++) {
        if (!live[v]) continue;
        const ew_node *e = &p->nodes[v];
        T *r = values[v];
        if (e->op == EW_CONST) {
            uniform[v] = true;
        } else if (e->op == EW_INPUT) {
            uniform[v] = ops[p->n_outputs + e->input].strides[last] == 0;
        } else if (e->op == EW_RAND_U01 || e->op == EW_RAND_NORMAL || e->op == EW_BERNOULLI) {
            uniform[v] = false;
        } else {
            int arity = ew_arity((ew_opcode)e->op);
            uniform[v] =
                uniform[e->a] && (arity < 2 || uniform[e->b]) && (arity < 3 || uniform[e->c]);
            if (uniform[v]) {
                CAT(eval_node_, SUFFIX)(e, 1, v);
                for (int i = 1; i < n; i++) r[i] = r[0];
                continue;
            }
        }
        if (e->op == EW_RAND_U01 || e->op == EW_RAND_NORMAL || e->op == EW_BERNOULLI) {
            // drawn in double, as on CUDA; a Bernoulli probability that is a constant is compared
            // in double (CUDA passes it as a double argument), so the masks are bit-identical
            const T *a = values[e->a];
            const ew_node *pa = &p->nodes[e->a];
            bool const_prob = e->op == EW_BERNOULLI && pa->op == EW_CONST;
            static _Thread_local uint32_t w[4][RNG_BLOCKS_MAX];
            rng_blocks(&stream, first, n, w);
            if (e->op == EW_RAND_NORMAL)
                for (int i = 0; i < n; i++)
                    r[i] =
                        (T)rng_box_muller((const uint32_t[4]){w[0][i], w[1][i], w[2][i], w[3][i]});
            else if (e->op == EW_RAND_U01)
                for (int i = 0; i < n; i++) r[i] = (T)rng_u01(w[0][i], w[1][i]);
            else if (const_prob) { // rng_u01 < p as an integer compare of its 53 bits: no branch
                uint64_t t = rng_u01_threshold(pa->value);
                for (int i = 0; i < n; i++)
                    r[i] = (T)((((uint64_t)w[0][i] << 32 | w[1][i]) >> 11) < t);
            } else
                for (int i = 0; i < n; i++) r[i] = (T)(rng_u01(w[0][i], w[1][i]) < (double)a[i]);
        } else if (e->op == EW_INPUT) {
            int k = p->n_outputs + e->input;
            int64_t st = ops[k].strides[last];
            // contiguous, broadcast or strided, from an operand of type S
#define LOAD(S)                                                                                    \
    do {                                                                                           \
        const S *src = (const S *)ops[k].base + off[k];                                            \
        if (st == 1)                                                                               \
            for (int i = 0; i < n; i++) r[i] = (T)src[i];                                          \
        else if (st == 0)                                                                          \
            for (int i = 0; i < n; i++) r[i] = (T)src[0];                                          \
        else                                                                                       \
            for (int i = 0; i < n; i++) r[i] = (T)src[i * st];                                     \
    } while (0)
            if (ops[k].dtype == TENSOR_F64)
                LOAD(double);
            else
                LOAD(float);
#undef LOAD
        } else if (e->op == EW_CONST) {
            for (int i = 0; i < n; i++) r[i] = (T)e->value;
        } else {
            CAT(eval_node_, SUFFIX)(e, n, v);
        }
    }
    for (int k = 0; k < p->n_outputs; k++) {
        const T *src = values[p->outputs[k]];
        int64_t st = ops[k].strides[last];
        if (ops[k].dtype == TENSOR_F64) {
            double *dst = (double *)ops[k].base + off[k];
            for (int i = 0; i < n; i++) dst[i * st] = (double)src[i];
        } else {
            float *dst = (float *)ops[k].base + off[k];
            if (st == 1)
                for (int i = 0; i < n; i++) dst[i] = (float)src[i];
            else
                for (int i = 0; i < n; i++) dst[i * st] = (float)src[i];
        }
    }
}

#undef values
#undef CAT
#undef CAT_
