// Convolutions as im2col + GEMM, one sample per thread.
// x: (N, C, H, W), w: (K, C, R, S), y: (N, K, OH, OW); col: (C*R*S, OH*OW) per sample.
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define DEFINE_IM2COL(T, SUFFIX)                                                               \
    static void im2col_##SUFFIX(const conv_geometry *g, const T *x, T *col) {                  \
        int64_t ohw = g->OH * g->OW;                                                           \
        for (int64_t c = 0; c < g->C; c++)                                                     \
            for (int64_t r = 0; r < g->R; r++)                                                 \
                for (int64_t s = 0; s < g->S; s++) {                                           \
                    T *row = col + ((c * g->R + r) * g->S + s) * ohw;                          \
                    for (int64_t oh = 0; oh < g->OH; oh++) {                                   \
                        int64_t ih = oh * g->stride_h - g->pad_top + r;                        \
                        T *dst = row + oh * g->OW;                                             \
                        if (ih < 0 || ih >= g->H) {                                            \
                            memset(dst, 0, (size_t)g->OW * sizeof(T));                         \
                            continue;                                                          \
                        }                                                                      \
                        const T *src = x + (c * g->H + ih) * g->W;                             \
                        for (int64_t ow = 0; ow < g->OW; ow++) {                               \
                            int64_t iw = ow * g->stride_w - g->pad_left + s;                   \
                            dst[ow] = iw >= 0 && iw < g->W ? src[iw] : 0;                      \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
    }                                                                                          \
    static void col2im_##SUFFIX(const conv_geometry *g, const T *col, T *x) {                  \
        int64_t ohw = g->OH * g->OW;                                                           \
        memset(x, 0, (size_t)(g->C * g->H * g->W) * sizeof(T));                                \
        for (int64_t c = 0; c < g->C; c++)                                                     \
            for (int64_t r = 0; r < g->R; r++)                                                 \
                for (int64_t s = 0; s < g->S; s++) {                                           \
                    const T *row = col + ((c * g->R + r) * g->S + s) * ohw;                    \
                    for (int64_t oh = 0; oh < g->OH; oh++) {                                   \
                        int64_t ih = oh * g->stride_h - g->pad_top + r;                        \
                        if (ih < 0 || ih >= g->H) continue;                                    \
                        T *dst = x + (c * g->H + ih) * g->W;                                   \
                        const T *src = row + oh * g->OW;                                       \
                        for (int64_t ow = 0; ow < g->OW; ow++) {                               \
                            int64_t iw = ow * g->stride_w - g->pad_left + s;                   \
                            if (iw >= 0 && iw < g->W) dst[iw] += src[ow];                      \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
    }

DEFINE_IM2COL(float, f32)
DEFINE_IM2COL(double, f64)

typedef enum { CONV_FORWARD, CONV_BACKWARD_INPUT, CONV_BACKWARD_WEIGHT } conv_pass;

// One pass for one dtype. `a` and `b` are the pass's two inputs, `out` its output.
#define DEFINE_CONV(T, SUFFIX)                                                                 \
    static int conv_##SUFFIX(conv_pass pass, const conv_geometry *g, const T *a, const T *b,   \
                             T *out) {                                                         \
        int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW;                                 \
        int64_t x_size = g->C * g->H * g->W, y_size = g->K * ohw, w_size = g->K * crs;         \
        int threads = g->N > 1 ? cpu_threads() : 1;                                            \
        if (threads > g->N) threads = (int)g->N;                                               \
        T *cols = malloc((size_t)(crs * ohw * threads) * sizeof(T));                           \
        T *dws = pass == CONV_BACKWARD_WEIGHT                                                  \
                     ? calloc((size_t)(w_size * threads), sizeof(T))                           \
                     : NULL;                                                                   \
        if (!cols || (pass == CONV_BACKWARD_WEIGHT && !dws)) {                                 \
            free(cols);                                                                        \
            free(dws);                                                                         \
            err_set("conv: out of host memory for the %lld x %lld im2col buffer",              \
                    (long long)crs, (long long)ohw);                                           \
            return -1;                                                                         \
        }                                                                                      \
        _Pragma("omp parallel for schedule(static) num_threads(threads) if (threads > 1)")     \
        for (int64_t n = 0; n < g->N; n++) {                                                   \
            int t = 0;                                                                         \
            THREAD_NUM(t);                                                                     \
            T *col = cols + t * crs * ohw;                                                     \
            void (*gemm)(int64_t, int64_t, int64_t, const T *, int64_t, int64_t, const T *,    \
                         int64_t, int64_t, T *, int64_t, bool) =                               \
                threads > 1 ? cpu_gemm_##SUFFIX : cpu_gemm_parallel_##SUFFIX;                  \
            if (pass == CONV_FORWARD) { /* a = x, b = w: y[n] = w @ col */                     \
                im2col_##SUFFIX(g, a + n * x_size, col);                                       \
                gemm(g->K, ohw, crs, b, crs, 1, col, ohw, 1, out + n * y_size, ohw, false);    \
            } else if (pass == CONV_BACKWARD_INPUT) { /* a = dy, b = w: col = w^T @ dy[n] */   \
                gemm(crs, ohw, g->K, b, 1, crs, a + n * y_size, ohw, 1, col, ohw, false);      \
                col2im_##SUFFIX(g, col, out + n * x_size);                                     \
            } else { /* a = x, b = dy: dw += dy[n] @ col^T */                                  \
                im2col_##SUFFIX(g, a + n * x_size, col);                                       \
                gemm(g->K, crs, ohw, b + n * y_size, ohw, 1, col, 1, ohw, dws + t * w_size,    \
                     crs, true);                                                               \
            }                                                                                  \
        }                                                                                      \
        if (pass == CONV_BACKWARD_WEIGHT) {                                                    \
            for (int64_t i = 0; i < w_size; i++) {                                             \
                T s = 0;                                                                       \
                for (int t = 0; t < threads; t++) s += dws[t * w_size + i];                    \
                out[i] = s;                                                                    \
            }                                                                                  \
        }                                                                                      \
        free(cols);                                                                            \
        free(dws);                                                                             \
        return 0;                                                                              \
    }

#ifdef _OPENMP
#define THREAD_NUM(t) (t) = omp_get_thread_num()
#else
#define THREAD_NUM(t) (void)(t)
#endif

DEFINE_CONV(float, f32)
DEFINE_CONV(double, f64)

static int run(conv_pass pass, const conv_geometry *g, const tensor *a, const tensor *b, tensor *out) {
    if (out->dtype == TENSOR_F64)
        return conv_f64(pass, g, cpu_data(a), cpu_data(b), cpu_data(out));
    return conv_f32(pass, g, cpu_data(a), cpu_data(b), cpu_data(out));
}

int cpu_conv2d_forward(const conv_geometry *g, const tensor *x, const tensor *w, tensor *y) {
    return run(CONV_FORWARD, g, x, w, y);
}
int cpu_conv2d_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w, tensor *dx) {
    return run(CONV_BACKWARD_INPUT, g, dy, w, dx);
}
int cpu_conv2d_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy, tensor *dw) {
    return run(CONV_BACKWARD_WEIGHT, g, x, dy, dw);
}
