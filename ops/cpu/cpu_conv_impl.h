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

// Cloned for AVX2 (picked at run time): the stride-2 scatters are 8-float vectors, which
// baseline x86-64 code would spill through the stack element by element.
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

// The forward pass as an implicit GEMM: y = w @ im2col(x) over the whole batch (the samples'
// columns side by side), im2col's rows copied straight into the GEMM's packed panels. x is first
// copied once, zero-padded and split into its stride_w column phases: then the pixels of one
// output row for kernel tap (r, s) are contiguous (phase s % stride_w, from ow + s / stride_w),
// and packing is plain copies, with no bounds checks or strided loads.
typedef struct {
    const conv_geometry *g;
    const T *xp;         // (N, C, Hp, stride_w, Wq), Hp = (OH - 1) * stride_h + R
    const int64_t *koff; // where each im2col row (c, r, s) starts in a sample's xp
    int64_t hp, wq, xp_size;
} CAT(implicit_, SUFFIX);

// cpu_pack_b for im2col(x): rows [pc, pc + kc) of the batch's columns [j0, j0 + nc) (sample
// j / (OH * OW), pixel j % (OH * OW)). A strip's pixels fall in a few runs along output rows,
// found once per strip; each row k copies each run.
__attribute__((target_clones("arch=x86-64-v3", "default"))) static void
CAT(pack_im2col_, SUFFIX)(const void *ctx_, int64_t pc, int64_t kc, int64_t j0, int64_t nc, T *bp) {
    const CAT(implicit_, SUFFIX) *ctx = ctx_;
    const conv_geometry *g = ctx->g;
    enum { NRC = CPU_GEMM_NR(T) };
    int64_t ohw = g->OH * g->OW, sw = g->stride_w;
    int64_t base[NRC];
    int at[NRC], len[NRC];
    for (int64_t s0 = 0; s0 < nc; s0 += NRC) {
        int nr = (int)(nc - s0 < NRC ? nc - s0 : NRC), runs = 0;
        for (int q = 0; q < nr; runs++) {
            int64_t j = j0 + s0 + q, p = j % ohw, oh = p / g->OW, ow = p % g->OW;
            len[runs] = (int)(g->OW - ow < nr - q ? g->OW - ow : nr - q);
            at[runs] = q;
            base[runs] = j / ohw * ctx->xp_size + oh * g->stride_h * sw * ctx->wq + ow;
            q += len[runs];
        }
        const int64_t *koff = ctx->koff + pc;
        if (nr == NRC && runs == 1) // the strip is one run: NRC values in a row
            for (int64_t k = 0; k < kc; k++)
                memcpy(bp + k * NRC, ctx->xp + koff[k] + base[0], NRC * sizeof(T));
        else if (nr == NRC && runs == 2 && len[0] == NRC / 2) // two half rows (8x8 outputs)
            for (int64_t k = 0; k < kc; k++) {
                memcpy(bp + k * NRC, ctx->xp + koff[k] + base[0], NRC / 2 * sizeof(T));
                memcpy(bp + k * NRC + NRC / 2, ctx->xp + koff[k] + base[1], NRC / 2 * sizeof(T));
            }
        else
            for (int64_t k = 0; k < kc; k++) {
                T *dst = bp + k * NRC;
                for (int u = 0; u < runs; u++)
                    for (int q = 0; q < len[u]; q++)
                        dst[at[u] + q] = ctx->xp[koff[k] + base[u] + q];
                for (int q = nr; q < NRC; q++) dst[q] = 0;
            }
        bp += kc * NRC;
    }
}

// x zero-padded and split into column phases (scratch slot 2), and each im2col row's offset in
// a sample of it (slot 3): the context both implicit packers read. NULL when out of memory.
static T *CAT(pad_split_, SUFFIX)(const conv_geometry *g, const T *x,
                                  CAT(implicit_, SUFFIX) * ctx) {
    int64_t crs = g->C * g->R * g->S, sw = g->stride_w;
    int64_t hp = (g->OH - 1) * g->stride_h + g->R, wp = (g->OW - 1) * sw + g->S;
    int64_t wq = (wp + sw - 1) / sw, xp_size = g->C * hp * sw * wq;
    T *xp = cpu_scratch(2, (size_t)(g->N * xp_size) * sizeof(T));
    int64_t *koff = cpu_scratch(3, (size_t)crs * sizeof(int64_t));
    if (!xp || !koff) {
        err_set("conv: out of host memory for the %lld x %lld padded input", (long long)g->N,
                (long long)xp_size);
        return NULL;
    }
    // xp[n][c][ihp][phase][m] = x[n][c][ihp - pad_top][m * sw + phase - pad_left], or 0
#pragma omp parallel for schedule(static) if (g->N * xp_size > 65536)
    for (int64_t nc_ = 0; nc_ < g->N * g->C; nc_++) {
        const T *xs = x + nc_ * g->H * g->W;
        T *dst = xp + nc_ * hp * sw * wq;
        for (int64_t ihp = 0; ihp < hp; ihp++) {
            int64_t ih = ihp - g->pad_top;
            for (int64_t ph = 0; ph < sw; ph++, dst += wq)
                for (int64_t m = 0; m < wq; m++) {
                    int64_t iw = m * sw + ph - g->pad_left;
                    dst[m] = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W ? xs[ih * g->W + iw] : 0;
                }
        }
    }
    for (int64_t c = 0, k = 0; c < g->C; c++)
        for (int64_t r = 0; r < g->R; r++)
            for (int64_t s = 0; s < g->S; s++, k++)
                koff[k] = ((c * hp + r) * sw + s % sw) * wq + s / sw;
    *ctx = (CAT(implicit_, SUFFIX)){g, xp, koff, hp, wq, xp_size};
    return xp;
}

static int CAT(conv_forward_implicit_, SUFFIX)(const conv_geometry *g, const T *x, const T *w,
                                               T *y) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW;
    CAT(implicit_, SUFFIX) ctx;
    T *xp = CAT(pad_split_, SUFFIX)(g, x, &ctx);
    if (!xp) return -1;
    // the batch as one GEMM when a sample's columns are whole strips (a strip's columns are
    // contiguous in y), else one GEMM per sample
    bool whole = ohw % CPU_GEMM_NR(T) == 0 || g->N == 1;
    int64_t per = whole ? g->N : 1, y_size = g->K * ohw;
    for (int64_t n = 0; n < g->N; n += per) {
        ctx.xp = xp + n * ctx.xp_size;
        if (CAT(cpu_gemm_implicit_parallel_, SUFFIX)(g->K, per * ohw, crs, w, crs, 1,
                                                     CAT(pack_im2col_, SUFFIX), &ctx,
                                                     y + n * y_size, ohw, y_size, ohw, false)) {
            err_set("conv: out of host memory for the GEMM's packing buffers");
            return -1;
        }
    }
    return 0;
}

// cpu_pack_b for im2col(x)^T, the weight gradient's B: rows are the batch's pixels [pc, pc + kc)
// (sample p / (OH * OW)), columns the im2col rows [j0, j0 + nc). Eight pixels along one output
// row are eight contiguous values of each column: 16 columns x 8 pixels are two 8 x 8
// transposes (float); anything else element by element.
__attribute__((target_clones("arch=x86-64-v3", "default"))) static void
CAT(pack_im2col_t_, SUFFIX)(const void *ctx_, int64_t pc, int64_t kc, int64_t j0, int64_t nc,
                            T *bp) {
    const CAT(implicit_, SUFFIX) *ctx = ctx_;
    const conv_geometry *g = ctx->g;
    enum { NRC = CPU_GEMM_NR(T) };
    static const T zeros[8];
    int64_t ohw = g->OH * g->OW, row = g->stride_h * g->stride_w * ctx->wq;
    for (int64_t s0 = 0; s0 < nc; s0 += NRC) {
        int nr = (int)(nc - s0 < NRC ? nc - s0 : NRC);
        const int64_t *koff = ctx->koff + j0 + s0;
        int64_t k = 0;
        if (sizeof(T) == 4 && g->OW % 8 == 0)
            for (; k + 8 <= kc && (pc + k) % 8 == 0; k += 8) {
                int64_t p = pc + k, n = p / ohw, oh = p % ohw / g->OW, ow = p % g->OW;
                const T *base = ctx->xp + n * ctx->xp_size + oh * row + ow;
                for (int h = 0; h < 2; h++) {
                    const float *src[8];
                    for (int j = 0; j < 8; j++)
                        src[j] = (const float *)(8 * h + j < nr ? base + koff[8 * h + j] : zeros);
                    cpu_transpose8_f32(src, (float *)bp + k * NRC + 8 * h, NRC);
                }
            }
        for (; k < kc; k++) {
            int64_t p = pc + k, n = p / ohw, oh = p % ohw / g->OW, ow = p % g->OW;
            const T *base = ctx->xp + n * ctx->xp_size + oh * row + ow;
            for (int j = 0; j < NRC; j++) bp[k * NRC + j] = j < nr ? base[koff[j]] : 0;
        }
        bp += kc * NRC;
    }
}

// dw = dy @ im2col(x)^T as one GEMM over the whole batch's pixels: no per-sample partial sums.
// dy (N, K, OH*OW) is first laid out as (K, N*OH*OW) (scratch slot 4).
static int CAT(conv_backward_weight_implicit_, SUFFIX)(const conv_geometry *g, const T *x,
                                                       const T *dy, T *dw) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW, np = g->N * ohw;
    CAT(implicit_, SUFFIX) ctx;
    if (!CAT(pad_split_, SUFFIX)(g, x, &ctx)) return -1;
    T *dyt = cpu_scratch(4, (size_t)(g->K * np) * sizeof(T));
    if (!dyt) {
        err_set("conv: out of host memory for the %lld x %lld output gradient", (long long)g->K,
                (long long)np);
        return -1;
    }
#pragma omp parallel for schedule(static) if (g->K * np > 65536)
    for (int64_t k = 0; k < g->K; k++)
        for (int64_t n = 0; n < g->N; n++)
            memcpy(dyt + k * np + n * ohw, dy + (n * g->K + k) * ohw, (size_t)ohw * sizeof(T));
    if (CAT(cpu_gemm_implicit_parallel_, SUFFIX)(
            g->K, crs, np, dyt, np, 1, CAT(pack_im2col_t_, SUFFIX), &ctx, dw, crs, 0, crs, false)) {
        err_set("conv: out of host memory for the GEMM's packing buffers");
        return -1;
    }
    return 0;
}

// The input gradient, dx = col2im(w^T @ dy). Sample n on thread slot t (its im2col-shaped
// buffer): its GEMM on this thread, or split over all threads (`parallel`, when the samples are
// not spread over the threads; never a parallel region inside another, see cpu_gemm).
static void CAT(dx_sample_, SUFFIX)(const conv_geometry *g, const T *dy, const T *w, T *dx, T *cols,
                                    int64_t n, int t, bool parallel) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW;
    int64_t x_size = g->C * g->H * g->W, y_size = g->K * ohw;
    T *col = cols + t * crs * ohw;
    (parallel ? CAT(cpu_gemm_parallel_, SUFFIX) : CAT(cpu_gemm_, SUFFIX))(
        crs, ohw, g->K, w, 1, crs, dy + n * y_size, ohw, 1, col, ohw, false);
    CAT(col2im_, SUFFIX)(g, col, dx + n * x_size);
}

// The input gradient over groups of samples, one GEMM per group, the threads splitting its
// columns: a sample's OH*OW columns are whole micro-kernel strips, so the group's im2col-shaped
// buffers side by side are one matrix whose columns come in groups (cpu_gemm_groups_parallel),
// and the weights are packed once per group instead of once per sample.
static int CAT(dx_batched_, SUFFIX)(const conv_geometry *g, const T *dy, const T *w, T *dx) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW, per = crs * ohw;
    int64_t x_size = g->C * g->H * g->W, y_size = g->K * ohw;
    // buffers of at most about 1 M elements, the batch cut into groups of equal size that are a
    // multiple of the threads (each col2im is one sample per thread)
    int64_t threads = cpu_threads(), n_groups = (g->N * per + ((int64_t)1 << 20) - 1) >> 20;
    n_groups = n_groups < 1 ? 1 : n_groups > g->N ? g->N : n_groups;
    int64_t group = (g->N + n_groups - 1) / n_groups;
    if (group > threads) group = (group + threads - 1) / threads * threads;
    group = group > g->N ? g->N : group;
    T *cols = cpu_scratch(2, (size_t)(group * per) * sizeof(T));
    if (!cols) {
        err_set("conv: out of host memory for the %lld x %lld im2col buffer", (long long)crs,
                (long long)(group * ohw));
        return -1;
    }
    for (int64_t n0 = 0; n0 < g->N; n0 += group) { // [col(n0) ...] = w^T @ [dy(n0) ...]
        int64_t ns = g->N - n0 < group ? g->N - n0 : group;
        CAT(cpu_gemm_groups_parallel_, SUFFIX)
        (crs, ns * ohw, g->K, w, 1, crs, dy + n0 * y_size, ohw, 1, y_size, cols, ohw, per, ohw,
         false);
#pragma omp parallel for schedule(static) if (ns > 1)
        for (int64_t s = 0; s < ns; s++)
            CAT(col2im_, SUFFIX)(g, cols + s * per, dx + (n0 + s) * x_size);
    }
    return 0;
}

// One pass. `a` and `b` are the pass's two inputs, `out` its output.
static int CAT(conv_, SUFFIX)(conv_pass pass, const conv_geometry *g, const T *a, const T *b,
                              T *out) {
    if (pass == CONV_FORWARD) return CAT(conv_forward_implicit_, SUFFIX)(g, a, b, out);
    if (pass == CONV_BACKWARD_WEIGHT)
        return CAT(conv_backward_weight_implicit_, SUFFIX)(g, a, b, out);
    // few output pixels per sample: packing the weights for every sample costs more than the
    // batch's one GEMM (measured: large images keep their per-sample GEMMs, which stay in cache)
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW;
    if (g->N > 1 && ohw <= 256 && ohw % CPU_GEMM_NR(T) == 0)
        return CAT(dx_batched_, SUFFIX)(g, a, b, out);
    int threads = g->N > 1 ? cpu_threads() : 1;
    if (threads > g->N) threads = (int)g->N;
    // The calling thread's scratch, kept between calls: a fresh malloc of these sizes is an
    // mmap, and its munmap a TLB shootdown on every core.
    T *cols = cpu_scratch(2, (size_t)(crs * ohw * threads) * sizeof(T));
    if (!cols) {
        err_set("conv: out of host memory for the %lld x %lld im2col buffer", (long long)crs,
                (long long)ohw);
        return -1;
    }
    if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t n = 0; n < g->N; n++) {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            CAT(dx_sample_, SUFFIX)(g, a, b, out, cols, n, t, false);
        }
    } else {
        for (int64_t n = 0; n < g->N; n++) CAT(dx_sample_, SUFFIX)(g, a, b, out, cols, n, 0, true);
    }
    return 0;
}

#undef CAT
#undef CAT_
