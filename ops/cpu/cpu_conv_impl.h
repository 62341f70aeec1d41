// The convolution passes, written once and instantiated by cpu_conv.c for float and double
// (T, SUFFIX defined there). x: (N, C, H, W), w: (K, C, R, S), y: (N, K, OH, OW); col:
// (C*R*S, OH*OW) per sample; im2col + GEMM, one sample per thread.
#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)

// The output columns ow whose input column ow * stride - pad + s lies inside [0, W): [*lo, *hi).
static inline void CAT(valid_cols_, SUFFIX)(const conv_geometry *g, int64_t s, int64_t *lo,
                                            int64_t *hi) {
    int64_t off = s - g->pad_left; // iw = ow * stride + off
    int64_t a = off >= 0 ? 0 : (-off + g->stride_w - 1) / g->stride_w;
    int64_t b = g->W - 1 - off < 0 ? 0 : (g->W - 1 - off) / g->stride_w + 1;
    *lo = a < g->OW ? a : g->OW;
    *hi = b < *lo ? *lo : b > g->OW ? g->OW : b;
}

// Cloned for AVX2 (picked at run time): the stride-2 gathers and scatters below are 8-float
// vectors, which baseline x86-64 code would spill through the stack element by element.
__attribute__((target_clones("arch=x86-64-v3", "default"))) static void
CAT(im2col_, SUFFIX)(const conv_geometry *g, const T *x, T *col) {
    int64_t ohw = g->OH * g->OW, sw = g->stride_w;
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t r = 0; r < g->R; r++)
            for (int64_t s = 0; s < g->S; s++) {
                T *row = col + ((c * g->R + r) * g->S + s) * ohw;
                int64_t lo, hi, off = s - g->pad_left;
                CAT(valid_cols_, SUFFIX)(g, s, &lo, &hi);
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    int64_t ih = oh * g->stride_h - g->pad_top + r;
                    T *dst = row + oh * g->OW;
                    if (ih < 0 || ih >= g->H) {
                        memset(dst, 0, (size_t)g->OW * sizeof(T));
                        continue;
                    }
                    const T *src = x + (c * g->H + ih) * g->W + off;
                    for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
                    if (sw == 1)
                        memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(T));
                    else if (sw == 2) // the row's elements from src + 2 lo on: W - off - 2 lo
                        CAT(gather2_, SUFFIX)(dst + lo, src + 2 * lo, hi - lo, g->W - off - 2 * lo);
                    else
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * sw];
                    for (int64_t ow = hi; ow < g->OW; ow++) dst[ow] = 0;
                }
            }
}

__attribute__((target_clones("arch=x86-64-v3", "default"))) static void
CAT(col2im_, SUFFIX)(const conv_geometry *g, const T *col, T *x) {
    int64_t ohw = g->OH * g->OW, sw = g->stride_w;
    memset(x, 0, (size_t)(g->C * g->H * g->W) * sizeof(T));
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t r = 0; r < g->R; r++)
            for (int64_t s = 0; s < g->S; s++) {
                const T *row = col + ((c * g->R + r) * g->S + s) * ohw;
                int64_t lo, hi, off = s - g->pad_left;
                CAT(valid_cols_, SUFFIX)(g, s, &lo, &hi);
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    int64_t ih = oh * g->stride_h - g->pad_top + r;
                    if (ih < 0 || ih >= g->H) continue;
                    T *dst = x + (c * g->H + ih) * g->W + off;
                    const T *src = row + oh * g->OW;
                    if (sw == 2) CAT(scatter_add2_, SUFFIX)
                    (dst + 2 * lo, src + lo, hi - lo, g->W - off - 2 * lo);
                    else for (int64_t ow = lo; ow < hi; ow++) dst[ow * sw] += src[ow];
                }
            }
}

// Sample n of one pass on thread slot t (its im2col buffer and weight-gradient partial sum):
// its GEMM on this thread, or split over all threads (`parallel`, when the samples are not
// spread over the threads; never a parallel region inside another, see cpu_gemm).
static void CAT(conv_sample_, SUFFIX)(conv_pass pass, const conv_geometry *g, const T *a,
                                      const T *b, T *out, T *cols, T *dws, int64_t n, int t,
                                      bool parallel) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW;
    int64_t x_size = g->C * g->H * g->W, y_size = g->K * ohw, w_size = g->K * crs;
    void (*gemm)(int64_t, int64_t, int64_t, const T *, int64_t, int64_t, const T *, int64_t,
                 int64_t, T *, int64_t, bool) =
        parallel ? CAT(cpu_gemm_parallel_, SUFFIX) : CAT(cpu_gemm_, SUFFIX);
    T *col = cols + t * crs * ohw;
    if (pass == CONV_FORWARD) { // a = x, b = w: y[n] = w @ col
        CAT(im2col_, SUFFIX)(g, a + n * x_size, col);
        gemm(g->K, ohw, crs, b, crs, 1, col, ohw, 1, out + n * y_size, ohw, false);
    } else if (pass == CONV_BACKWARD_INPUT) { // a = dy, b = w: col = w^T @ dy[n]
        gemm(crs, ohw, g->K, b, 1, crs, a + n * y_size, ohw, 1, col, ohw, false);
        CAT(col2im_, SUFFIX)(g, col, out + n * x_size);
    } else { // a = x, b = dy: dw += dy[n] @ col^T
        CAT(im2col_, SUFFIX)(g, a + n * x_size, col);
        gemm(g->K, crs, ohw, b + n * y_size, ohw, 1, col, 1, ohw, dws + t * w_size, crs, true);
    }
}

// The forward and input-gradient passes over groups of samples, one GEMM per group, the threads
// splitting its columns: a sample's OH*OW columns are whole micro-kernel strips, so the group's
// im2col buffers (or outputs) side by side are one matrix whose columns come in groups
// (cpu_gemm_groups_parallel), and the weights are packed once per group instead of once per
// sample. (The weight gradient stays per sample: batching its sum measured slower.)
static int CAT(conv_batched_, SUFFIX)(conv_pass pass, const conv_geometry *g, const T *a,
                                      const T *b, T *out) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW, per = crs * ohw;
    int64_t x_size = g->C * g->H * g->W, y_size = g->K * ohw;
    int64_t group = ((int64_t)1 << 20) / per; // im2col buffers of at most 1 M elements
    group = group < 1 ? 1 : group > g->N ? g->N : group;
    T *cols = cpu_scratch(2, (size_t)(group * per) * sizeof(T));
    if (!cols) {
        err_set("conv: out of host memory for the %lld x %lld im2col buffer", (long long)crs,
                (long long)(group * ohw));
        return -1;
    }
    for (int64_t n0 = 0; n0 < g->N; n0 += group) {
        int64_t ns = g->N - n0 < group ? g->N - n0 : group;
        if (pass == CONV_FORWARD) { // y[n0 ..] = w @ [col(n0) col(n0 + 1) ...]
#pragma omp parallel for schedule(static) if (ns > 1)
            for (int64_t s = 0; s < ns; s++)
                CAT(im2col_, SUFFIX)(g, a + (n0 + s) * x_size, cols + s * per);
            CAT(cpu_gemm_groups_parallel_, SUFFIX)
            (g->K, ns * ohw, crs, b, crs, 1, cols, ohw, 1, per, out + n0 * y_size, ohw, y_size, ohw,
             false);
        } else { // [col(n0) ...] = w^T @ [dy(n0) ...], then each col2im
            CAT(cpu_gemm_groups_parallel_, SUFFIX)
            (crs, ns * ohw, g->K, b, 1, crs, a + n0 * y_size, ohw, 1, y_size, cols, ohw, per, ohw,
             false);
#pragma omp parallel for schedule(static) if (ns > 1)
            for (int64_t s = 0; s < ns; s++)
                CAT(col2im_, SUFFIX)(g, cols + s * per, out + (n0 + s) * x_size);
        }
    }
    return 0;
}

// One pass. `a` and `b` are the pass's two inputs, `out` its output.
static int CAT(conv_, SUFFIX)(conv_pass pass, const conv_geometry *g, const T *a, const T *b,
                              T *out) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW, w_size = g->K * crs;
    // few output pixels per sample: packing the weights for every sample costs more than the
    // batch's one GEMM (measured: large images keep their per-sample GEMMs, which stay in cache)
    if (g->N > 1 && pass != CONV_BACKWARD_WEIGHT && ohw <= 256 &&
        ohw % (sizeof(T) == 4 ? 16 : 8) == 0)
        return CAT(conv_batched_, SUFFIX)(pass, g, a, b, out);
    int threads = g->N > 1 ? cpu_threads() : 1;
    if (threads > g->N) threads = (int)g->N;
    // The calling thread's scratch (slots 2 and 3; the GEMM uses 0 and 1), kept between calls:
    // a fresh malloc of these sizes is an mmap, and its munmap a TLB shootdown on every core.
    T *cols = cpu_scratch(2, (size_t)(crs * ohw * threads) * sizeof(T));
    T *dws = pass == CONV_BACKWARD_WEIGHT ? cpu_scratch(3, (size_t)(w_size * threads) * sizeof(T))
                                          : NULL;
    if (!cols || (pass == CONV_BACKWARD_WEIGHT && !dws)) {
        err_set("conv: out of host memory for the %lld x %lld im2col buffer", (long long)crs,
                (long long)ohw);
        return -1;
    }
    if (dws) memset(dws, 0, (size_t)(w_size * threads) * sizeof(T));
    if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t n = 0; n < g->N; n++) {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            CAT(conv_sample_, SUFFIX)(pass, g, a, b, out, cols, dws, n, t, false);
        }
    } else {
        for (int64_t n = 0; n < g->N; n++)
            CAT(conv_sample_, SUFFIX)(pass, g, a, b, out, cols, dws, n, 0, true);
    }
    if (pass == CONV_BACKWARD_WEIGHT) {
        for (int64_t i = 0; i < w_size; i++) {
            T s = 0;
            for (int t = 0; t < threads; t++) s += dws[t * w_size + i];
            out[i] = s;
        }
    }
    return 0;
}

#undef CAT
#undef CAT_
