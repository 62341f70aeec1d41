// The blocked GEMM, written once and instantiated for float and double by cpu_gemm.c
// (T, SUFFIX, MR, NR defined there). Goto-style: B is packed in KC x NC panels of NR-wide
// strips, A in MC x KC blocks of MR-tall strips; an MR x NR micro-kernel keeps its tile of C
// in registers. Clones for AVX2+FMA and AVX-512 are picked at run time.
#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)
#define KC         256
#define MC         96
#define NC         2048

_Static_assert(MC % MR == 0, "A's packed block holds whole MR-row strips");

typedef T CAT(vec_, SUFFIX) __attribute__((vector_size(NR * sizeof(T))));

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static void
CAT(micro_kernel_, SUFFIX)(int64_t kc, const T *restrict ap, const T *restrict bp, T *restrict c,
                           int64_t ldc, int mr, int nr) {
    typedef CAT(vec_, SUFFIX) vec;
    vec acc[MR];
    for (int i = 0; i < MR; i++) acc[i] = (vec){0};
    for (int64_t k = 0; k < kc; k++) {
        vec b;
        memcpy(&b, bp + k * NR, sizeof b);
        const T *a = ap + k * MR;
        for (int i = 0; i < MR; i++) acc[i] += a[i] * b;
    }
    if (nr == NR) {
        for (int i = 0; i < mr; i++) {
            vec row;
            memcpy(&row, c + i * ldc, sizeof row);
            row += acc[i];
            memcpy(c + i * ldc, &row, sizeof row);
        }
    } else {
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++) c[i * ldc + j] += acc[i][j];
    }
}

static void CAT(pack_a_, SUFFIX)(int64_t mc, int64_t kc, const T *a, int64_t ars, int64_t acs,
                                 T *ap) {
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        int mr = (int)(mc - i0 < MR ? mc - i0 : MR);
        for (int64_t k = 0; k < kc; k++) {
            for (int i = 0; i < mr; i++) ap[k * MR + i] = a[(i0 + i) * ars + k * acs];
            for (int i = mr; i < MR; i++) ap[k * MR + i] = 0;
        }
        ap += kc * MR;
    }
}

static void CAT(pack_b_, SUFFIX)(int64_t kc, int64_t nc, const T *b, int64_t brs, int64_t bcs,
                                 T *bp) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR) {
        int nr = (int)(nc - j0 < NR ? nc - j0 : NR);
        for (int64_t k = 0; k < kc; k++) {
            const T *row = b + k * brs + j0 * bcs;
            if (bcs == 1)
                for (int j = 0; j < nr; j++) bp[k * NR + j] = row[j];
            else
                for (int j = 0; j < nr; j++) bp[k * NR + j] = row[j * bcs];
            for (int j = nr; j < NR; j++) bp[k * NR + j] = 0;
        }
        bp += kc * NR;
    }
}

void CAT(cpu_gemm_, SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a, int64_t ars, int64_t acs,
                            const T *b, int64_t brs, int64_t bcs, T *c, int64_t ldc,
                            bool accumulate) {
    if (!accumulate)
        for (int64_t i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(T));
    if (M == 0 || N == 0 || K == 0) return;
    T *ap = cpu_scratch(0, sizeof(T) * MC * KC), *bp = cpu_scratch(1, sizeof(T) * KC * (NC + NR));
    if (!ap || !bp) { // no memory for packing: the plain triple loop still gives the answer
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) {
                T aik = a[i * ars + k * acs];
                for (int64_t j = 0; j < N; j++) c[i * ldc + j] += aik * b[k * brs + j * bcs];
            }
        return;
    }
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            CAT(pack_b_, SUFFIX)(kc, nc, b + pc * brs + jc * bcs, brs, bcs, bp);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                CAT(pack_a_, SUFFIX)(mc, kc, a + ic * ars + pc * acs, ars, acs, ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)(mc - ir < MR ? mc - ir : MR);
                        CAT(micro_kernel_, SUFFIX)
                        (kc, ap + ir * kc, bp + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, mr,
                         nr);
                    }
                }
            }
        }
    }
}

// Splits the columns (or, for narrow C, the rows) over the threads.
#define gemm_serial CAT(cpu_gemm_, SUFFIX)
void CAT(cpu_gemm_parallel_, SUFFIX)(int64_t M, int64_t N, int64_t K, const T *a, int64_t ars,
                                     int64_t acs, const T *b, int64_t brs, int64_t bcs, T *c,
                                     int64_t ldc, bool accumulate) {
    int threads = cpu_threads();
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (threads <= 1 || flops < 2e6) {
        gemm_serial(M, N, K, a, ars, acs, b, brs, bcs, c, ldc, accumulate);
        return;
    }
    bool by_cols = N >= M || N >= 2 * NR * threads;
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        int64_t total = by_cols ? N : M, unit = by_cols ? NR : MR;
        int64_t per = ((total + nt - 1) / nt + unit - 1) / unit * unit;
        int64_t lo = t * per, hi = lo + per < total ? lo + per : total;
        if (lo < hi) {
            int64_t m = by_cols ? M : hi - lo, n = by_cols ? hi - lo : N;
            const T *a_part = by_cols ? a : a + lo * ars, *b_part = by_cols ? b + lo * bcs : b;
            T *c_part = by_cols ? c + lo : c + lo * ldc;
            gemm_serial(m, n, K, a_part, ars, acs, b_part, brs, bcs, c_part, ldc, accumulate);
        }
    }
}

#undef gemm_serial
#undef KC
#undef MC
#undef NC
#undef CAT
#undef CAT_
