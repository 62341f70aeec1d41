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

// The padded, phase-split layout of one sample: rows hp, row length wq per phase, size; and
// where each im2col row (c, r, s) starts in it.
static void CAT(split_dims_, SUFFIX)(const conv_geometry *g, int64_t *hp, int64_t *wq,
                                     int64_t *size) {
    int64_t sw = g->stride_w, wp = (g->OW - 1) * sw + g->S;
    *hp = (g->OH - 1) * g->stride_h + g->R;
    *wq = (wp + sw - 1) / sw;
    *size = g->C * *hp * sw * *wq;
}
static void CAT(split_offsets_, SUFFIX)(const conv_geometry *g, int64_t hp, int64_t wq,
                                        int64_t *koff) {
    int64_t sw = g->stride_w;
    for (int64_t c = 0, k = 0; c < g->C; c++)
        for (int64_t r = 0; r < g->R; r++)
            for (int64_t s = 0; s < g->S; s++, k++)
                koff[k] = ((c * hp + r) * sw + s % sw) * wq + s / sw;
}

// col2im of one sample: x = the sum of each im2col row's values at the pixels its tap reads.
// They are added in the padded, phase-split layout (xp, of the sample's size), where a row's
// pixels along an output row are contiguous, then the inside of xp is copied out to x. Each
// pixel receives its terms in the order of the rows, as a direct scatter would add them.
__attribute__((target_clones("arch=x86-64-v3", "default"))) static void
CAT(col2im_, SUFFIX)(const conv_geometry *g, const T *col, T *x, const int64_t *koff, T *xp) {
    int64_t ohw = g->OH * g->OW, sw = g->stride_w, crs = g->C * g->R * g->S, hp, wq, size;
    CAT(split_dims_, SUFFIX)(g, &hp, &wq, &size);
    memset(xp, 0, (size_t)size * sizeof(T));
    int64_t row = g->stride_h * sw * wq, ow_n = g->OW;
    for (int64_t k = 0; k < crs; k++) {
        const T *src = col + k * ohw;
        T *dst = xp + koff[k];
        for (int64_t oh = 0; oh < g->OH; oh++, src += ow_n, dst += row)
            for (int64_t ow = 0; ow < ow_n; ow++) dst[ow] += src[ow];
    }
    // pixels past the last tap (a 'valid' convolution's margin) are read by none: 0
    int64_t wp = (g->OW - 1) * sw + g->S;
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t ih = 0; ih < g->H; ih++) {
            T *out = x + (c * g->H + ih) * g->W;
            int64_t ihp = ih + g->pad_top;
            const T *in = xp + (c * hp + ihp) * sw * wq;
            for (int64_t iw = 0; iw < g->W; iw++) {
                int64_t iwp = iw + g->pad_left;
                out[iw] = ihp < hp && iwp < wp ? in[iwp % sw * wq + iwp / sw] : 0;
            }
        }
}

// x zero-padded and split into column phases (scratch slot 2), and each im2col row's offset in
// a sample of it (slot 3): the context both implicit packers read. NULL when out of memory.
static T *CAT(pad_split_, SUFFIX)(const conv_geometry *g, const T *x,
                                  CAT(implicit_, SUFFIX) * ctx) {
    int64_t crs = g->C * g->R * g->S, sw = g->stride_w, hp, wq, xp_size;
    CAT(split_dims_, SUFFIX)(g, &hp, &wq, &xp_size);
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
    CAT(split_offsets_, SUFFIX)(g, hp, wq, koff);
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
static int CAT(dx_sample_, SUFFIX)(const conv_geometry *g, const T *dy, const T *w, T *dx, T *cols,
                                   const int64_t *koff, int64_t n, int t, bool parallel) {
    int64_t crs = g->C * g->R * g->S, ohw = g->OH * g->OW, hp, wq, size;
    int64_t x_size = g->C * g->H * g->W, y_size = g->K * ohw;
    CAT(split_dims_, SUFFIX)(g, &hp, &wq, &size);
    T *col = cols + t * crs * ohw, *xp = cpu_scratch(3, (size_t)size * sizeof(T));
    if (!xp) return -1;
    (parallel ? CAT(cpu_gemm_parallel_, SUFFIX) : CAT(cpu_gemm_, SUFFIX))(
        crs, ohw, g->K, w, 1, crs, dy + n * y_size, ohw, 1, col, ohw, false);
    CAT(col2im_, SUFFIX)(g, col, dx + n * x_size, koff, xp);
    return 0;
}

// Each im2col row's offset in the padded, phase-split layout col2im adds in (scratch slot 4).
static int64_t *CAT(dx_offsets_, SUFFIX)(const conv_geometry *g) {
    int64_t hp, wq, size;
    CAT(split_dims_, SUFFIX)(g, &hp, &wq, &size);
    int64_t *koff = cpu_scratch(4, (size_t)(g->C * g->R * g->S) * sizeof(int64_t));
    if (koff) CAT(split_offsets_, SUFFIX)(g, hp, wq, koff);
    return koff;
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
    const int64_t *koff = CAT(dx_offsets_, SUFFIX)(g);
    int failed = 0;
    if (!cols || !koff) {
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
        for (int64_t s = 0; s < ns; s++) {
            int64_t hp, wq, size;
            CAT(split_dims_, SUFFIX)(g, &hp, &wq, &size);
            T *xp = cpu_scratch(3, (size_t)size * sizeof(T));
            if (xp)
                CAT(col2im_, SUFFIX)(g, cols + s * per, dx + (n0 + s) * x_size, koff, xp);
            else {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    if (failed) err_set("conv: out of host memory for col2im's padded buffer");
    return failed ? -1 : 0;
}

// One pass. `a` and `b` are the pass's two inputs, `out` its output.
static int CAT(conv_, SUFFIX)(conv_pass pass, const conv_geometry *g, const T *a, const T *b,
                              T *out) {
    if (pass == CONV_FORWARD) return CAT(conv_forward_implicit_, SUFFIX)(g, a, b, out);
    if (pass == CONV_BACKWARD_WEIGHT)
        return CAT(conv_backward_weight_implicit_, SUFFIX)(g, a, b, out);
    if (g->stride_h == 1 && g->stride_w == 1 && g->pad_top < g->R && g->pad_left < g->S) {
        // stride 1: dx is the forward convolution of dy with the kernel flipped and its two
        // channel axes swapped, padded by R - 1 - pad_top and S - 1 - pad_left (no col2im)
        int64_t rs = g->R * g->S;
        T *wf = cpu_scratch(4, (size_t)(g->K * g->C * rs) * sizeof(T));
        if (!wf) {
            err_set("conv: out of host memory for the flipped kernel");
            return -1;
        }
        for (int64_t k = 0; k < g->K; k++)
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t i = 0; i < rs; i++)
                    wf[(c * g->K + k) * rs + i] = b[(k * g->C + c) * rs + rs - 1 - i];
        conv_geometry t = {.N = g->N,
                           .C = g->K,
                           .H = g->OH,
                           .W = g->OW,
                           .K = g->C,
                           .R = g->R,
                           .S = g->S,
                           .OH = g->H,
                           .OW = g->W,
                           .stride_h = 1,
                           .stride_w = 1,
                           .pad_top = g->R - 1 - g->pad_top,
                           .pad_left = g->S - 1 - g->pad_left};
        return CAT(conv_forward_implicit_, SUFFIX)(&t, a, wf, out);
    }
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
    const int64_t *koff = CAT(dx_offsets_, SUFFIX)(g);
    if (!cols || !koff) {
        err_set("conv: out of host memory for the %lld x %lld im2col buffer", (long long)crs,
                (long long)ohw);
        return -1;
    }
    int failed = 0;
    if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t n = 0; n < g->N; n++) {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            if (CAT(dx_sample_, SUFFIX)(g, a, b, out, cols, koff, n, t, false)) {
#pragma omp atomic write
                failed = 1;
            }
        }
    } else {
        for (int64_t n = 0; n < g->N && !failed; n++)
            failed = CAT(dx_sample_, SUFFIX)(g, a, b, out, cols, koff, n, 0, true);
    }
    if (failed) err_set("conv: out of host memory for col2im's padded buffer");
    return failed ? -1 : 0;
}

#undef CAT
#undef CAT_
