// The fixed kernels of the CUDA backend, compiled at run time by NVRTC like the rendered
// elementwise ones (ops/cuda/embed.py embeds this file in the library, line for line).
//   reductions: one block per output (or per slice of a long reduction), shared-memory tree
//   igemm<PASS, T>: one tiled GEMM whose tile loaders make it a batched matmul or an
//     implicit-GEMM convolution (forward, input gradient by phase, weight gradient); TF32 form
//     on the tensor cores (mma.sync m16n8k8, FP32 accumulate; and a cp.async multistage form
//     with ldmatrix fragments, BANIS_CUDA_GEMM=pipelined, measured slower) and exact FP32/FP64
//   channel_sums: batch norm's per-channel statistics and its backward's sums, bias gradients
//   conv_bwd_input_direct: the input gradient of a convolution with few input channels
// Shapes: conv x (N, C, H, W), w (K, C, R, S), y (N, K, OH, OW), all contiguous.
#include "abi.h"
#include "primitives.h"

// ---- reductions ---------------------------------------------------------------------------
// Output o's first input element and its own offset.
__device__ __forceinline__ void red_output(const cuda_red_args &a, long long o, long long &base,
                                           long long &ooff) {
    long long rem = o;
    base = ooff = 0;
    for (int d = a.out_nd - 1; d >= 0; d--) {
        long long x = rem % a.out_shape[d];
        rem /= a.out_shape[d];
        base += x * a.out_in_stride[d];
        ooff += x * a.out_stride[d];
    }
}
// The offset of element j of a reduction (any number of reduced dimensions).
__device__ __forceinline__ long long red_offset(const cuda_red_args &a, long long base,
                                                long long j) {
    for (int d = a.red_nd - 1; d >= 0; d--) {
        base += (j % a.red_shape[d]) * a.red_stride[d];
        j /= a.red_shape[d];
    }
    return base;
}
// Sum, or max that propagates NaN.
template <bool MAX> __device__ __forceinline__ double red_step(double acc, double v) {
    return MAX ? ((v > acc || v != v) ? v : acc) : acc + v;
}

template <typename T, bool MAX> __device__ void reduce(const T *in, T *out, cuda_red_args a) {
    __shared__ double part[256];
    long long o = blockIdx.x;
    if (o >= a.n_out) return;
    long long base, ooff;
    red_output(a, o, base, ooff);
    long long j0 = (long long)blockIdx.y * a.chunk,
              j1 = j0 + a.chunk < a.n_red ? j0 + a.chunk : a.n_red;
    double acc = MAX ? -1.0 / 0.0 : 0.0;
    if (a.red_nd == 1) {
        for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x)
            acc = red_step<MAX>(acc, (double)in[base + j * a.red_stride[0]]);
    } else if (a.red_nd == 2 && a.n_red < (1ll << 31)) { // 32-bit index arithmetic
        unsigned inner = (unsigned)a.red_shape[1];
        long long s0 = a.red_stride[0], s1 = a.red_stride[1];
        for (unsigned j = (unsigned)j0 + threadIdx.x; j < (unsigned)j1; j += blockDim.x) {
            unsigned hi = j / inner, lo = j - hi * inner;
            acc = red_step<MAX>(acc, (double)in[base + hi * s0 + lo * s1]);
        }
    } else {
        for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x)
            acc = red_step<MAX>(acc, (double)in[red_offset(a, base, j)]);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s)
            part[threadIdx.x] = red_step<MAX>(part[threadIdx.x], part[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (a.splits > 1)
            out[o * a.splits + blockIdx.y] = (T)part[0];
        else
            out[ooff] = (T)part[0];
    }
}

// Short reductions (n_red <= 128): one thread per output, a grid-stride loop over the outputs.
template <typename T, bool MAX> __device__ void reduce_rows(const T *in, T *out, cuda_red_args a) {
    for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < a.n_out;
         o += (long long)gridDim.x * blockDim.x) {
        long long base, ooff;
        red_output(a, o, base, ooff);
        double acc = MAX ? -1.0 / 0.0 : 0.0;
        for (long long j = 0; j < a.n_red; j++)
            acc = red_step<MAX>(acc, (double)in[red_offset(a, base, j)]);
        out[ooff] = (T)acc;
    }
}
// The exported kernels: the sum and the max of each reduction, in float and double.
#define RED_KERNELS(fn, T, sfx)                                                                    \
    extern "C" __global__ void fn##_sum_##sfx(const T *i, T *o, cuda_red_args a) {                 \
        fn<T, false>(i, o, a);                                                                     \
    }                                                                                              \
    extern "C" __global__ void fn##_max_##sfx(const T *i, T *o, cuda_red_args a) {                 \
        fn<T, true>(i, o, a);                                                                      \
    }
RED_KERNELS(reduce_rows, float, f32)
RED_KERNELS(reduce_rows, double, f64)
RED_KERNELS(reduce, float, f32)
RED_KERNELS(reduce, double, f64)
#undef RED_KERNELS

// The split-K partials (splits, M*N) summed in split order (deterministic); added to out when
// `add` (a leaf gradient accumulated in the same pass).
template <typename T>
__device__ void splitk_sum(const T *ws, T *out, long long mn, int splits, int add) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < mn;
         i += (long long)gridDim.x * blockDim.x) {
        T acc = 0;
        for (int z = 0; z < splits; z++) acc += ws[z * mn + i];
        out[i] = add ? out[i] + acc : acc;
    }
}
extern "C" __global__ void advance_u64(unsigned long long *ctr, cuda_advance_args a) {
    if (threadIdx.x < (unsigned)a.n) ctr[threadIdx.x] += a.by[threadIdx.x];
}

extern "C" __global__ void splitk_sum_f32(const float *w, float *o, long long mn, int s, int add) {
    splitk_sum<float>(w, o, mn, s, add);
}
extern "C" __global__ void splitk_sum_f64(const double *w, double *o, long long mn, int s,
                                          int add) {
    splitk_sum<double>(w, o, mn, s, add);
}

// ---- per-channel sums: batch norm's statistics and gradients, a bias gradient ---------------
// channel_sums: block (c, s) sums two functions of channel c's values in its chunk, in double:
//   statistics: v - shift and (v - shift)^2, shift the channel's first value (so that a large
//     mean does not cancel the variance away);
//   batch norm's gradient: gp and gp * xhat, gp = d act / d pre * g at pre = xhat * gamma +
//     beta and xhat = (v - mean) * rsqrt(var + eps) (dbeta and dgamma, without storing gp);
//   plain: v (and nothing).
// With one block a channel, it writes the channel's results itself. Else it writes its partial
// pair to part[(c * splits + s) * 2 + {0, 1}], and the channel's last block to finish (by a
// ticket: tickets[c] counts the blocks done, and is reset to 0 by the last, ready for the next
// launch) sums the partials in split order (deterministic, whichever block is last) and writes
// them: mean and biased variance (updating the running ones), or the two sums (each also added
// to its leaf gradient acc1 / acc2 when given).
__device__ __forceinline__ double bn_act_backward(double g, double pre, const cuda_sums_args &a) {
    switch (a.act) {
        case CUDA_BN_ACT_LEAKY_RELU: return pre > 0 ? g : g * a.slope;
        case CUDA_BN_ACT_RELU: return pre > 0 ? g : 0.0;
        case CUDA_BN_ACT_TANH: {
            double t = tanh(pre);
            return g * (1 - t * t);
        }
        case CUDA_BN_ACT_SIGMOID: {
            double e = 1 / (1 + exp(-pre));
            return g * e * (1 - e);
        }
        default: return g;
    }
}
template <typename T>
__device__ void channel_results(int c, double t1, double t2, const T *x, T *out1, T *out2, T *acc1,
                                T *acc2, T *run_mean, T *run_var, const cuda_sums_args &a) {
    if (a.mode != CUDA_SUMS_STATS) {
        T s1 = (T)t1, s2 = (T)t2;
        out1[c] = s1;
        if (out2) out2[c] = s2;
        if (acc1) acc1[c] = acc1[c] + s1;
        if (acc2) acc2[c] = acc2[c] + s2;
        return;
    }
    double d = t1 / (double)a.m, v = t2 / (double)a.m - d * d;
    T mean = (T)((double)x[(long long)c * a.hw] + d), var = (T)(v > 0 ? v : 0);
    out1[c] = mean;
    out2[c] = var;
    if (a.update_running) {
        run_mean[c] = (T)(a.momentum * (double)run_mean[c] + (1 - a.momentum) * (double)mean);
        run_var[c] =
            (T)(a.momentum * (double)run_var[c] + (1 - a.momentum) * ((double)var * a.unbias));
    }
}
template <typename T, bool WIDE>
__device__ void channel_sums(const T *x, const T *g, const T *mean, const T *var, const T *gamma,
                             const T *beta, double *part, unsigned *tickets, T *out1, T *out2,
                             T *acc1, T *acc2, T *run_mean, T *run_var, cuda_sums_args a) {
    __shared__ double s1[256], s2[256];
    __shared__ int last;
    int c = blockIdx.x;
    long long j0 = (long long)blockIdx.y * a.chunk, j1 = j0 + a.chunk < a.m ? j0 + a.chunk : a.m;
    long long plane = (long long)a.c * a.hw; // one image's values
    const T *xc = x + (long long)c * a.hw, *gc = g ? g + (long long)c * a.hw : g;
    double acc1_ = 0, acc2_ = 0, shift = 0, mu = 0, rstd = 0, gm = 0, bt = 0;
    if (a.mode == CUDA_SUMS_BN_GRAD) {
        mu = (double)mean[c];
        rstd = 1 / sqrt((double)var[c] + a.eps);
        gm = (double)gamma[c];
        bt = (double)beta[c];
    } else if (a.mode == CUDA_SUMS_STATS) {
        shift = (double)xc[0];
    }
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        long long off;
        if (WIDE) {
            long long n = j / a.hw;
            off = n * plane + (j - n * a.hw);
        } else { // 32-bit index arithmetic (the host checks that it fits)
            unsigned jj = (unsigned)j, hw = (unsigned)a.hw, n = jj / hw;
            off = (long long)(n * (unsigned)plane + (jj - n * hw));
        }
        double v = (double)xc[off];
        if (a.mode == CUDA_SUMS_BN_GRAD) {
            double xh = (v - mu) * rstd;
            double gp = bn_act_backward((double)gc[off], xh * gm + bt, a);
            acc1_ += gp;
            acc2_ += gp * xh;
        } else {
            double d = v - shift;
            acc1_ += d;
            acc2_ += d * d;
        }
    }
    s1[threadIdx.x] = acc1_;
    s2[threadIdx.x] = acc2_;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            s1[threadIdx.x] += s1[threadIdx.x + s];
            s2[threadIdx.x] += s2[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (a.splits == 1) {
        if (threadIdx.x == 0)
            channel_results<T>(c, s1[0], s2[0], x, out1, out2, acc1, acc2, run_mean, run_var, a);
        return;
    }
    if (threadIdx.x == 0) {
        long long at = ((long long)c * a.splits + blockIdx.y) * 2;
        part[at] = s1[0];
        part[at + 1] = s2[0];
        __threadfence(); // the partial is visible device-wide before the ticket is taken
        last = atomicAdd(tickets + c, 1u) == (unsigned)a.splits - 1;
    }
    __syncthreads();
    if (!last || threadIdx.x != 0) return;
    __threadfence();
    const volatile double *p = part + (long long)c * a.splits * 2; // not from a stale cache
    double t1 = 0, t2 = 0;
    for (int s = 0; s < a.splits; s++) {
        t1 += p[2 * s];
        t2 += p[2 * s + 1];
    }
    tickets[c] = 0;
    channel_results<T>(c, t1, t2, x, out1, out2, acc1, acc2, run_mean, run_var, a);
}
#define SUMS_KERNELS(T, sfx, WIDE, wsfx)                                                           \
    extern "C" __global__ void channel_sums##wsfx##_##sfx(                                         \
        const T *x, const T *g, const T *mean, const T *var, const T *gamma, const T *beta,        \
        double *part, unsigned *tickets, T *o1, T *o2, T *a1, T *a2, T *rm, T *rv,                 \
        cuda_sums_args a) {                                                                        \
        channel_sums<T, WIDE>(x, g, mean, var, gamma, beta, part, tickets, o1, o2, a1, a2, rm, rv, \
                              a);                                                                  \
    }
SUMS_KERNELS(float, f32, false, )
SUMS_KERNELS(double, f64, false, )
SUMS_KERNELS(float, f32, true, _wide)
SUMS_KERNELS(double, f64, true, _wide)
#undef SUMS_KERNELS

// ---- the implicit GEMM ----------------------------------------------------------------------
// C (M x N) = A (M x K) B (K x N) in tiles of BM x BN, stepping BK along K. 256 threads; each
// thread loads BM*BK/256 elements of A's tile (column kk = e % BK, row e / BK) and BK/2 of B's (row
// kk = tid / BN + 2 i, column nn = tid % BN: one column per thread, so a convolution's pixel
// is decoded once per block). The next tile's loads are issued before the current tile is
// multiplied (register double buffering).
//
// Passes and their K order. "Tap-major" (channels a multiple of BK): kk = tap * channels + ch,
// so a BK tile lies within one filter tap and the tap is decoded once per tile.
//   CONV_FWD          M = K_out, N = n*OH*OW, K = C*R*S. A = w, B = x gathered.
//   CONV_BWD_INPUT    by phase: block z is the input pixels (iy, ix) with iy % sh = py,
//                     ix % sw = px; only the taps ry = ry0 + sh*jy (ry0 = (py + pt) % sh) reach
//                     them, so no zero taps are multiplied. M = C, N = n*hq*wq, K = K_out*rq*sq.
//   CONV_BWD_WEIGHT   M = K_out, N = C*R*S, K = n*OH*OW (split over blocks z by k_chunk).
//   MATMUL            strided A and B, batch over z.
enum { MATMUL = 0, CONV_FWD = 1, CONV_BWD_INPUT = 2, CONV_BWD_WEIGHT = 3 };
#define BM 64
#define BN 128

// BK: the tile's depth (32 for TF32, 16 for the exact forms, whose FP64 accumulators need the
// registers, and for the pipelined TF32 form, whose three stages must fit 48 KiB). Each thread loads BM*BK/256 elements of A and BK/2 of B per tile.
template <int P, typename T, int BK> struct tile_loader {
    static constexpr int NA = BM * BK / 256, NB = BK / 2;
    const T *a, *b;
    cuda_gemm_args g;
    int bz, m0, n0, tid;
    bool tap_major;
    // B's column (this thread's), decoded once
    int nn;
    bool n_ok;
    long long b_base; // element offset of the column's image (conv) or column (matmul)
    int p0, p1;       // fwd: iy0, ix0; bwd-input: qy, qx; bwd-weight: ry, sx
    int ci;           // bwd-weight: the column's channel
    // bwd-input phase
    int ry0, rx0, by, bx;

    __device__ void init(const T *a_, const T *b_, const cuda_gemm_args &g_) {
        a = a_;
        b = b_;
        g = g_;
        tid = threadIdx.x;
        bz = blockIdx.z;
        m0 = blockIdx.y * BM;
        n0 = blockIdx.x * BN;
        nn = n0 + tid % BN;
        n_ok = nn < g.N;
        int rs = g.r * g.s;
        if (P == CONV_FWD) {
            tap_major = g.tap_major;
            int ohw = g.oh * g.ow, img = nn / ohw, pix = nn - img * ohw, oy = pix / g.ow,
                ox = pix - oy * g.ow;
            p0 = oy * g.sh - g.pt;
            p1 = ox * g.sw - g.pl;
            b_base = (long long)img * g.c * g.h * g.w;
        } else if (P == CONV_BWD_INPUT) {
            tap_major = g.tap_major;
            int py = bz / g.sw, px = bz - py * g.sw;
            ry0 = (py + g.pt) % g.sh;
            rx0 = (px + g.pl) % g.sw;
            by = (py + g.pt - ry0) / g.sh;
            bx = (px + g.pl - rx0) / g.sw;
            int hwq = g.hq * g.wq, img = nn / hwq, q = nn - img * hwq;
            p0 = q / g.wq;
            p1 = q - p0 * g.wq;
            n_ok = n_ok && py + g.sh * p0 < g.h && px + g.sw * p1 < g.w;
            b_base = (long long)img * g.k * g.oh * g.ow;
        } else if (P == CONV_BWD_WEIGHT) {
            tap_major = g.tap_major;
            ci = nn / rs;
            int tap = nn - ci * rs;
            p0 = tap / g.s;
            p1 = tap - p0 * g.s;
        } else {
            tap_major = false;
            b_base = (long long)bz * g.b_bs + (long long)nn * g.b_cs;
        }
    }

    // A(m, kk) for this thread's NA elements of the tile at k0
    __device__ void load_a(int k0, T *r) {
        int rs = g.r * g.s;
        if (P == CONV_BWD_INPUT && tap_major) { // one tap for the whole tile: decoded once
            int t = k0 / g.k, ko0 = k0 - t * g.k, jy = t / g.sq, jx = t - jy * g.sq;
            int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx;
            bool ok = ry < g.r && sx < g.s;
            const T *base = a + (long long)(ry * g.s + sx) * g.c * g.k + ko0;
#pragma unroll
            for (int i = 0; i < NA; i++) {
                int e = tid + 256 * i, m = m0 + e / BK;
                r[i] = ok && m < g.M ? base[(long long)m * g.k + e % BK] : (T)0;
            }
            return;
        }
        if (P == CONV_BWD_WEIGHT && tap_major) { // one image for the whole tile
            int ohw = g.oh * g.ow, img = k0 / ohw, pix0 = k0 - img * ohw;
            const T *base = a + (long long)img * g.k * ohw + pix0;
#pragma unroll
            for (int i = 0; i < NA; i++) {
                int e = tid + 256 * i, m = m0 + e / BK;
                r[i] = m < g.M ? base[(long long)m * ohw + e % BK] : (T)0;
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < NA; i++) {
            int e = tid + 256 * i, m = m0 + e / BK, kk = k0 + e % BK;
            T v = (T)0;
            if (m < g.M && kk < g.K) {
                if (P == MATMUL)
                    v = a[(long long)bz * g.a_bs + (long long)m * g.a_rs + (long long)kk * g.a_cs];
                else if (P == CONV_FWD) {
                    v = a[(long long)m * g.K + kk]; // tap-major: w pre-permuted to (K, R*S, C)
                } else if (P == CONV_BWD_INPUT) {
                    int rsq = g.rq * g.sq;
                    if (tap_major) { // w pre-permuted to (R*S, C, K_out): contiguous along ko
                        int t = kk / g.k, ko = kk - t * g.k, jy = t / g.sq, jx = t - jy * g.sq;
                        int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx;
                        if (ry < g.r && sx < g.s)
                            v = a[((long long)(ry * g.s + sx) * g.c + m) * g.k + ko];
                    } else {
                        int ko = kk / rsq, t = kk - ko * rsq, jy = t / g.sq, jx = t - jy * g.sq;
                        int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx;
                        if (ry < g.r && sx < g.s)
                            v = a[((long long)ko * g.c + m) * rs + ry * g.s + sx];
                    }
                } else {
                    int ohw = g.oh * g.ow, img = kk / ohw, pix = kk - img * ohw;
                    v = a[((long long)img * g.k + m) * ohw + pix];
                }
            }
            r[i] = v;
        }
    }

    // B(kk, nn) for this thread's NB elements (rows tid / BN + 2 i) of the tile at k0
    __device__ void load_b(int k0, T *r) {
        int rs = g.r * g.s, kl = tid / BN;
        if (P == CONV_FWD && tap_major) { // one tap for the whole tile
            int tap = k0 / g.c, c0 = k0 - tap * g.c, ry = tap / g.s, sx = tap - ry * g.s;
            int iy = p0 + ry, ix = p1 + sx;
            bool ok = n_ok && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
            long long hw = (long long)g.h * g.w,
                      off = b_base + (long long)(c0 + kl) * hw + iy * g.w + ix;
#pragma unroll
            for (int i = 0; i < NB; i++) r[i] = ok ? b[off + 2 * i * hw] : (T)0;
            return;
        }
        if (P == CONV_BWD_INPUT && tap_major) {
            int t = k0 / g.k, ko0 = k0 - t * g.k, jy = t / g.sq, jx = t - jy * g.sq;
            int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx, oy = by + p0 - jy, ox = bx + p1 - jx;
            bool ok = n_ok && ry < g.r && sx < g.s && oy >= 0 && oy < g.oh && ox >= 0 && ox < g.ow;
            long long ohw = (long long)g.oh * g.ow,
                      off = b_base + (long long)(ko0 + kl) * ohw + oy * g.ow + ox;
#pragma unroll
            for (int i = 0; i < NB; i++) r[i] = ok ? b[off + 2 * i * ohw] : (T)0;
            return;
        }
        if (P == CONV_BWD_WEIGHT && tap_major) { // one image for the whole tile
            int ohw = g.oh * g.ow, img = k0 / ohw, pix = k0 - img * ohw + kl;
            long long base = ((long long)img * g.c + ci) * g.h * g.w;
            int oy = pix / g.ow, ox = pix - oy * g.ow; // then stepped by 2 pixels, no division
#pragma unroll
            for (int i = 0; i < NB; i++) {
                int iy = oy * g.sh - g.pt + p0, ix = ox * g.sw - g.pl + p1;
                bool ok = n_ok && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
                r[i] = ok ? b[base + iy * g.w + ix] : (T)0;
                ox += 2;
                while (ox >= g.ow) {
                    ox -= g.ow;
                    oy++;
                }
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < NB; i++) {
            int kk = k0 + kl + 2 * i;
            T v = (T)0;
            if (n_ok && kk < g.K) {
                if (P == MATMUL)
                    v = b[b_base + (long long)kk * g.b_rs];
                else if (P == CONV_FWD) {
                    int c = kk / rs, q = kk - c * rs, ry = q / g.s, sx = q - ry * g.s, iy = p0 + ry,
                        ix = p1 + sx;
                    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                        v = b[b_base + ((long long)c * g.h + iy) * g.w + ix];
                } else if (P == CONV_BWD_INPUT) {
                    int rsq = g.rq * g.sq, ko = kk / rsq, t = kk - ko * rsq, jy = t / g.sq,
                        jx = t - jy * g.sq;
                    int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx, oy = by + p0 - jy,
                        ox = bx + p1 - jx;
                    if (ry < g.r && sx < g.s && oy >= 0 && oy < g.oh && ox >= 0 && ox < g.ow)
                        v = b[b_base + ((long long)ko * g.oh + oy) * g.ow + ox];
                } else {
                    int ohw = g.oh * g.ow, img = kk / ohw, pix = kk - img * ohw, oy = pix / g.ow,
                        ox = pix - oy * g.ow;
                    int iy = oy * g.sh - g.pt + p0, ix = ox * g.sw - g.pl + p1;
                    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                        v = b[(((long long)img * g.c + ci) * g.h + iy) * g.w + ix];
                }
            }
            r[i] = v;
        }
    }

    // For the pipelined form (cp.async copies addresses, not values): the addresses of A(m, kk)
    // for this thread's NA elements of the tile at k0, consecutive in k (element e = tid * NA + i:
    // row e / BK, column e % BK; four of them make one 16-byte copy), each given to f(i,
    // address), NULL where the element is zero. The same decoding as load_a and load_b, kept
    // apart from them on purpose: load_a and load_b written on top of these (values read through
    // the addresses) compile to 9-32% more instructions and, for the forward pass, 158
    // registers instead of 128 (ptxas, sm_90), and such a loader measured 10-20% slower per
    // convolution pass on the H200 (docs/gpu-runs/2026-12-04-h200-pipelined.md).
    template <typename F> __device__ __forceinline__ void a_each(int k0, F f) {
        int rs = g.r * g.s;
        if (P == CONV_BWD_INPUT && tap_major) { // one tap for the whole tile: decoded once
            int t = k0 / g.k, ko0 = k0 - t * g.k, jy = t / g.sq, jx = t - jy * g.sq;
            int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx;
            bool ok = ry < g.r && sx < g.s;
            const T *base = a + (long long)(ry * g.s + sx) * g.c * g.k + ko0;
#pragma unroll
            for (int i = 0; i < NA; i++) {
                int e = tid * NA + i, m = m0 + e / BK;
                f(i, ok && m < g.M ? base + (long long)m * g.k + e % BK : nullptr);
            }
            return;
        }
        if (P == CONV_BWD_WEIGHT && tap_major) { // one image for the whole tile
            int ohw = g.oh * g.ow, img = k0 / ohw, pix0 = k0 - img * ohw;
            const T *base = a + (long long)img * g.k * ohw + pix0;
#pragma unroll
            for (int i = 0; i < NA; i++) {
                int e = tid * NA + i, m = m0 + e / BK;
                f(i, m < g.M ? base + (long long)m * ohw + e % BK : nullptr);
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < NA; i++) {
            int e = tid * NA + i, m = m0 + e / BK, kk = k0 + e % BK;
            const T *q = nullptr;
            if (m < g.M && kk < g.K) {
                if (P == MATMUL)
                    q = a + (long long)bz * g.a_bs + (long long)m * g.a_rs + (long long)kk * g.a_cs;
                else if (P == CONV_FWD) {
                    q = a + (long long)m * g.K + kk; // tap-major: w pre-permuted to (K, R*S, C)
                } else if (P == CONV_BWD_INPUT) {
                    int rsq = g.rq * g.sq;
                    if (tap_major) { // w pre-permuted to (R*S, C, K_out): contiguous along ko
                        int t = kk / g.k, ko = kk - t * g.k, jy = t / g.sq, jx = t - jy * g.sq;
                        int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx;
                        if (ry < g.r && sx < g.s)
                            q = a + ((long long)(ry * g.s + sx) * g.c + m) * g.k + ko;
                    } else {
                        int ko = kk / rsq, t = kk - ko * rsq, jy = t / g.sq, jx = t - jy * g.sq;
                        int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx;
                        if (ry < g.r && sx < g.s)
                            q = a + ((long long)ko * g.c + m) * rs + ry * g.s + sx;
                    }
                } else {
                    int ohw = g.oh * g.ow, img = kk / ohw, pix = kk - img * ohw;
                    q = a + ((long long)img * g.k + m) * ohw + pix;
                }
            }
            f(i, q);
        }
    }

    // The addresses of B(kk, nn), as load_b's elements (rows tid / BN + 2 i, column nn), each
    // given to f(i, address), NULL where the element is zero.
    template <typename F> __device__ __forceinline__ void b_each(int k0, F f) {
        int rs = g.r * g.s, kl = tid / BN;
        if (P == CONV_FWD && tap_major) { // one tap for the whole tile
            int tap = k0 / g.c, c0 = k0 - tap * g.c, ry = tap / g.s, sx = tap - ry * g.s;
            int iy = p0 + ry, ix = p1 + sx;
            bool ok = n_ok && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
            long long hw = (long long)g.h * g.w,
                      off = b_base + (long long)(c0 + kl) * hw + iy * g.w + ix;
#pragma unroll
            for (int i = 0; i < NB; i++) f(i, ok ? b + off + 2 * i * hw : nullptr);
            return;
        }
        if (P == CONV_BWD_INPUT && tap_major) {
            int t = k0 / g.k, ko0 = k0 - t * g.k, jy = t / g.sq, jx = t - jy * g.sq;
            int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx, oy = by + p0 - jy, ox = bx + p1 - jx;
            bool ok = n_ok && ry < g.r && sx < g.s && oy >= 0 && oy < g.oh && ox >= 0 && ox < g.ow;
            long long ohw = (long long)g.oh * g.ow,
                      off = b_base + (long long)(ko0 + kl) * ohw + oy * g.ow + ox;
#pragma unroll
            for (int i = 0; i < NB; i++) f(i, ok ? b + off + 2 * i * ohw : nullptr);
            return;
        }
        if (P == CONV_BWD_WEIGHT && tap_major) { // one image for the whole tile
            int ohw = g.oh * g.ow, img = k0 / ohw, pix = k0 - img * ohw + kl;
            long long base = ((long long)img * g.c + ci) * g.h * g.w;
            int oy = pix / g.ow, ox = pix - oy * g.ow; // then stepped by 2 pixels, no division
#pragma unroll
            for (int i = 0; i < NB; i++) {
                int iy = oy * g.sh - g.pt + p0, ix = ox * g.sw - g.pl + p1;
                bool ok = n_ok && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
                f(i, ok ? b + base + iy * g.w + ix : nullptr);
                ox += 2;
                while (ox >= g.ow) {
                    ox -= g.ow;
                    oy++;
                }
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < NB; i++) {
            int kk = k0 + kl + 2 * i;
            const T *q = nullptr;
            if (n_ok && kk < g.K) {
                if (P == MATMUL)
                    q = b + b_base + (long long)kk * g.b_rs;
                else if (P == CONV_FWD) {
                    int c = kk / rs, t = kk - c * rs, ry = t / g.s, sx = t - ry * g.s, iy = p0 + ry,
                        ix = p1 + sx;
                    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                        q = b + b_base + ((long long)c * g.h + iy) * g.w + ix;
                } else if (P == CONV_BWD_INPUT) {
                    int rsq = g.rq * g.sq, ko = kk / rsq, t = kk - ko * rsq, jy = t / g.sq,
                        jx = t - jy * g.sq;
                    int ry = ry0 + g.sh * jy, sx = rx0 + g.sw * jx, oy = by + p0 - jy,
                        ox = bx + p1 - jx;
                    if (ry < g.r && sx < g.s && oy >= 0 && oy < g.oh && ox >= 0 && ox < g.ow)
                        q = b + b_base + ((long long)ko * g.oh + oy) * g.ow + ox;
                } else {
                    int ohw = g.oh * g.ow, img = kk / ohw, pix = kk - img * ohw, oy = pix / g.ow,
                        ox = pix - oy * g.ow;
                    int iy = oy * g.sh - g.pt + p0, ix = ox * g.sw - g.pl + p1;
                    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
                        q = b + (((long long)img * g.c + ci) * g.h + iy) * g.w + ix;
                }
            }
            f(i, q);
        }
    }
};

// C(m, nn): matmul c[bz][m][nn]; fwd y[img, m, pix]; bwd-input dx[img, m, iy, ix] of the phase;
// bwd-weight dw[m, nn] (a split z, here and in a matmul, writes its partial at c + z * M * N).
// The forward and the input gradient add the bias of row m when given (a convolution's, or a
// transposed one's, output channel).
template <int P, typename T>
__device__ __forceinline__ void store_c(T *c, const cuda_gemm_args &g, int bz, int m, int nn, T v) {
    if (m >= g.M || nn >= g.N) return;
    if (P == MATMUL || P == CONV_BWD_WEIGHT) {
        c[((long long)bz * g.M + m) * g.N + nn] = v;
        return;
    }
    if (g.bias) v += ((const T *)g.bias)[m]; // a convolution's bias, in the same pass
    if (P == CONV_FWD) {
        int plane = g.oh * g.ow, img = nn / plane, pix = nn - img * plane;
        c[((long long)img * g.M + m) * plane + pix] = v;
        return;
    }
    int py = bz / g.sw, px = bz - py * g.sw, hwq = g.hq * g.wq, img = nn / hwq, q = nn - img * hwq;
    int qy = q / g.wq, qx = q - qy * g.wq, iy = py + g.sh * qy, ix = px + g.sw * qx;
    if (iy < g.h && ix < g.w) c[(((long long)img * g.M + m) * g.h + iy) * g.w + ix] = v;
}

// Split K (the weight gradient; a matmul of batch 1 with k_chunk > 0): block z's share of K.
template <int P>
__device__ __forceinline__ void k_range(const cuda_gemm_args &g, int &kb, int &ke) {
    bool split = P == CONV_BWD_WEIGHT || (P == MATMUL && g.k_chunk > 0);
    kb = split ? blockIdx.z * g.k_chunk : 0;
    ke = split ? min(g.K, kb + g.k_chunk) : g.K;
}

// The main loop both GEMM forms share: K in tiles of BK from the block's share (k_range), each
// tile loaded into registers while the one before it is computed, then staged in shared memory
// (A m-major at As[m][k], B k-major at Bs[k][n], each element through `cvt`). compute() reads
// the staged tile between the two barriers.
template <int P, typename T, int BK, typename S, int AW, int BW, typename Cvt, typename Compute>
__device__ __forceinline__ void k_loop(tile_loader<P, T, BK> &L, const cuda_gemm_args &g,
                                       S (&As)[BM][AW], S (&Bs)[BK][BW], Cvt cvt, Compute compute) {
    int tid = threadIdx.x;
    T ra[tile_loader<P, T, BK>::NA], rb[tile_loader<P, T, BK>::NB];
    int kb, ke;
    k_range<P>(g, kb, ke);
    if (kb < ke) {
        L.load_a(kb, ra);
        L.load_b(kb, rb);
    }
    for (int k0 = kb; k0 < ke; k0 += BK) {
#pragma unroll
        for (int i = 0; i < L.NA; i++) {
            int e = tid + 256 * i;
            As[e / BK][e % BK] = cvt(ra[i]);
        }
#pragma unroll
        for (int i = 0; i < L.NB; i++) Bs[tid / BN + 2 * i][tid % BN] = cvt(rb[i]);
        __syncthreads();
        if (k0 + BK < ke) {
            L.load_a(k0 + BK, ra);
            L.load_b(k0 + BK, rb);
        }
        compute();
        __syncthreads();
    }
}

// exact: each thread a 4 x 8 tile of C (rows ty*4.., columns tx + 16 j)
template <int P, typename T>
__device__ void igemm_exact(const T *a, const T *b, T *c, cuda_gemm_args g) {
    constexpr int BK = 16;
    __shared__ T As[BM][BK + 1], Bs[BK][BN + 1];
    tile_loader<P, T, BK> L;
    L.init(a, b, g);
    int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    T acc[4][8] = {};
    k_loop(
        L, g, As, Bs, [](T v) { return v; },
        [&]() {
#pragma unroll
            for (int kk = 0; kk < BK; kk++) {
                T av[4], bv[8];
#pragma unroll
                for (int i = 0; i < 4; i++) av[i] = As[ty * 4 + i][kk];
#pragma unroll
                for (int j = 0; j < 8; j++) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++) acc[i][j] += av[i] * bv[j];
            }
        });
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            store_c<P, T>(c, g, blockIdx.z, L.m0 + ty * 4 + i, L.n0 + tx + 16 * j, acc[i][j]);
}

// TF32: 8 warps as 2 (M) x 4 (N); a warp owns 32 x 32 of C = 2 x 4 mma tiles of 16 x 8.
// Fragments (g = lane / 4, t = lane % 4): A a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4);
// B b0 (k t, n g) b1 (k t+4, n g); C c0 (g, 2t) c1 (g, 2t+1) c2 (g+8, 2t) c3 (g+8, 2t+1).
// Operands are rounded to TF32 once, when they are written to shared memory. A is kept m-major
// (rows of BK + 4 words), B k-major (rows of BN + 8): a fragment's 32 lanes read 32 different
// banks, and a warp's stores too.
template <int P>
__device__ void igemm_tf32(const float *a, const float *b, float *c, cuda_gemm_args g) {
    constexpr int BK = 32;
    __shared__ unsigned As[BM][BK + 4],
        Bs[BK][BN + 8]; // A m-major: its stores and fragments conflict-free
    tile_loader<P, float, BK> L;
    L.init(a, b, g);
    int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, wm = warp / 4, wn = warp % 4;
    int gq = lane / 4, t = lane % 4;
    float acc[2][4][4] = {};
    k_loop(
        L, g, As, Bs, [](float v) { return to_tf32(v); },
        [&]() {
#pragma unroll
            for (int ks = 0; ks < BK; ks += 8) {
                unsigned af[2][4], bf[4][2];
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    int rb0 = wm * 32 + mi * 16;
                    af[mi][0] = As[rb0 + gq][ks + t];
                    af[mi][1] = As[rb0 + gq + 8][ks + t];
                    af[mi][2] = As[rb0 + gq][ks + t + 4];
                    af[mi][3] = As[rb0 + gq + 8][ks + t + 4];
                }
#pragma unroll
                for (int ni = 0; ni < 4; ni++) {
                    int cb = wn * 32 + ni * 8;
                    bf[ni][0] = Bs[ks + t][cb + gq];
                    bf[ni][1] = Bs[ks + t + 4][cb + gq];
                }
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
#pragma unroll
                    for (int ni = 0; ni < 4; ni++) mma_tf32(acc[mi][ni], af[mi], bf[ni]);
            }
        });
    for (int mi = 0; mi < 2; mi++)
        for (int ni = 0; ni < 4; ni++) {
            int r = L.m0 + wm * 32 + mi * 16 + gq, col = L.n0 + wn * 32 + ni * 8 + 2 * t;
            store_c<P, float>(c, g, blockIdx.z, r, col, acc[mi][ni][0]);
            store_c<P, float>(c, g, blockIdx.z, r, col + 1, acc[mi][ni][1]);
            store_c<P, float>(c, g, blockIdx.z, r + 8, col, acc[mi][ni][2]);
            store_c<P, float>(c, g, blockIdx.z, r + 8, col + 1, acc[mi][ni][3]);
        }
}

// TF32, pipelined (BANIS_CUDA_GEMM=pipelined; kernels *_f32_tf32_pipelined): the same warps
// and fragments as igemm_tf32, K in tiles of 16 through a TF32_STAGES-deep ring of
// shared-memory stages filled by cp.async (the multistage design): while the tensor cores work
// on tile t, the copies of tiles t + 1 and t + 2 are in flight, and one barrier a tile both
// publishes tile t and frees the stage that tile t + 2 is copied into. A tile's A is kept m-major
// (rows of 16 + 4 words: 16-byte aligned rows whose 8-row phases hit 8 different bank quads, so
// ldmatrix is conflict-free) and read by ldmatrix.x4, one per 16 x 8 fragment; B k-major (rows
// of 128 + 8 words: a fragment's 32 lanes read 32 banks), read word by word. The operands
// land in shared memory as FP32 and are rounded to TF32 as each fragment is loaded. A's copies
// are 16 bytes where the thread's 4 elements are contiguous and aligned (the tap-major and
// dense cases), else 4; B's are 4 bytes (a strided convolution's pixels are not contiguous).
#define TF32_STAGES 3
template <int P>
__device__ void igemm_tf32_pipelined(const float *a, const float *b, float *c, cuda_gemm_args g) {
    constexpr int BK = 16, S = TF32_STAGES;
    constexpr int NA = tile_loader<P, float, BK>::NA, NB = tile_loader<P, float, BK>::NB;
    __shared__ __align__(16) float As[S][BM][BK + 4];
    __shared__ __align__(16) float Bs[S][BK][BN + 8];
    tile_loader<P, float, BK> L;
    L.init(a, b, g);
    int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, wm = warp / 4, wn = warp % 4;
    int gq = lane / 4, t = lane % 4;
    int kb, ke;
    k_range<P>(g, kb, ke);
    int tiles = kb < ke ? (ke - kb + BK - 1) / BK : 0;
    // the copies of the tile at k0 into stage st
    auto issue = [&](int st, int k0) {
        const float *pa[NA];
        L.a_each(k0, [&](int i, const float *q) { pa[i] = q; });
        float *da = &As[st][tid * NA / BK][tid * NA % BK];
        bool vec = pa[0] && ((unsigned long long)pa[0] & 15) == 0;
#pragma unroll
        for (int i = 1; i < NA; i++) vec = vec && pa[i] == pa[0] + i;
        if (vec)
            cp_async16(da, pa[0], 16);
        else
#pragma unroll
            for (int i = 0; i < NA; i++) cp_async4(da + i, pa[i] ? pa[i] : a, pa[i] ? 4 : 0);
        L.b_each(k0, [&](int i, const float *q) {
            cp_async4(&Bs[st][tid / BN + 2 * i][tid % BN], q ? q : b, q ? 4 : 0);
        });
    };
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < tiles) issue(s, kb + s * BK);
        cp_async_commit();
    }
    float acc[2][4][4] = {};
    for (int kt = 0; kt < tiles; kt++) {
        cp_async_wait<S - 2>(); // this thread's copies of tile kt have landed
        __syncthreads();        // everyone's have; and every warp is done with tile kt - 1
        if (kt + S - 1 < tiles) issue((kt + S - 1) % S, kb + (kt + S - 1) * BK);
        cp_async_commit(); // (an empty group near the end keeps the count)
        int st = kt % S;
#pragma unroll
        for (int ks = 0; ks < BK; ks += 8) {
            unsigned af[2][4], bf[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                int row = wm * 32 + mi * 16 + lane % 8 + (lane / 8 % 2) * 8,
                    col = ks + lane / 16 * 4;
                ldmatrix_x4(af[mi], &As[st][row][col]);
#pragma unroll
                for (int q = 0; q < 4; q++) af[mi][q] = to_tf32(__uint_as_float(af[mi][q]));
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                int cb = wn * 32 + ni * 8;
                bf[ni][0] = to_tf32(Bs[st][ks + t][cb + gq]);
                bf[ni][1] = to_tf32(Bs[st][ks + t + 4][cb + gq]);
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_tf32(acc[mi][ni], af[mi], bf[ni]);
        }
    }
    cp_async_wait<0>(); // nothing may still be writing this block's shared memory
    for (int mi = 0; mi < 2; mi++)
        for (int ni = 0; ni < 4; ni++) {
            int r = L.m0 + wm * 32 + mi * 16 + gq, col = L.n0 + wn * 32 + ni * 8 + 2 * t;
            store_c<P, float>(c, g, blockIdx.z, r, col, acc[mi][ni][0]);
            store_c<P, float>(c, g, blockIdx.z, r, col + 1, acc[mi][ni][1]);
            store_c<P, float>(c, g, blockIdx.z, r + 8, col, acc[mi][ni][2]);
            store_c<P, float>(c, g, blockIdx.z, r + 8, col + 1, acc[mi][ni][3]);
        }
}

#define ENTRY(NAME, P)                                                                             \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME##_f32_exact(const float *a, const float *b, float *c, cuda_gemm_args g) {             \
        igemm_exact<P, float>(a, b, c, g);                                                         \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME##_f64(const double *a, const double *b, double *c, cuda_gemm_args g) {                \
        igemm_exact<P, double>(a, b, c, g);                                                        \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME##_f32_tf32(const float *a, const float *b, float *c, cuda_gemm_args g) {              \
        igemm_tf32<P>(a, b, c, g);                                                                 \
    }                                                                                              \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME##_f32_tf32_pipelined(const float *a, const float *b, float *c, cuda_gemm_args g) {    \
        igemm_tf32_pipelined<P>(a, b, c, g);                                                       \
    }
ENTRY(matmul, MATMUL)
ENTRY(conv_forward, CONV_FWD)
ENTRY(conv_backward_input, CONV_BWD_INPUT)
ENTRY(conv_backward_weight, CONV_BWD_WEIGHT)

// ---- weights permuted for the tap-major passes: in (d0, d1, d2) contiguous; element
// (i0, i1, i2) goes to out[i0 * s0 + i1 * s1 + i2 * s2].
template <typename T>
__device__ void permute3(const T *in, T *out, int d0, int d1, int d2, long long s0, long long s1,
                         long long s2) {
    long long total = (long long)d0 * d1 * d2;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int i2 = (int)(i % d2);
        long long r = i / d2;
        int i1 = (int)(r % d1), i0 = (int)(r / d1);
        out[i0 * s0 + i1 * s1 + i2 * s2] = in[i];
    }
}
extern "C" __global__ void permute3_f32(const float *in, float *out, int d0, int d1, int d2,
                                        long long s0, long long s1, long long s2) {
    permute3<float>(in, out, d0, d1, d2, s0, s1, s2);
}
extern "C" __global__ void permute3_f64(const double *in, double *out, int d0, int d1, int d2,
                                        long long s0, long long s1, long long s2) {
    permute3<double>(in, out, d0, d1, d2, s0, s1, s2);
}

// ---- the input gradient of a convolution with few input channels (a GEMM with M = C of 1 to
// 4 would waste most of a 64-row tile): one thread per dx element, summing over K_out and the
// taps that reach it, in the precision of T.
template <typename T>
__device__ void conv_bwd_input_direct(const T *dy, const T *w, T *dx, cuda_gemm_args g) {
    long long total = (long long)g.n * g.c * g.h * g.w;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int ix = (int)(i % g.w);
        long long r = i / g.w;
        int iy = (int)(r % g.h);
        r /= g.h;
        int ci = (int)(r % g.c), img = (int)(r / g.c);
        // the taps that reach (iy, ix), and the output pixels they come from (at most 8 a side)
        int ny = 0, nx = 0, wy[8], wx[8], oys[8], oxs[8];
        for (int ry = (iy + g.pt) % g.sh; ry < g.r && ny < 8; ry += g.sh) {
            int ty = iy + g.pt - ry, oy = ty / g.sh;
            if (ty >= 0 && oy < g.oh) {
                wy[ny] = ry * g.s;
                oys[ny++] = oy * g.ow;
            }
        }
        for (int sx = (ix + g.pl) % g.sw; sx < g.s && nx < 8; sx += g.sw) {
            int tx = ix + g.pl - sx, ox = tx / g.sw;
            if (tx >= 0 && ox < g.ow) {
                wx[nx] = sx;
                oxs[nx++] = ox;
            }
        }
        T acc = 0;
        long long ohw = (long long)g.oh * g.ow, rs = (long long)g.r * g.s;
        const T *dyp = dy + (long long)img * g.k * ohw, *wp = w + (long long)ci * rs;
        for (int ko = 0; ko < g.k; ko++, dyp += ohw, wp += g.c * rs)
            for (int a = 0; a < ny; a++)
                for (int b = 0; b < nx; b++) acc += wp[wy[a] + wx[b]] * dyp[oys[a] + oxs[b]];
        dx[i] = g.bias ? acc + ((const T *)g.bias)[ci] : acc;
    }
}
extern "C" __global__ void conv_bwd_input_direct_f32(const float *dy, const float *w, float *dx,
                                                     cuda_gemm_args g) {
    conv_bwd_input_direct<float>(dy, w, dx, g);
}
extern "C" __global__ void conv_bwd_input_direct_f64(const double *dy, const double *w, double *dx,
                                                     cuda_gemm_args g) {
    conv_bwd_input_direct<double>(dy, w, dx, g);
}
