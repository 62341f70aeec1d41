// The elementwise interpreter's node loops, written once and instantiated by cpu_elementwise.c
// for float and double (T, SUFFIX defined there): a program computes in its first output's
// dtype, as the CUDA backend's rendered kernels do. <tgmath.h> picks expf/exp, ... by type.
#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)

// Each node's row of a chunk's values (padded: rows 4 KiB apart alias in the store buffer).
static _Thread_local T CAT(values_, SUFFIX)[EW_MAX_NODES][CHUNK + 16];
#define values CAT(values_, SUFFIX)

// r[i] = the node's value for i < n, from operand rows a, b, c; ua / ub: operand a / b is
// uniform (one value, at [0]; a binary op reads it as a scalar instead of a splatted row). Each
// case is a loop over the elements (a whole chunk with a constant trip count, which the
// compiler unrolls and vectorises without a remainder).
static inline __attribute__((always_inline)) void
CAT(eval_node_, SUFFIX)(const ew_node *e, int n, T *restrict r, const T *restrict a,
                        const T *restrict b, const T *restrict c, bool ua, bool ub) {
#define LOOP(...)                                                                                  \
    if (n == CHUNK)                                                                                \
        for (int i = 0; i < CHUNK; i++) __VA_ARGS__                                                \
    else                                                                                           \
        for (int i = 0; i < n; i++) __VA_ARGS__
#define EACH(expr)                                                                                 \
    LOOP({ r[i] = (expr); });                                                                      \
    break
    // a binary op of A and B, either of them a scalar
#define BIN(expr)                                                                                  \
    if (ua) {                                                                                      \
        const T A = a[0];                                                                          \
        LOOP({                                                                                     \
            const T B = b[i];                                                                      \
            r[i] = (expr);                                                                         \
        });                                                                                        \
    } else if (ub) {                                                                               \
        const T B = b[0];                                                                          \
        LOOP({                                                                                     \
            const T A = a[i];                                                                      \
            r[i] = (expr);                                                                         \
        });                                                                                        \
    } else                                                                                         \
        LOOP({                                                                                     \
            const T A = a[i], B = b[i];                                                            \
            r[i] = (expr);                                                                         \
        });                                                                                        \
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
        case EW_ADD: BIN(A + B);
        case EW_SUB: BIN(A - B);
        case EW_MUL: BIN(A * B);
        case EW_DIV: BIN(A / B);
        case EW_MAX: BIN(A >= B ? A : B);
        case EW_MIN: BIN(A <= B ? A : B);
        case EW_POW: BIN(pow(A, B));
        case EW_LT: BIN((T)(A < B));
        case EW_LE: BIN((T)(A <= B));
        case EW_GT: BIN((T)(A > B));
        case EW_GE: BIN((T)(A >= B));
        case EW_EQ: BIN((T)(A == B));
        case EW_NE: BIN((T)(A != B));
        case EW_WHERE: { // both branches loaded, then a select (no masked loads)
            LOOP({
                const T x = b[i], y = c[i];
                r[i] = a[i] != 0 ? x : y;
            });
            break;
        }
        default: break;
    }
#undef BIN
#undef EACH
#undef LOOP
}

// One work item: every live node over n consecutive elements of a row, then the stores.
// Cloned for AVX-512 and AVX2 (picked at run time) so that the node loops use wide vectors.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static void
CAT(eval_item_, SUFFIX)(const ew_program *p, const bool *live, const operand *ops, int last,
                        const int64_t *off, int n, uint64_t first) {
    const rng stream = {p->rng_seed, p->rng_offset};
    // row[v]: node v's values. Its own row in `values`, or, for an input that is contiguous and
    // of the program's dtype, the input's memory itself (not copied; not for an input that is
    // itself an output, whose memory an earlier store may overwrite). uniform[v]: v has one value
    // over the whole item (a constant, a broadcast input, or an op of such nodes, like batch
    // norm's rsqrt(var + eps) along a channel's pixels), computed once and kept at row[v][0]; a
    // consumer that needs a row of them gets it splatted (the same values as element by element).
    const T *row[EW_MAX_NODES];
    bool uniform[EW_MAX_NODES], is_output[EW_MAX_NODES] = {0};
    for (int k = 0; k < p->n_outputs; k++) is_output[p->outputs[k]] = true;
    bool splatted[EW_MAX_NODES];
#define SPLAT(v)                                                                                   \
    do {                                                                                           \
        if (uniform[v] && !splatted[v]) {                                                          \
            const T u = row[v][0];                                                                 \
            for (int i = 0; i < n; i++) values[v][i] = u;                                          \
            row[v] = values[v];                                                                    \
            splatted[v] = true;                                                                    \
        }                                                                                          \
    } while (0)
    for (int v = 0; v < p->n_nodes; v++) {
        if (!live[v]) continue;
        const ew_node *e = &p->nodes[v];
        T *r = values[v];
        row[v] = r;
        uniform[v] = splatted[v] = false;
        if (e->op == EW_CONST) {
            uniform[v] = true;
            r[0] = (T)e->value;
        } else if (e->op == EW_INPUT) {
            int k = p->n_outputs + e->input;
            int64_t st = ops[k].strides[last];
            bool same = ops[k].dtype == (sizeof(T) == 8 ? TENSOR_F64 : TENSOR_F32);
            if (st == 0) {
                uniform[v] = true;
                r[0] = ops[k].dtype == TENSOR_F64 ? (T)((const double *)ops[k].base)[off[k]]
                                                  : (T)((const float *)ops[k].base)[off[k]];
            } else if (st == 1 && same && !is_output[v]) {
                row[v] = (const T *)ops[k].base + off[k];
            } else {
                // contiguous or strided, from an operand of type S
#define LOAD(S)                                                                                    \
    do {                                                                                           \
        const S *src = (const S *)ops[k].base + off[k];                                            \
        if (st == 1)                                                                               \
            for (int i = 0; i < n; i++) r[i] = (T)src[i];                                          \
        else                                                                                       \
            for (int i = 0; i < n; i++) r[i] = (T)src[i * st];                                     \
    } while (0)
                if (ops[k].dtype == TENSOR_F64)
                    LOAD(double);
                else
                    LOAD(float);
#undef LOAD
            }
        } else if (e->op == EW_RAND_U01 || e->op == EW_RAND_NORMAL || e->op == EW_BERNOULLI) {
            // drawn in double, as on CUDA; a Bernoulli probability that is a constant is compared
            // in double (CUDA passes it as a double argument), so the masks are bit-identical
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
            } else {
                SPLAT(e->a);
                const T *a = row[e->a];
                for (int i = 0; i < n; i++) r[i] = (T)(rng_u01(w[0][i], w[1][i]) < (double)a[i]);
            }
        } else {
            int arity = ew_arity((ew_opcode)e->op);
            bool ua = uniform[e->a], ub = arity >= 2 && uniform[e->b];
            uniform[v] = ua && (arity < 2 || ub) && (arity < 3 || uniform[e->c]);
            if (uniform[v]) { // one value: its operands' first elements
                const T *a = row[e->a], *b = arity >= 2 ? row[e->b] : a,
                        *c = arity >= 3 ? row[e->c] : a;
                CAT(eval_node_, SUFFIX)(e, 1, r, a, b, c, false, false);
            } else {
                if (arity == 1 || arity == 3) { // only binary ops read scalars
                    SPLAT(e->a);
                    if (arity == 3) {
                        SPLAT(e->b);
                        SPLAT(e->c);
                    }
                    ua = ub = false;
                }
                const T *a = row[e->a], *b = arity >= 2 ? row[e->b] : a,
                        *c = arity >= 3 ? row[e->c] : a;
                CAT(eval_node_, SUFFIX)(e, n, r, a, b, c, ua, ub);
            }
        }
    }
    for (int k = 0; k < p->n_outputs; k++) {
        int v = p->outputs[k];
        int64_t st = ops[k].strides[last];
        if (uniform[v]) SPLAT(v);
        const T *src = row[v];
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
#undef SPLAT
}

#undef values
#undef CAT
#undef CAT_
