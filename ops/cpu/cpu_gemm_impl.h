// The blocked GEMM, written once and instantiated for float and double by cpu_gemm.c
// (T, SUFFIX, MR, NR defined there). Goto-style: B is packed in KC x NC panels of NR-wide
// strips, A in MC x KC blocks of MR-tall strips; an MR x NR micro-kernel keeps its tile of C
// in registers. Clones for AVX2+FMA and AVX-512 are picked at run time.
#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)
#define KC         256
#define MC         96
#define NC         2048

_Static_assert(MC % MR == 0 && MC % MR_AVX2 == 0, "A's packed block holds whole strips");

// The micro-kernel: C[0..mr, 0..nr) += A-strip (kc x MR_) times B-strip (kc x NR), its MR_ x NR
// tile in registers as MR_ x (NR / lanes) vectors of the ISA's native width (`bytes`): a vector
// wider than the registers is kept in memory by GCC, every FMA a load and a store. One per ISA:
// AVX-512 (zmm), AVX2 + FMA (ymm: fewer rows, so that the accumulators, two B vectors and the
// broadcast fit the 16 registers), and SSE2 as the fallback.
#define MICRO_KERNEL(name, isa, MR_, bytes)                                                        \
    __attribute__((target(isa))) static void name(int64_t kc, const T *restrict ap,                \
                                                  const T *restrict bp, T *restrict c,             \
                                                  int64_t ldc, int mr, int nr, bool store) {       \
        typedef T vec __attribute__((vector_size(bytes)));                                         \
        enum { L = (bytes) / sizeof(T), NV = NR / L };                                             \
        vec acc[MR_][NV];                                                                          \
        for (int i = 0; i < MR_; i++)                                                              \
            for (int v = 0; v < NV; v++) acc[i][v] = (vec){0};                                     \
        for (int64_t k = 0; k < kc; k++) {                                                         \
            vec b[NV];                                                                             \
            for (int v = 0; v < NV; v++) memcpy(&b[v], bp + k * NR + v * L, sizeof(vec));          \
            const T *a = ap + k * MR_;                                                             \
            for (int i = 0; i < MR_; i++)                                                          \
                for (int v = 0; v < NV; v++) acc[i][v] += a[i] * b[v];                             \
        }                                                                                          \
        if (nr == NR && store) { /* C's first panel: stored, not added to (no zeroing pass) */     \
            for (int i = 0; i < mr; i++)                                                           \
                for (int v = 0; v < NV; v++) memcpy(c + i * ldc + v * L, &acc[i][v], sizeof(vec)); \
        } else if (nr == NR) {                                                                     \
            for (int i = 0; i < mr; i++)                                                           \
                for (int v = 0; v < NV; v++) {                                                     \
                    vec row;                                                                       \
                    memcpy(&row, c + i * ldc + v * L, sizeof row);                                 \
                    row += acc[i][v];                                                              \
                    memcpy(c + i * ldc + v * L, &row, sizeof row);                                 \
                }                                                                                  \
        } else { /* an edge tile, through memory (after the loop: the loop's stay in registers) */ \
            T tile[MR_][NR];                                                                       \
            for (int i = 0; i < MR_; i++)                                                          \
                for (int v = 0; v < NV; v++) memcpy(&tile[i][v * L], &acc[i][v], sizeof(vec));     \
            for (int i = 0; i < mr; i++)                                                           \
                for (int j = 0; j < nr; j++)                                                       \
                    c[i * ldc + j] = store ? tile[i][j] : c[i * ldc + j] + tile[i][j];             \
        }                                                                                          \
    }
MICRO_KERNEL(CAT(micro_kernel_avx512_, SUFFIX), "arch=x86-64-v4", MR, 64)
MICRO_KERNEL(CAT(micro_kernel_avx2_, SUFFIX), "arch=x86-64-v3", MR_AVX2, 32)
MICRO_KERNEL(CAT(micro_kernel_sse2_, SUFFIX), "arch=x86-64", MR, 16)
#undef MICRO_KERNEL

static void CAT(pack_a_, SUFFIX)(int64_t mc, int64_t kc, const T *a, int64_t ars, int64_t acs,
                                 T *ap, int strip) {
    for (int64_t i0 = 0; i0 < mc; i0 += strip) {
        int mr = (int)(mc - i0 < strip ? mc - i0 : strip);
        for (int64_t k = 0; k < kc; k++) {
            for (int i = 0; i < mr; i++) ap[k * strip + i] = a[(i0 + i) * ars + k * acs];
            for (int i = mr; i < strip; i++) ap[k * strip + i] = 0;
        }
        ap += kc * strip;
    }
}

// Columns come in groups of gn (one group, gn >= N, is the plain layout; several: gn a
// multiple of NR, so that no strip straddles two): column j of B is at
// b + (j / gn) * b_gs + (j % gn) * bcs, column j of C at c + (j / gn) * c_gs + (j % gn). So one
// GEMM covers a batch of samples laid out one after another (a convolution's im2col buffers and
// outputs), and the weights are packed once for all of them.
// pack, when set, writes B's packed panels itself (an implicit GEMM: a convolution's im2col
// gathered straight from the image) and b is not read.
typedef struct {
    int64_t gn, b_gs, c_gs;
    CAT(cpu_pack_b_, SUFFIX) pack;
    const void *pack_ctx;
} CAT(col_groups_, SUFFIX);
#define BCOL(j) (b + ((j) / G.gn) * G.b_gs + ((j) % G.gn) * bcs)
#define CCOL(j) (c + ((j) / G.gn) * G.c_gs + ((j) % G.gn))

// B's rows [0, kc) of columns [j0, j0 + nc), in NR-wide strips.
// by_cols: B is stored by columns (brs == 1) and PACK_B_COLS may transpose whole strips.
static void CAT(pack_b_, SUFFIX)(int64_t kc, int64_t j0, int64_t nc, const T *b, int64_t brs,
                                 int64_t bcs, CAT(col_groups_, SUFFIX) G, T *bp, bool by_cols) {
    for (int64_t s = 0; s < nc; s += NR) {
        int nr = (int)(nc - s < NR ? nc - s : NR);
#ifdef PACK_B_COLS
        if (by_cols && nr == NR) {
            const T *cols[NR];
            for (int j = 0; j < NR; j++) cols[j] = BCOL(j0 + s + j);
            PACK_B_COLS(kc, cols, bp);
            bp += kc * NR;
            continue;
        }
#else
        (void)by_cols;
#endif
        const T *col0 = BCOL(j0 + s);
        for (int64_t k = 0; k < kc; k++) {
            const T *row = col0 + k * brs;
            if (bcs == 1 && nr == NR)
                memcpy(bp + k * NR, row, NR * sizeof(T));
            else if (bcs == 1)
                for (int j = 0; j < nr; j++) bp[k * NR + j] = row[j];
            else
                for (int j = 0; j < nr; j++) bp[k * NR + j] = row[j * bcs];
            for (int j = nr; j < NR; j++) bp[k * NR + j] = 0;
        }
        bp += kc * NR;
    }
}

// Columns [j_lo, j_hi) of C = [C +] A @ B.
// -1 only when an implicit B (G.pack) finds no memory to be packed into.
static int CAT(gemm_range_, SUFFIX)(int64_t M, int64_t K, const T *a, int64_t ars, int64_t acs,
                                    const T *b, int64_t brs, int64_t bcs, T *c, int64_t ldc,
                                    CAT(col_groups_, SUFFIX) G, int64_t j_lo, int64_t j_hi,
                                    bool accumulate) {
    // C is zeroed first only where nothing below stores its first panel (the packed path
    // stores it: no zeroing pass)
    T *ap = K > 0 ? cpu_scratch(0, sizeof(T) * MC * KC) : NULL,
      *bp = K > 0 ? cpu_scratch(1, sizeof(T) * KC * (NC + NR)) : NULL;
    if (!accumulate && (!ap || !bp))
        for (int64_t j = j_lo; j < j_hi;) { // each group's part of the rows
            int64_t end = (j / G.gn + 1) * G.gn;
            end = end < j_hi ? end : j_hi;
            for (int64_t i = 0; i < M; i++)
                memset(CCOL(j) + i * ldc, 0, (size_t)(end - j) * sizeof(T));
            j = end;
        }
    if (M == 0 || j_hi <= j_lo || K == 0) return 0;
    int isa = cpu_gemm_isa(); // the kernel, and the strip height A is packed in
    void (*kernel)(int64_t, const T *restrict, const T *restrict, T *restrict, int64_t, int, int,
                   bool) = isa == 2   ? CAT(micro_kernel_avx512_, SUFFIX)
                           : isa == 1 ? CAT(micro_kernel_avx2_, SUFFIX)
                                      : CAT(micro_kernel_sse2_, SUFFIX);
    int str = isa == 1 ? MR_AVX2 : MR;
    bool cols_fast = isa >= 1 && brs == 1 && bcs != 1; // B stored by columns, AVX2 at least
    if (!ap || !bp) { // no memory for packing: the plain triple loop still gives the answer
        if (G.pack) return -1;
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) {
                T aik = a[i * ars + k * acs];
                for (int64_t j = j_lo; j < j_hi; j++) CCOL(j)[i * ldc] += aik * BCOL(j)[k * brs];
            }
        return 0;
    }
    for (int64_t jc = j_lo; jc < j_hi; jc += NC) {
        int64_t nc = j_hi - jc < NC ? j_hi - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            if (G.pack)
                G.pack(G.pack_ctx, pc, kc, jc, nc, bp);
            else
                CAT(pack_b_, SUFFIX)(kc, jc, nc, b + pc * brs, brs, bcs, G, bp, cols_fast);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                CAT(pack_a_, SUFFIX)(mc, kc, a + ic * ars + pc * acs, ars, acs, ap, str);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    T *cj = CCOL(jc + jr);
                    for (int64_t ir = 0; ir < mc; ir += str) {
                        int mr = (int)(mc - ir < str ? mc - ir : str);
                        kernel(kc, ap + ir * kc, bp + jr * kc, cj + (ic + ir) * ldc, ldc, mr, nr,
                               !accumulate && pc == 0);
                    }
                }
            }
        }
    }
    return 0;
}

void CAT(cpu_gemm_, SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a, int64_t ars, int64_t acs,
                            const T *b, int64_t brs, int64_t bcs, T *c, int64_t ldc,
                            bool accumulate) {
    CAT(col_groups_, SUFFIX) one = {N > 0 ? N : 1, 0, 0, NULL, NULL};
    CAT(gemm_range_, SUFFIX)(M, K, a, ars, acs, b, brs, bcs, c, ldc, one, 0, N, accumulate);
}

// Splits the columns (or, for narrow C, the rows) over the threads.
static int CAT(gemm_parallel_, SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a, int64_t ars,
                                       int64_t acs, const T *b, int64_t brs, int64_t bcs, T *c,
                                       int64_t ldc, CAT(col_groups_, SUFFIX) G, bool accumulate) {
    int threads = cpu_threads();
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (threads <= 1 || flops < 2e6)
        return CAT(gemm_range_, SUFFIX)(M, K, a, ars, acs, b, brs, bcs, c, ldc, G, 0, N,
                                        accumulate);
    // A small C over a long contraction (a Linear layer's forward on a small batch: 16 x 100
    // over 8192): neither its rows nor its columns give each thread whole strips, so the
    // contraction is cut into SPLIT_K parts, each a product into its own buffer (the first
    // into C), summed in their order: the same bits whatever the thread count.
    enum { SPLIT_K = 4 };
    T *parts = NULL;
    if (!G.pack && G.gn >= N && M * N <= 16384 && K >= SPLIT_K * KC &&
        (N < 2 * NR * threads || M < 2 * MR_AVX2 * threads))
        parts = cpu_scratch(5, sizeof(T) * (size_t)((SPLIT_K - 1) * M * N));
    if (parts) {
        int64_t step = (K / SPLIT_K + KC - 1) / KC * KC; // whole packing blocks
        int failed = 0;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int q = 0; q < SPLIT_K; q++) {
            int64_t k0 = q * step, k1 = k0 + step < K ? k0 + step : K;
            if (q > 0 && k0 >= K) {
                memset(parts + (q - 1) * M * N, 0, sizeof(T) * (size_t)(M * N));
                continue;
            }
            T *dst = q ? parts + (q - 1) * M * N : c;
            int rc =
                CAT(gemm_range_, SUFFIX)(M, k1 - k0, a + k0 * acs, ars, acs, b + k0 * brs, brs, bcs,
                                         dst, q ? N : ldc, G, 0, N, q ? false : accumulate);
            if (rc) {
#pragma omp atomic write
                failed = 1;
            }
        }
        for (int64_t i = 0; i < M; i++)
            for (int q = 1; q < SPLIT_K; q++)
                for (int64_t j = 0; j < N; j++) c[i * ldc + j] += parts[((q - 1) * M + i) * N + j];
        return failed ? -1 : 0;
    }
    int failed = 0;
    bool by_cols = N >= M || N >= 2 * NR * threads || G.gn < N; // rows: in multiples of 24
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        int64_t total = by_cols ? N : M, unit = by_cols ? NR : 24; // whole strips of 6 and 8
        int64_t per = ((total + nt - 1) / nt + unit - 1) / unit * unit;
        int64_t lo = t * per, hi = lo + per < total ? lo + per : total;
        int rc = 0;
        if (lo < hi) {
            if (by_cols)
                rc = CAT(gemm_range_, SUFFIX)(M, K, a, ars, acs, b, brs, bcs, c, ldc, G, lo, hi,
                                              accumulate);
            else
                rc = CAT(gemm_range_, SUFFIX)(hi - lo, K, a + lo * ars, ars, acs, b, brs, bcs,
                                              c + lo * ldc, ldc, G, 0, N, accumulate);
        }
        if (rc) {
#pragma omp atomic write
            failed = 1;
        }
    }
    return failed ? -1 : 0;
}

void CAT(cpu_gemm_parallel_, SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a, int64_t ars,
                                     int64_t acs, const T *b, int64_t brs, int64_t bcs, T *c,
                                     int64_t ldc, bool accumulate) {
    CAT(col_groups_, SUFFIX) one = {N > 0 ? N : 1, 0, 0, NULL, NULL};
    CAT(gemm_parallel_, SUFFIX)(M, N, K, a, ars, acs, b, brs, bcs, c, ldc, one, accumulate);
}

void CAT(cpu_gemm_groups_parallel_, SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a,
                                            int64_t ars, int64_t acs, const T *b, int64_t brs,
                                            int64_t bcs, int64_t b_gs, T *c, int64_t ldc,
                                            int64_t c_gs, int64_t gn, bool accumulate) {
    CAT(col_groups_, SUFFIX) G = {gn, b_gs, c_gs, NULL, NULL};
    CAT(gemm_parallel_, SUFFIX)(M, N, K, a, ars, acs, b, brs, bcs, c, ldc, G, accumulate);
}

int CAT(cpu_gemm_implicit_parallel_,
        SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a, int64_t ars, int64_t acs,
                CAT(cpu_pack_b_, SUFFIX) pack, const void *ctx, T *c, int64_t ldc, int64_t c_gs,
                int64_t gn, bool accumulate) {
    CAT(col_groups_, SUFFIX) G = {gn, 0, c_gs, pack, ctx};
    return CAT(gemm_parallel_, SUFFIX)(M, N, K, a, ars, acs, NULL, 0, 1, c, ldc, G, accumulate);
}

#undef BCOL
#undef CCOL

#undef KC
#undef MC
#undef NC
#undef CAT
#undef CAT_
