// GEMM for the CPU backend: float and double instances of cpu_gemm_impl.h, and the
// backend's batched entry point.
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int best_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
}

static _Atomic int gemm_isa = -1;
int cpu_gemm_isa(void) {
    int isa = gemm_isa;
    if (isa < 0) gemm_isa = isa = best_isa();
    return isa;
}
int cpu_gemm_set_isa(int isa) {
    if (isa < 0 || isa > best_isa()) return -1;
    gemm_isa = isa;
    return 0;
}

// B stored by columns (each column's rows contiguous, as im2col^T in a weight gradient or a
// transposed operand): a strip of 16 columns is packed 8 rows at a time as two 8 x 8 transposes
// in AVX2 registers, instead of one strided load per element. Rows [0, kc) of columns col[j].
__attribute__((target("arch=x86-64-v3"))) static void
pack_b_cols16_f32(int64_t kc, const float *const *col, float *bp) {
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8)
        for (int h = 0; h < 2; h++) {
            const float *src[8];
            for (int j = 0; j < 8; j++) src[j] = col[8 * h + j] + k0;
            cpu_transpose8_f32(src, bp + k0 * 16 + 8 * h, 16);
        }
    for (; k0 < kc; k0++)
        for (int j = 0; j < 16; j++) bp[k0 * 16 + j] = col[j][k0];
}
#define PACK_B_COLS pack_b_cols16_f32

#define T      float
#define SUFFIX f32
#define MR                                                                                         \
    8 // 8 x 16 on AVX-512: 8 accumulators keep both FMA units busy (6 x 16 was latency bound)
#define MR_AVX2 6 // 6 x 16 on AVX2: 12 ymm accumulators, 2 for B, 1 broadcast
#define NR      16
_Static_assert(NR == CPU_GEMM_NR(float), "an implicit B is packed in the GEMM's strips");
#include "cpu_gemm_impl.h"
#undef T
#undef SUFFIX
#undef MR
#undef MR_AVX2
#undef NR
#undef PACK_B_COLS

#define T       double
#define SUFFIX  f64
#define MR      6
#define MR_AVX2 6 // 12 ymm accumulators
#define NR      8
_Static_assert(NR == CPU_GEMM_NR(double), "an implicit B is packed in the GEMM's strips");
#include "cpu_gemm_impl.h"
#undef T
#undef SUFFIX
#undef MR
#undef MR_AVX2
#undef NR

static void gemm_one(const gemm_args *g, int64_t i, bool parallel) {
    size_t es = tensor_dtype_size(g->c->dtype);
    const char *ai = (const char *)cpu_data(g->a) + i * g->a_batch_stride * (int64_t)es;
    const char *bi = (const char *)cpu_data(g->b) + i * g->b_batch_stride * (int64_t)es;
    char *ci = (char *)cpu_data(g->c) + i * g->M * g->N * (int64_t)es;
    if (g->c->dtype == TENSOR_F64)
        (parallel ? cpu_gemm_parallel_f64 : cpu_gemm_f64)(
            g->M, g->N, g->K, (const double *)ai, g->a_row_stride, g->a_col_stride,
            (const double *)bi, g->b_row_stride, g->b_col_stride, (double *)ci, g->N, false);
    else
        (parallel ? cpu_gemm_parallel_f32 : cpu_gemm_f32)(
            g->M, g->N, g->K, (const float *)ai, g->a_row_stride, g->a_col_stride,
            (const float *)bi, g->b_row_stride, g->b_col_stride, (float *)ci, g->N, false);
}

// A batch of at least as many products as threads: one product per thread; otherwise each
// product split over the threads. (Never the second inside an OpenMP region: libgomp would start
// a nested team, new threads, for every call.)
int cpu_gemm(const gemm_args *g) {
    if (g->batch >= cpu_threads() && g->batch > 1) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < g->batch; i++) gemm_one(g, i, false);
    } else {
        for (int64_t i = 0; i < g->batch; i++) gemm_one(g, i, true);
    }
    return 0;
}
