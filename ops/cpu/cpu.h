// Internals shared by the CPU backend's files.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "../backend.h"

static inline void *cpu_data(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)tensor_dtype_size(t->dtype);
}

int cpu_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins);
int cpu_reduce(reduce_kind kind, const tensor *in, tensor *out);
int cpu_gemm(const gemm_args *g);
int cpu_conv2d_forward(const conv_geometry *g, const tensor *x, const tensor *w, tensor *y);
int cpu_conv2d_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w,
                              tensor *dx);
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
int cpu_threads(void);
// The GEMM micro-kernel in use: 2 AVX-512, 1 AVX2 + FMA, 0 SSE2 (the best this CPU has, unless
// set). cpu_gemm_set_isa picks one (tests run each the CPU can); -1 if the CPU lacks it.
int cpu_gemm_isa(void);
int cpu_gemm_set_isa(int isa);
// Per-thread scratch buffer `slot` (0..3) of at least `nbytes`, kept for the thread's life and
// freed when it exits. NULL when out of memory.
void *cpu_scratch(int slot, size_t nbytes);
