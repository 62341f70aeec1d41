// Internals shared by the CPU backend's files.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "../backend.h"
#include "cpu_scratch.h"

static inline void *cpu_data(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)tensor_dtype_size(t->dtype);
}

int cpu_elementwise(const char *op, const ew_program *p, tensor *const *outs,
                    const tensor *const *ins);
int cpu_reduce(reduce_kind kind, const tensor *in, tensor *out);
int cpu_gemm(const gemm_args *g);
int cpu_conv2d_forward(const conv_geometry *g, const tensor *x, const tensor *w, const tensor *bias,
                       tensor *y);
int cpu_conv2d_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w,
                              const tensor *bias, tensor *dx);
int cpu_conv2d_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy,
                               tensor *dw);

// C (M x N, row stride ldc) = [C +] A @ B, with A(i,k) = a[i*ars + k*acs] and
// B(k,j) = b[k*brs + j*bcs]. Serial; the _parallel forms split the work over threads.
void cpu_gemm_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t ars, int64_t acs,
                  const float *b, int64_t brs, int64_t bcs, float *c, int64_t ldc, bool accumulate);
void cpu_gemm_f64(int64_t M, int64_t N, int64_t K, const double *a, int64_t ars, int64_t acs,
                  const double *b, int64_t brs, int64_t bcs, double *c, int64_t ldc,
                  bool accumulate);
void cpu_gemm_parallel_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t ars,
                           int64_t acs, const float *b, int64_t brs, int64_t bcs, float *c,
                           int64_t ldc, bool accumulate);
void cpu_gemm_parallel_f64(int64_t M, int64_t N, int64_t K, const double *a, int64_t ars,
                           int64_t acs, const double *b, int64_t brs, int64_t bcs, double *c,
                           int64_t ldc, bool accumulate);
// The same over columns in groups of gn (a multiple of 16 for float, 8 for double, or >= N):
// column j of B at b + (j / gn) * b_gs + (j % gn) * bcs, of C at c + (j / gn) * c_gs + (j % gn).
void cpu_gemm_groups_parallel_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t ars,
                                  int64_t acs, const float *b, int64_t brs, int64_t bcs,
                                  int64_t b_gs, float *c, int64_t ldc, int64_t c_gs, int64_t gn,
                                  bool accumulate);
void cpu_gemm_groups_parallel_f64(int64_t M, int64_t N, int64_t K, const double *a, int64_t ars,
                                  int64_t acs, const double *b, int64_t brs, int64_t bcs,
                                  int64_t b_gs, double *c, int64_t ldc, int64_t c_gs, int64_t gn,
                                  bool accumulate);
// An implicit GEMM: B is never stored; pack writes rows [pc, pc + kc) of its columns
// [j0, j0 + nc) into bp as the GEMM packs B, in strips of CPU_GEMM_NR(T) columns (the last strip
// zero-padded), each strip kc rows of CPU_GEMM_NR(T) values. C's columns come in groups as above.
// Returns -1 when no memory could be found for packing (nothing else fails).
#define CPU_GEMM_NR(T) ((int)(64 / sizeof(T)))
typedef void (*cpu_pack_b_f32)(const void *ctx, int64_t pc, int64_t kc, int64_t j0, int64_t nc,
                               float *bp);
typedef void (*cpu_pack_b_f64)(const void *ctx, int64_t pc, int64_t kc, int64_t j0, int64_t nc,
                               double *bp);
int cpu_gemm_implicit_parallel_f32(int64_t M, int64_t N, int64_t K, const float *a, int64_t ars,
                                   int64_t acs, cpu_pack_b_f32 pack, const void *ctx, float *c,
                                   int64_t ldc, int64_t c_gs, int64_t gn, bool accumulate);
int cpu_gemm_implicit_parallel_f64(int64_t M, int64_t N, int64_t K, const double *a, int64_t ars,
                                   int64_t acs, cpu_pack_b_f64 pack, const void *ctx, double *c,
                                   int64_t ldc, int64_t c_gs, int64_t gn, bool accumulate);
// The GEMM micro-kernel in use: 2 AVX-512, 1 AVX2 + FMA, 0 SSE2 (the best this CPU has, unless
// set). cpu_gemm_set_isa picks one (tests run each the CPU can); -1 if the CPU lacks it.
int cpu_gemm_isa(void);
int cpu_gemm_set_isa(int isa);

// dst[k * dst_stride + j] = src[j][k] for j, k < 8: eight rows of 8 floats transposed in
// registers (AVX2 shuffles where the caller is compiled for it; plain code gets the same result).
typedef float cpu_v8f __attribute__((vector_size(32)));
static inline void cpu_transpose8_f32(const float *const *src, float *dst, int64_t dst_stride) {
    cpu_v8f r[8], t[8], u[8];
    for (int j = 0; j < 8; j++) __builtin_memcpy(&r[j], src[j], sizeof(cpu_v8f));
    for (int j = 0; j < 8; j += 2) {
        t[j] = __builtin_shufflevector(r[j], r[j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[j + 1] = __builtin_shufflevector(r[j], r[j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int j = 0; j < 8; j += 4)
        for (int q = 0; q < 2; q++) { // q = 0: from the low pairs, 1: the high pairs
            u[j + 2 * q] =
                __builtin_shufflevector(t[j + q], t[j + q + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[j + 2 * q + 1] =
                __builtin_shufflevector(t[j + q], t[j + q + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int k = 0; k < 4; k++) { // u[k]: rows k (low half) and k + 4 (high half)
        cpu_v8f lo = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        cpu_v8f hi = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        __builtin_memcpy(dst + k * dst_stride, &lo, sizeof lo);
        __builtin_memcpy(dst + (k + 4) * dst_stride, &hi, sizeof hi);
    }
}
