// Forward values of the ops against independent computations: naive loops written from the
// conventional (PyTorch/Keras) definitions, and hand-worked cases.
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/cpu/cpu.h"
#include "../ops/ops.h"
#include "../tensor/error.h"
#include "check_runner.h"

static double *host(const tensor *t) {
    double *v = malloc((size_t)tensor_numel(t) * sizeof *v);
    ck_assert_int_eq(tensor_to_doubles(t, v), 0);
    return v;
}

static tensor *random_tensor(rng *r, tensor_dtype dt, int ndim, const int64_t *shape) {
    return tensor_rand_uniform(r, dt, ndim, shape, -1, 1, DEVICE_CPU);
}

// y[n][k][oh][ow] = b[k] + sum_{c,r,s} x[n][c][oh*s - pt + r][ow*s - pl + s'] w[k][c][r][s']
static void naive_conv2d(const double *x, const double *w, const double *b, double *y, int N, int C,
                         int H, int W, int K, int R, int S, int st, int pt, int pl, int OH,
                         int OW) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = b ? b[k] : 0;
                    for (int c = 0; c < C; c++)
                        for (int r = 0; r < R; r++)
                            for (int s = 0; s < S; s++) {
                                int ih = oh * st - pt + r, iw = ow * st - pl + s;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += x[((n * C + c) * H + ih) * W + iw] *
                                       w[((k * C + c) * R + r) * S + s];
                            }
                    y[((n * K + k) * OH + oh) * OW + ow] = acc;
                }
}

// Keras Conv2DTranspose by its definition: every input pixel scatters its kernel-weighted value,
// out[ih*s - pt + r][iw*s - pl + s] += x * w; x (N, C, H, W), w (C, K, R, S), y (N, K, OH, OW).
static void scatter_conv_transpose2d(const double *x, const double *w, const double *b, double *y,
                                     int N, int C, int H, int W, int K, int R, int S, int st,
                                     int pt, int pl, int OH, int OW) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            for (int i = 0; i < OH * OW; i++) y[(n * K + k) * OH * OW + i] = b[k];
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++)
                    for (int k = 0; k < K; k++)
                        for (int rr = 0; rr < R; rr++)
                            for (int ss = 0; ss < S; ss++) {
                                int oh = ih * st - pt + rr, ow = iw * st - pl + ss;
                                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                                y[((n * K + k) * OH + oh) * OW + ow] +=
                                    x[((n * C + c) * H + ih) * W + iw] *
                                    w[((c * K + k) * R + rr) * S + ss];
                            }
}

START_TEST(test_conv2d_matches_naive_loop) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 3);
    // Keras 'same', stride 2, 5x5 on an odd 9x8 input: padding (top 2, bottom 2) x (1, 2)
    int N = 2, C = 3, H = 9, W = 8, K = 4, R = 5, S = 5, st = 2;
    op_conv_opts o = op_conv_same(H, W, R, S, st);
    ck_assert_int_eq(o.pad_top, 2);
    ck_assert_int_eq(o.pad_bottom, 2);
    ck_assert_int_eq(o.pad_left, 1);
    ck_assert_int_eq(o.pad_right, 2);
    for (int dt = 0; dt < 2; dt++) {
        tensor *x = random_tensor(&r, dt, SHAPE(N, C, H, W));
        tensor *w = random_tensor(&r, dt, SHAPE(K, C, R, S));
        tensor *b = random_tensor(&r, dt, SHAPE(K));
        tensor *y = op_conv2d(x, w, b, &o);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(y->shape[2], 5);
        ck_assert_int_eq(y->shape[3], 4);
        double *xv = host(x), *wv = host(w), *bv = host(b), *yv = host(y);
        double *ref = malloc(sizeof(double) * (size_t)tensor_numel(y));
        naive_conv2d(xv, wv, bv, ref, N, C, H, W, K, R, S, st, o.pad_top, o.pad_left, 5, 4);
        for (int64_t i = 0; i < tensor_numel(y); i++)
            ck_assert_double_eq_tol(yv[i], ref[i], dt == TENSOR_F64 ? 1e-12 : 1e-5);
        free(xv);
        free(wv);
        free(bv);
        free(yv);
        free(ref);
    }
    tensor_scope_end();
}
END_TEST

// Several samples of 8x8 outputs (whole micro-kernel strips): the CPU backend runs the batch
// as one GEMM for the forward pass and for the input gradient (which is conv_transpose2d's
// forward), against the naive loop and the scatter definition.
START_TEST(test_conv_batched_gemm_matches_naive) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 9);
    int N = 5, C = 3, H = 16, W = 16, K = 4, R = 5, S = 5, st = 2, OH = 8, OW = 8;
    op_conv_opts o = op_conv_same(H, W, R, S, st);
    for (int dt = 0; dt < 2; dt++) {
        double tol = dt == TENSOR_F64 ? 1e-12 : 1e-5;
        tensor *x = random_tensor(&r, dt, SHAPE(N, C, H, W));
        tensor *w = random_tensor(&r, dt, SHAPE(K, C, R, S));
        tensor *b = random_tensor(&r, dt, SHAPE(K));
        double *xv = host(x), *wv = host(w), *bv = host(b), *yv = host(op_conv2d(x, w, b, &o));
        double *ref = malloc(sizeof(double) * (size_t)(N * K * OH * OW));
        naive_conv2d(xv, wv, bv, ref, N, C, H, W, K, R, S, st, o.pad_top, o.pad_left, OH, OW);
        for (int i = 0; i < N * K * OH * OW; i++) ck_assert_double_eq_tol(yv[i], ref[i], tol);
        free(yv);
        free(ref);
        // the transposed convolution of an (N, K, 8, 8) input back to 16x16, weight (K, C, R, S)
        op_conv_opts ot = op_conv_transpose_same(OH, OW, R, S, st);
        tensor *z = random_tensor(&r, dt, SHAPE(N, K, OH, OW)),
               *bc = random_tensor(&r, dt, SHAPE(C));
        double *zv = host(z), *bcv = host(bc), *tv = host(op_conv_transpose2d(z, w, bc, &ot));
        double *tr = malloc(sizeof(double) * (size_t)(N * C * H * W));
        scatter_conv_transpose2d(zv, wv, bcv, tr, N, K, OH, OW, C, R, S, st, ot.pad_top,
                                 ot.pad_left, H, W);
        for (int i = 0; i < N * C * H * W; i++) ck_assert_double_eq_tol(tv[i], tr[i], tol);
        free(xv);
        free(wv);
        free(bv);
        free(zv);
        free(bcv);
        free(tv);
        free(tr);
    }
    tensor_scope_end();
}
END_TEST

// The convolution's two gradients by their definitions, in double, against the backward passes
// of op_conv2d in both dtypes: dx[n][c][ih][iw] = sum dy[n][k][oh][ow] w[k][c][r][s] and
// dw[k][c][r][s] = sum dy[n][k][oh][ow] x[n][c][ih][iw] over the taps that read (ih, iw).
// Geometries that take each path of the CPU backend: the weight gradient as one implicit GEMM
// over the batch (8 pixels of a row transposed at a time, or element by element), outputs of
// 8x8, 16x16 and 5x4, strides 1 and 2, im2col rows not a multiple of 16; the input gradient of
// stride 1 as the forward pass of the flipped kernel, of stride 2 through col2im; 'valid'.
START_TEST(test_conv_gradients_match_definitions) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 12);
    const struct {
        int N, C, H, W, K, R, S, st;
        bool valid; // Keras 'valid' (no padding: the last rows and columns may be read by none)
    } geo[] = {{3, 3, 16, 16, 4, 5, 5, 2, false}, {2, 2, 9, 8, 3, 5, 5, 2, false},
               {3, 4, 8, 8, 5, 5, 5, 1, false},   {2, 3, 32, 32, 2, 3, 3, 2, false},
               {2, 1, 64, 64, 3, 5, 5, 2, false}, {2, 7, 4, 4, 17, 3, 3, 1, false},
               {2, 3, 6, 5, 2, 5, 5, 2, true},    {3, 2, 12, 11, 4, 3, 3, 1, true}};
    for (size_t gi = 0; gi < sizeof geo / sizeof *geo; gi++) {
        int N = geo[gi].N, C = geo[gi].C, H = geo[gi].H, W = geo[gi].W, K = geo[gi].K,
            R = geo[gi].R, S = geo[gi].S, st = geo[gi].st;
        op_conv_opts o = geo[gi].valid ? op_conv_valid(st) : op_conv_same(H, W, R, S, st);
        int OH = geo[gi].valid ? (H - R) / st + 1 : (H + st - 1) / st,
            OW = geo[gi].valid ? (W - S) / st + 1 : (W + st - 1) / st;
        tensor *x = random_tensor(&r, TENSOR_F64, SHAPE(N, C, H, W));
        tensor *w = random_tensor(&r, TENSOR_F64, SHAPE(K, C, R, S));
        tensor *dy = random_tensor(&r, TENSOR_F64, SHAPE(N, K, OH, OW));
        double *xv = host(x), *wv = host(w), *dyv = host(dy);
        double *dx = calloc((size_t)(N * C * H * W), sizeof *dx);
        double *dw = calloc((size_t)(K * C * R * S), sizeof *dw);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++)
                        for (int c = 0; c < C; c++)
                            for (int rr = 0; rr < R; rr++)
                                for (int ss = 0; ss < S; ss++) {
                                    int ih = oh * st - o.pad_top + rr,
                                        iw = ow * st - o.pad_left + ss;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    double g = dyv[((n * K + k) * OH + oh) * OW + ow];
                                    int xi = ((n * C + c) * H + ih) * W + iw,
                                        wi = ((k * C + c) * R + rr) * S + ss;
                                    dx[xi] += g * wv[wi];
                                    dw[wi] += g * xv[xi];
                                }
        for (int dt = 0; dt < 2; dt++) {
            tensor *xd = tensor_cast(x, (tensor_dtype)dt), *wd = tensor_cast(w, (tensor_dtype)dt);
            xd->requires_grad = wd->requires_grad = true;
            tensor *y = op_conv2d(xd, wd, NULL, &o);
            ck_assert_ptr_nonnull(y);
            ck_assert_int_eq(y->shape[2], OH);
            ck_assert_int_eq(y->shape[3], OW);
            ck_assert_int_eq(ag_backward(y, tensor_cast(dy, (tensor_dtype)dt)), 0);
            double *gx = host(xd->grad), *gw = host(wd->grad);
            double tol = dt == TENSOR_F64 ? 1e-10 : 1e-4;
            for (int i = 0; i < N * C * H * W; i++)
                ck_assert_msg(fabs(gx[i] - dx[i]) < tol * (1 + fabs(dx[i])),
                              "geometry %zu dtype %d: dx[%d] %g, by definition %g", gi, dt, i,
                              gx[i], dx[i]);
            for (int i = 0; i < K * C * R * S; i++)
                ck_assert_msg(fabs(gw[i] - dw[i]) < tol * (1 + fabs(dw[i])),
                              "geometry %zu dtype %d: dw[%d] %g, by definition %g", gi, dt, i,
                              gw[i], dw[i]);
            free(gx);
            free(gw);
        }
        free(xv);
        free(wv);
        free(dyv);
        free(dx);
        free(dw);
    }
    tensor_scope_end();
}
END_TEST

START_TEST(test_conv_transpose2d_matches_scatter_definition) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 4);
    // Keras Conv2DTranspose(5, strides 2, 'same') on 4x3 -> 8x6; weight (C_in, C_out, R, S)
    int N = 2, C = 3, H = 4, W = 3, K = 2, R = 5, S = 5, st = 2;
    op_conv_opts o = op_conv_transpose_same(H, W, R, S, st);
    tensor *x = random_tensor(&r, TENSOR_F64, SHAPE(N, C, H, W));
    tensor *w = random_tensor(&r, TENSOR_F64, SHAPE(C, K, R, S));
    tensor *b = random_tensor(&r, TENSOR_F64, SHAPE(K));
    tensor *y = op_conv_transpose2d(x, w, b, &o);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], 8);
    ck_assert_int_eq(y->shape[3], 6);
    int OH = 8, OW = 6;
    double *xv = host(x), *wv = host(w), *bv = host(b), *yv = host(y);
    double ref[2 * 2 * 8 * 6];
    scatter_conv_transpose2d(xv, wv, bv, ref, N, C, H, W, K, R, S, st, o.pad_top, o.pad_left, OH,
                             OW);
    for (int i = 0; i < N * K * OH * OW; i++) ck_assert_double_eq_tol(yv[i], ref[i], 1e-12);
    free(xv);
    free(wv);
    free(bv);
    free(yv);
    tensor_scope_end();
}
END_TEST

START_TEST(test_batch_norm_hand_worked) {
    tensor_scope_begin();
    // x: (N=4, C=2); channel 0 = 1,2,3,4 (mean 2.5, biased var 1.25); channel 1 = 0,0,2,2 (1, 1)
    double xv[8] = {1, 0, 2, 0, 3, 2, 4, 2};
    tensor *x = tensor_from_doubles(TENSOR_F64, SHAPE(4, 2), xv, DEVICE_CPU);
    tensor *gamma = tensor_from_doubles(TENSOR_F64, SHAPE(2), (double[]){2, 1}, DEVICE_CPU);
    tensor *beta = tensor_from_doubles(TENSOR_F64, SHAPE(2), (double[]){0.5, -1}, DEVICE_CPU);
    tensor *rm = tensor_zeros(TENSOR_F64, SHAPE(2), DEVICE_CPU);
    tensor *rv = tensor_ones(TENSOR_F64, SHAPE(2), DEVICE_CPU);
    op_bn_opts o = {.training = true, .momentum = 0.8, .eps = 1e-3};
    double *y = host(op_batch_norm(x, gamma, beta, rm, rv, &o));
    double m[2] = {2.5, 1}, var[2] = {1.25, 1}, g[2] = {2, 1}, bb[2] = {0.5, -1};
    for (int n = 0; n < 4; n++)
        for (int c = 0; c < 2; c++)
            ck_assert_double_eq_tol(
                y[n * 2 + c], (xv[n * 2 + c] - m[c]) / sqrt(var[c] + 1e-3) * g[c] + bb[c], 1e-12);
    // running stats: 0.8 * old + 0.2 * batch, the variance unbiased (x 4/3)
    double *rmv = host(rm), *rvv = host(rv);
    ck_assert_double_eq_tol(rmv[0], 0.2 * 2.5, 1e-12);
    ck_assert_double_eq_tol(rmv[1], 0.2 * 1.0, 1e-12);
    ck_assert_double_eq_tol(rvv[0], 0.8 + 0.2 * 1.25 * 4 / 3, 1e-12);
    ck_assert_double_eq_tol(rvv[1], 0.8 + 0.2 * 1.0 * 4 / 3, 1e-12);
    // inference uses the running statistics
    o.training = false;
    double *yi = host(op_batch_norm(x, gamma, beta, rm, rv, &o));
    ck_assert_double_eq_tol(yi[0], (1 - rmv[0]) / sqrt(rvv[0] + 1e-3) * 2 + 0.5, 1e-12);
    // fused LeakyReLU equals BN then LeakyReLU
    o.training = true;
    o.act = OP_ACT_LEAKY_RELU;
    o.slope = 0.2;
    double *yf = host(op_batch_norm(x, gamma, beta, rm, rv, &o));
    for (int i = 0; i < 8; i++) ck_assert_double_eq_tol(yf[i], y[i] > 0 ? y[i] : 0.2 * y[i], 1e-12);
    free(y);
    free(rmv);
    free(rvv);
    free(yi);
    free(yf);
    // a channel mismatch names the op
    ck_assert_ptr_null(
        op_batch_norm(x, tensor_ones(TENSOR_F64, SHAPE(3), DEVICE_CPU), beta, rm, rv, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "batch_norm"));
    tensor_scope_end();
}
END_TEST

START_TEST(test_bce_and_mse_hand_worked) {
    tensor_scope_begin();
    double p[4] = {0.9, 0.2, 0.0, 1.0}, y[4] = {1, 0, 1, 0};
    tensor *pt = tensor_from_doubles(TENSOR_F64, SHAPE(4), p, DEVICE_CPU);
    tensor *yt = tensor_from_doubles(TENSOR_F64, SHAPE(4), y, DEVICE_CPU);
    double e = 1e-7;
    // Keras: clip to [e, 1-e], then -(y log(p + e) + (1 - y) log(1 - p + e))
    double want = (-log(0.9 + e) - log(0.8 + e) - log(e + e) - log(1 - (1 - e) + e)) / 4;
    ck_assert_double_eq_tol(tensor_item(op_bce(pt, yt)), want, 1e-9);
    // log(2e-7) ~ -15.4: the clamp keeps the loss finite
    ck_assert(isfinite(tensor_item(op_bce(pt, yt))));
    // BCE from logits (Keras for a sigmoid output): max(x, 0) - x y + log(1 + exp(-|x|)), by hand;
    // at saturated logits the loss is large and the gradient sigmoid(x) - y is not zero
    double x[4] = {30, -30, 2, -0.5}, yl[4] = {0, 1, 1, 0};
    tensor *xt = tensor_from_doubles(TENSOR_F64, SHAPE(4), x, DEVICE_CPU),
           *ylt = tensor_from_doubles(TENSOR_F64, SHAPE(4), yl, DEVICE_CPU);
    xt->requires_grad = true;
    double want_l =
        (30 + log1p(exp(-30.0)) + 30 + log1p(exp(-30.0)) + log1p(exp(-2.0)) + log1p(exp(-0.5))) / 4;
    tensor *bl = op_bce_logits(xt, ylt);
    ck_assert_double_eq_tol(tensor_item(bl), want_l, 1e-12);
    ck_assert_int_eq(ag_backward(bl, NULL), 0);
    double gx[4];
    tensor_to_doubles(xt->grad, gx);
    for (int i = 0; i < 4; i++) {
        double sig = 1 / (1 + exp(-x[i]));
        ck_assert_double_eq_tol(gx[i], (sig - yl[i]) / 4, 1e-12);
    }
    ck_assert(fabs(gx[0]) > 0.2 && fabs(gx[1]) > 0.2); // the clamped BCE gives 0 here
    double a[3] = {1, 2, 3}, b[3] = {1.5, 2, 1};
    ck_assert_double_eq_tol(
        tensor_item(op_mse(tensor_from_doubles(TENSOR_F64, SHAPE(3), a, DEVICE_CPU),
                           tensor_from_doubles(TENSOR_F64, SHAPE(3), b, DEVICE_CPU))),
        (0.25 + 0 + 4) / 3, 1e-15);
    tensor_scope_end();
}
END_TEST

START_TEST(test_matmul_blocked_matches_naive) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 5);
    // sizes straddle the blocking (MC 96, KC 256, NR 16) and use a transposed operand
    int64_t M = 101, K = 300, N = 37;
    tensor *a = random_tensor(&r, TENSOR_F32, SHAPE(M, K));
    tensor *bt = random_tensor(&r, TENSOR_F32, SHAPE(N, K));
    tensor *c = op_matmul(a, op_transpose(bt, 0, 1));
    double *av = host(a), *bv = host(bt), *cv = host(c);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double ref = 0;
            for (int64_t k = 0; k < K; k++) ref += av[i * K + k] * bv[j * K + k];
            ck_assert_double_eq_tol(cv[i * N + j], ref, 1e-4);
        }
    free(av);
    free(bv);
    free(cv);
    // edge strips of every micro-kernel height (6 and 8 rows, 16 or 8 columns) in both dtypes;
    // two large enough to be split over threads, by rows (N narrow) and by columns; the last
    // two a small C over a long contraction, cut into four parts (the last of 2100 empty)
    static const int64_t shapes[][3] = {{1, 1, 1},     {7, 5, 300},   {13, 17, 9},
                                        {97, 33, 260}, {500, 40, 64}, {30, 2000, 40},
                                        {8, 40, 4229}, {20, 50, 2100}};
    int best = cpu_gemm_isa();
    for (int isa = 0; isa <= best; isa++) // every micro-kernel this CPU can run
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (int dt = 0; dt < 2; dt++) {
                ck_assert_int_eq(cpu_gemm_set_isa(isa), 0);
                int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                tensor_dtype type = dt ? TENSOR_F64 : TENSOR_F32;
                tensor *p = random_tensor(&r, type, SHAPE(m, k)),
                       *q = random_tensor(&r, type, SHAPE(k, n));
                double *pv = host(p), *qv = host(q), *ov = host(op_matmul(p, q));
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double ref = 0;
                        for (int64_t l = 0; l < k; l++) ref += pv[i * k + l] * qv[l * n + j];
                        ck_assert_msg(
                            fabs(ov[i * n + j] - ref) <= (dt ? 1e-12 : 1e-4) * (1 + fabs(ref)),
                            "kernel %d, %lldx%lldx%lld %s (%lld, %lld): %g vs %g", isa,
                            (long long)m, (long long)n, (long long)k, tensor_dtype_name(type),
                            (long long)i, (long long)j, ov[i * n + j], ref);
                    }
                free(pv);
                free(qv);
                free(ov);
            }
    ck_assert_int_eq(cpu_gemm_set_isa(best), 0);
    ck_assert_int_eq(cpu_gemm_set_isa(best + 1), -1); // one this CPU lacks is refused
    // batched, float64
    tensor *x = random_tensor(&r, TENSOR_F64, SHAPE(3, 4, 5)),
           *w = random_tensor(&r, TENSOR_F64, SHAPE(3, 5, 2));
    double *xv = host(x), *wv = host(w), *yv = host(op_matmul(x, w));
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 2; j++) {
                double ref = 0;
                for (int k = 0; k < 5; k++)
                    ref += xv[(b * 4 + i) * 5 + k] * wv[(b * 5 + k) * 2 + j];
                ck_assert_double_eq_tol(yv[(b * 4 + i) * 2 + j], ref, 1e-12);
            }
    free(xv);
    free(wv);
    free(yv);
    ck_assert_ptr_null(op_matmul(random_tensor(&r, TENSOR_F64, SHAPE(2, 3)),
                                 random_tensor(&r, TENSOR_F64, SHAPE(2, 3))));
    ck_assert_ptr_nonnull(strstr(err_message(), "matmul"));
    tensor_scope_end();
}
END_TEST

START_TEST(test_reductions_match_loops) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 6);
    tensor *x = random_tensor(&r, TENSOR_F64, SHAPE(3, 4, 5));
    double *xv = host(x);
    double *s = host(op_sum(x, AXES(0, 2), false));
    double *m = host(op_max(x, AXES(-1), false));
    double *mean = host(op_mean(x, AXES(1), true));
    for (int j = 0; j < 4; j++) {
        double ref = 0;
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 5; k++) ref += xv[(i * 4 + j) * 5 + k];
        ck_assert_double_eq_tol(s[j], ref, 1e-12);
    }
    for (int i = 0; i < 12; i++) {
        double ref = -INFINITY;
        for (int k = 0; k < 5; k++) ref = fmax(ref, xv[i * 5 + k]);
        ck_assert_double_eq(m[i], ref);
    }
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 5; k++) {
            double ref = 0;
            for (int j = 0; j < 4; j++) ref += xv[(i * 4 + j) * 5 + k];
            ck_assert_double_eq_tol(mean[i * 5 + k], ref / 4, 1e-12);
        }
    free(xv);
    free(s);
    free(m);
    free(mean);
    tensor_scope_end();
}
END_TEST

START_TEST(test_dropout_statistics) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 7);
    tensor *x = tensor_ones(TENSOR_F32, SHAPE(100000), DEVICE_CPU);
    double *y = host(op_dropout(x, 0.3, true, &r));
    int zeros = 0;
    for (int i = 0; i < 100000; i++) {
        if (y[i] == 0)
            zeros++;
        else
            ck_assert_double_eq_tol(y[i], 1 / 0.7, 1e-6);
    }
    ck_assert_int_gt(zeros, 29500);
    ck_assert_int_lt(zeros, 30500);
    free(y);
    double *id = host(op_dropout(x, 0.3, false, &r));
    ck_assert_double_eq(id[123], 1.0);
    free(id);
    tensor_scope_end();
}
END_TEST

START_TEST(test_float32_matches_float64) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 8);
    tensor *x64 = random_tensor(&r, TENSOR_F64, SHAPE(4, 3, 6, 6));
    tensor *w64 = random_tensor(&r, TENSOR_F64, SHAPE(5, 3, 3, 3));
    tensor *x32 = tensor_cast(x64, TENSOR_F32), *w32 = tensor_cast(w64, TENSOR_F32);
    op_conv_opts o = op_conv_same(6, 6, 3, 3, 1);
    double *a = host(op_tanh(op_conv2d(x64, w64, NULL, &o)));
    double *b = host(op_tanh(op_conv2d(x32, w32, NULL, &o)));
    for (int i = 0; i < 4 * 5 * 36; i++) ck_assert_double_eq_tol(a[i], b[i], 1e-5);
    free(a);
    free(b);
    tensor_scope_end();
}
END_TEST

// Reflection padding as PyTorch defines it (index i of the padded row reads |i - p| mirrored at
// the far edge), and instance norm against per-(sample, channel) loops.
START_TEST(test_reflection_pad_and_instance_norm) {
    tensor_scope_begin();
    rng r;
    rng_init(&r, 9);
    int N = 2, C = 3, H = 4, W = 5, p = 3;
    tensor *x = random_tensor(&r, TENSOR_F64, SHAPE(N, C, H, W));
    tensor *y = op_reflection_pad2d(x, p);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape[2], H + 2 * p);
    ck_assert_int_eq(y->shape[3], W + 2 * p);
    double *xv = host(x), *yv = host(y);
    int PH = H + 2 * p, PW = W + 2 * p;
    for (int nc = 0; nc < N * C; nc++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++) {
                int si = abs(i - p), sj = abs(j - p); // mirrored at the first pixel
                if (si >= H) si = 2 * (H - 1) - si;   // and at the last
                if (sj >= W) sj = 2 * (W - 1) - sj;
                ck_assert_double_eq(yv[(nc * PH + i) * PW + j], xv[(nc * H + si) * W + sj]);
            }
    ck_assert_ptr_null(op_reflection_pad2d(x, 4)); // not less than H
    ck_assert_ptr_nonnull(strstr(err_message(), "reflection_pad2d"));
    double *nv = host(op_instance_norm(x, 1e-5));
    for (int nc = 0; nc < N * C; nc++) {
        double m = 0, v = 0;
        for (int i = 0; i < H * W; i++) m += xv[nc * H * W + i] / (H * W);
        for (int i = 0; i < H * W; i++) v += pow(xv[nc * H * W + i] - m, 2) / (H * W);
        for (int i = 0; i < H * W; i++)
            ck_assert_double_eq_tol(nv[nc * H * W + i], (xv[nc * H * W + i] - m) / sqrt(v + 1e-5),
                                    1e-12);
    }
    free(xv);
    free(yv);
    free(nv);
    tensor_scope_end();
}
END_TEST

int main(void) {
    TCase *tc = check_case(
        "forward", 0,
        CHECK_TESTS(test_conv2d_matches_naive_loop,
                    test_conv_transpose2d_matches_scatter_definition, test_batch_norm_hand_worked,
                    test_bce_and_mse_hand_worked, test_matmul_blocked_matches_naive,
                    test_conv_batched_gemm_matches_naive, test_reductions_match_loops,
                    test_dropout_statistics, test_float32_matches_float64,
                    test_conv_gradients_match_definitions, test_reflection_pad_and_instance_norm));
    return check_main("ops", tc);
}
