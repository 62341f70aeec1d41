// The CUDA backend: device memory through a caching allocator, one stream, and kernels that
// are compiled at run time (the rendered elementwise ones and the fixed ones), cached in memory
// and on disk. It runs on a device seam (device.h): a real GPU through the CUDA runtime and
// NVRTC, or the emulated CUDA device (BANIS_CUDA=emulated). Every call is checked and named.
// This file: the ops and the start; the rest by concern (cuda_internal.h lists the files).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cuda_internal.h"
#include "cuda_render.h"
#include "kernel_cache.h"
#include "kernels/abi.h"

cuda_runtime cuda_rt;

static int cuda_elementwise(const char *op, const ew_program *p, tensor *const *outs,
                            const tensor *const *ins) {
    int64_t n = tensor_numel(outs[0]);
    if (n == 0) return 0;
    static cuda_ew_args a; // ~2 KB: not on the stack; the launch copies it
    cuda_ew_layout L = cuda_ew_plan(p, outs, ins, &a);
    uint64_t key = cuda_ew_key(p, &L, outs, ins) | 1; // never 0, the empty slot
    char name[64];
    void *k = cuda_find_kernel(key);
    if (!k) { // first use of this program structure: render, compile (or read the disk cache), load
        char *src = cuda_render_elementwise(p, &L, outs, ins, op, name);
        if (!src) {
            err_set("CUDA: out of host memory rendering a kernel");
            return -1;
        }
        void *lib;
        int rc = cuda_load_library(src, name, &lib);
        free(src);
        if (rc || !(k = cuda_get_kernel(key, name, lib))) return -1;
    }
    a.rng_seed = p->rng_seed;
    a.rng_offset = p->rng_offset;
    a.rng_delta = NULL;
    if (ew_uses_rng(p)) {
        a.rng_delta = cuda_zero_delta;
        if (cuda_capture.g) { // the graph's delta of this generator, advanced at every replay
            int i = 0;
            while (i < cuda_capture.g->n_rngs &&
                   (const void *)cuda_capture.g->rngs[i] != p->rng_stream)
                i++;
            if (i == cuda_capture.g->n_rngs) {
                cuda_capture.failed = true;
                err_set("CUDA graph capture: %s draws random numbers from a generator not named "
                        "to the capture (a replay could not advance it)",
                        op);
                return -1;
            }
            a.rng_delta = cuda_capture.g->deltas + i;
        }
    }
    int slot[EW_MAX_NODES];
    ew_scalar_args(p, a.scalar, slot);
    unsigned blocks = cuda_stride_blocks(n);
    void *args[] = {&a};
    char what[64];
    snprintf(what, sizeof what, "ew %s", op);
    return cuda_launch(k, what, d3(blocks, 1, 1), d3(256, 1, 1), args);
}

// Appends a dimension, merged into the previous one when they are contiguous with each other.
static void push_dim(long long *shape, long long *s1, long long *s2, int *nd, long long n,
                     long long st1, long long st2, bool two) {
    if (*nd > 0 && s1[*nd - 1] == st1 * n && (!two || s2[*nd - 1] == st2 * n)) {
        shape[*nd - 1] *= n;
        s1[*nd - 1] = st1;
        if (two) s2[*nd - 1] = st2;
        return;
    }
    shape[*nd] = n;
    s1[*nd] = st1;
    if (two) s2[*nd] = st2;
    (*nd)++;
}

static int cuda_reduce(reduce_kind kind, const tensor *in, tensor *out) {
    cuda_red_args a = {.n_out = tensor_numel(out), .n_red = 1};
    for (int d = 0; d < in->ndim; d++) {
        if (in->shape[d] == 1) continue;
        if (out->shape[d] == 1) {
            push_dim(a.red_shape, a.red_stride, NULL, &a.red_nd, in->shape[d], in->strides[d], 0,
                     false);
            a.n_red *= in->shape[d];
        } else {
            push_dim(a.out_shape, a.out_in_stride, a.out_stride, &a.out_nd, out->shape[d],
                     in->strides[d], out->strides[d], true);
        }
    }
    if (a.n_out == 0) return 0;
    char name[32];
    void *ip = cuda_data_ptr(in), *op = cuda_data_ptr(out);
    if (a.n_red <= 128) { // short rows: a thread per output, not a block
        snprintf(name, sizeof name, "reduce_rows_%s_%s", kind == REDUCE_MAX ? "max" : "sum",
                 in->dtype == TENSOR_F64 ? "f64" : "f32");
        void *k = cuda_fixed_kernel(name);
        void *args[] = {&ip, &op, &a};
        return k ? cuda_launch(k, name, d3(cuda_stride_blocks(a.n_out), 1, 1), d3(256, 1, 1), args)
                 : -1;
    }
    snprintf(name, sizeof name, "reduce_%s_%s", kind == REDUCE_MAX ? "max" : "sum",
             in->dtype == TENSOR_F64 ? "f64" : "f32");
    void *k = cuda_fixed_kernel(name);
    if (!k) return -1;
    // Few outputs over long reductions: split each reduction over blocks, then sum the partials.
    long long target = 4LL * cuda_sm_count(), splits = 1;
    if (a.n_out < target && a.n_red >= 8192) {
        splits = (target + a.n_out - 1) / a.n_out;
        if (splits > a.n_red / 2048) splits = a.n_red / 2048;
        if (splits > 65535) splits = 65535;
    }
    if (splits <= 1) {
        a.chunk = a.n_red;
        a.splits = 1;
        void *args[] = {&ip, &op, &a};
        return cuda_launch(k, name, d3((unsigned)a.n_out, 1, 1), d3(256, 1, 1), args);
    }
    a.chunk = (a.n_red + splits - 1) / splits;
    a.splits = (int)splits;
    size_t esize = (size_t)tensor_dtype_size(in->dtype);
    void *partial = cuda_alloc((size_t)(a.n_out * splits) * esize);
    if (!partial) return -1;
    void *args[] = {&ip, &partial, &a};
    int rc = cuda_launch(k, name, d3((unsigned)a.n_out, (unsigned)splits, 1), d3(256, 1, 1), args);
    // second pass: out[o] = reduce(partial[o * splits ... ])
    cuda_red_args b = {.n_out = a.n_out,
                       .n_red = splits,
                       .out_nd = a.out_nd,
                       .red_nd = 1,
                       .chunk = splits,
                       .splits = 1};
    memcpy(b.out_shape, a.out_shape, sizeof b.out_shape);
    memcpy(b.out_stride, a.out_stride, sizeof b.out_stride);
    long long st = splits; // partials are contiguous (n_out, splits) in the output's index order
    for (int d = a.out_nd - 1; d >= 0; d--) {
        b.out_in_stride[d] = st;
        st *= a.out_shape[d];
    }
    b.red_shape[0] = splits;
    b.red_stride[0] = 1;
    void *args2[] = {&partial, &op, &b};
    if (!rc) rc = cuda_launch(k, name, d3((unsigned)a.n_out, 1, 1), d3(256, 1, 1), args2);
    cuda_free(partial);
    return rc;
}

static int run_igemm(const char *base, tensor_dtype dt, const void *a, const void *b, void *c,
                     cuda_gemm_args *g, int batch) {
    if (g->M == 0 || g->N == 0 || batch == 0) return 0; // nothing to write (K = 0 writes zeros)
    char name[64];
    snprintf(name, sizeof name, "%s_%s", base,
             dt == TENSOR_F64     ? "f64"
             : cuda_rt.allow_tf32 ? (cuda_rt.gemm_pipelined ? "f32_tf32_pipelined" : "f32_tf32")
                                  : "f32_exact");
    void *k = cuda_fixed_kernel(name);
    if (!k) return -1;
    void *args[] = {&a, &b, &c, g};
    return cuda_launch(
        k, name, d3((unsigned)((g->N + 127) / 128), (unsigned)((g->M + 63) / 64), (unsigned)batch),
        d3(256, 1, 1), args);
}

// One GEMM whose K is split over blocks when its output has too few tiles to fill the GPU and K
// is long (a weight gradient's images x pixels, a dense layer's features): the blocks write
// partials, summed in a fixed order (deterministic). C is contiguous (M, N). With `add`,
// C += the product (a leaf gradient): the partials' sum adds it (unsplit: the product goes to
// a workspace first, then one pass adds it).
static int run_split_k(const char *base, tensor_dtype dt, const void *a, const void *b, void *c,
                       cuda_gemm_args *d, int add) {
    long long tiles = (long long)((d->N + 127) / 128) * ((d->M + 63) / 64),
              target = 2LL * cuda_sm_count();
    int splits = 1;
    if (tiles < target && d->K >= 1024) {
        splits = (int)((target + tiles - 1) / tiles);
        if (splits > d->K / 512) splits = d->K / 512;
        if (splits > 256) splits = 256;
    }
    d->k_chunk = ((d->K + splits - 1) / splits + 31) / 32 * 32; // whole tiles (BK is 16 or 32)
    splits = d->k_chunk ? (d->K + d->k_chunk - 1) / d->k_chunk : 1;
    if (splits <= 1 && !add) {
        d->k_chunk = strcmp(base, "matmul") ? d->K : 0;
        return run_igemm(base, dt, a, b, c, d, 1);
    }
    if (splits <= 1) d->k_chunk = strcmp(base, "matmul") ? d->K : 0;
    d->a_bs = d->b_bs = 0; // z is the split, not a batch
    size_t esize = (size_t)tensor_dtype_size(dt);
    long long mn = (long long)d->M * d->N;
    void *ws = cuda_alloc((size_t)(mn * splits) * esize);
    if (!ws) return -1;
    int rc = run_igemm(base, dt, a, b, ws, d, splits);
    if (!rc) {
        const char *name = dt == TENSOR_F64 ? "splitk_sum_f64" : "splitk_sum_f32";
        void *k = cuda_fixed_kernel(name);
        void *args[] = {&ws, &c, &mn, &splits, &add};
        rc = k ? cuda_launch(k, name, d3(cuda_stride_blocks(mn), 1, 1), d3(256, 1, 1), args) : -1;
    }
    cuda_free(ws);
    return rc;
}

static int cuda_gemm_add(const gemm_args *g) {
    if (g->batch != 1) {
        err_set("CUDA: gemm_add takes one product, not a batch of %lld", (long long)g->batch);
        return -1;
    }
    cuda_gemm_args d = {.M = (int)g->M,
                        .N = (int)g->N,
                        .K = (int)g->K,
                        .a_rs = g->a_row_stride,
                        .a_cs = g->a_col_stride,
                        .b_rs = g->b_row_stride,
                        .b_cs = g->b_col_stride};
    return run_split_k("matmul", g->c->dtype, cuda_data_ptr(g->a), cuda_data_ptr(g->b),
                       cuda_data_ptr(g->c), &d, 1);
}

static int cuda_gemm(const gemm_args *g) {
    cuda_gemm_args d = {.M = (int)g->M,
                        .N = (int)g->N,
                        .K = (int)g->K,
                        .a_bs = g->a_batch_stride,
                        .a_rs = g->a_row_stride,
                        .a_cs = g->a_col_stride,
                        .b_bs = g->b_batch_stride,
                        .b_rs = g->b_row_stride,
                        .b_cs = g->b_col_stride};
    size_t es = (size_t)tensor_dtype_size(g->c->dtype);
    char *a = cuda_data_ptr(g->a), *b = cuda_data_ptr(g->b), *c = cuda_data_ptr(g->c);
    if (g->batch == 1) return run_split_k("matmul", g->c->dtype, a, b, c, &d, 0);
    // the grid's z holds at most 65,535 batch entries: larger batches in slices
    for (int64_t b0 = 0; b0 < g->batch; b0 += 65535) {
        int n = (int)(g->batch - b0 < 65535 ? g->batch - b0 : 65535);
        if (run_igemm("matmul", g->c->dtype, a + (size_t)(b0 * g->a_batch_stride) * es,
                      b + (size_t)(b0 * g->b_batch_stride) * es,
                      c + (size_t)(b0 * g->M * g->N) * es, &d, n))
            return -1;
    }
    return 0;
}

static cuda_gemm_args conv_args(const conv_geometry *g) {
    return (cuda_gemm_args){.n = (int)g->N,
                            .c = (int)g->C,
                            .h = (int)g->H,
                            .w = (int)g->W,
                            .k = (int)g->K,
                            .r = (int)g->R,
                            .s = (int)g->S,
                            .oh = (int)g->OH,
                            .ow = (int)g->OW,
                            .sh = (int)g->stride_h,
                            .sw = (int)g->stride_w,
                            .pt = (int)g->pad_top,
                            .pl = (int)g->pad_left};
}

// The GEMM's kernels hold sizes and offsets within one image in `int`.
static int check_int_sizes(const char *op, const conv_geometry *g) {
    int64_t v[] = {g->N * g->OH * g->OW, g->N * g->H * g->W, g->C * g->R * g->S,
                   g->K * g->R * g->S,   g->C * g->H * g->W, g->K * g->OH * g->OW};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (v[i] > 2147483647) {
            err_set("CUDA: %s: a dimension product (%lld) exceeds the kernels' 32-bit index range",
                    op, (long long)v[i]);
            return -1;
        }
    return 0;
}

// The GEMM's tile depth (kernels/fixed.cu's BK: the register-buffered TF32 form's 32, the
// exact and pipelined forms' 16).
static int tile_depth(tensor_dtype dt) {
    return dt == TENSOR_F32 && cuda_rt.allow_tf32 && !cuda_rt.gemm_pipelined ? 32 : 16;
}

// A copy of the weight w (d0, d1, d2) with element (i0, i1, i2) at i0*s0 + i1*s1 + i2*s2, in a
// block from the cache (the caller frees it after its launches: the stream orders reuse).
static void *permuted(const tensor *w, int64_t d0, int64_t d1, int64_t d2, long long s0,
                      long long s1, long long s2) {
    size_t es = (size_t)tensor_dtype_size(w->dtype);
    void *out = cuda_alloc((size_t)(d0 * d1 * d2) * es);
    if (!out) return NULL;
    const char *name = w->dtype == TENSOR_F64 ? "permute3_f64" : "permute3_f32";
    void *k = cuda_fixed_kernel(name);
    long long total = d0 * d1 * d2;
    unsigned blocks = cuda_stride_blocks(total);
    int a0 = (int)d0, a1 = (int)d1, a2 = (int)d2;
    void *in = cuda_data_ptr(w);
    void *args[] = {&in, &out, &a0, &a1, &a2, &s0, &s1, &s2};
    if (!k || cuda_launch(k, name, d3(blocks, 1, 1), d3(256, 1, 1), args)) {
        cuda_free(out);
        return NULL;
    }
    return out;
}

static int cuda_conv_forward(const conv_geometry *g, const tensor *x, const tensor *w,
                             const tensor *bias, tensor *y) {
    if (check_int_sizes("conv2d forward", g)) return -1;
    cuda_gemm_args d = conv_args(g);
    d.bias = bias ? cuda_data_ptr(bias) : NULL;
    d.M = (int)g->K, d.N = (int)(g->N * g->OH * g->OW), d.K = (int)(g->C * g->R * g->S);
    d.tap_major = g->C % tile_depth(y->dtype) == 0;
    if (!d.tap_major)
        return run_igemm("conv_forward", y->dtype, cuda_data_ptr(w), cuda_data_ptr(x),
                         cuda_data_ptr(y), &d, 1);
    // K ordered (tap, channel): w as (K, R*S, C), so a tile's A loads are contiguous
    long long rs = g->R * g->S;
    void *wt = permuted(w, g->K, g->C, rs, rs * g->C, 1, g->C);
    if (!wt) return -1;
    int rc = run_igemm("conv_forward", y->dtype, wt, cuda_data_ptr(x), cuda_data_ptr(y), &d, 1);
    cuda_free(wt);
    return rc;
}

static int cuda_conv_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w,
                                    const tensor *bias, tensor *dx) {
    if (check_int_sizes("conv2d input gradient", g)) return -1;
    cuda_gemm_args d = conv_args(g);
    d.bias = bias ? cuda_data_ptr(bias) : NULL;
    if (g->C <= 4) { // a 64-row GEMM tile would be mostly empty: one thread per dx element
        const char *name =
            dx->dtype == TENSOR_F64 ? "conv_bwd_input_direct_f64" : "conv_bwd_input_direct_f32";
        void *k = cuda_fixed_kernel(name);
        if (!k) return -1;
        long long total = g->N * g->C * g->H * g->W;
        if (total == 0) return 0;
        unsigned blocks = cuda_stride_blocks(total);
        void *dyp = cuda_data_ptr(dy), *wp = cuda_data_ptr(w), *dxp = cuda_data_ptr(dx);
        void *args[] = {&dyp, &wp, &dxp, &d};
        return cuda_launch(k, name, d3(blocks, 1, 1), d3(256, 1, 1), args);
    }
    // by phase: block z covers the input pixels (iy % sh, ix % sw) = (z / sw, z % sw)
    d.hq = (int)((g->H + g->stride_h - 1) / g->stride_h);
    d.wq = (int)((g->W + g->stride_w - 1) / g->stride_w);
    d.rq = (int)((g->R + g->stride_h - 1) / g->stride_h);
    d.sq = (int)((g->S + g->stride_w - 1) / g->stride_w);
    d.M = (int)g->C, d.N = (int)(g->N * d.hq * d.wq), d.K = (int)(g->K * d.rq * d.sq);
    d.tap_major = g->K % tile_depth(dx->dtype) == 0;
    int phases = (int)(g->stride_h * g->stride_w);
    if (!d.tap_major)
        return run_igemm("conv_backward_input", dx->dtype, cuda_data_ptr(w), cuda_data_ptr(dy),
                         cuda_data_ptr(dx), &d, phases);
    // K ordered (tap, output channel): w as (R*S, C, K), contiguous along the output channel
    long long rs = g->R * g->S;
    void *wt = permuted(w, g->K, g->C, rs, 1, g->K, g->C * g->K);
    if (!wt) return -1;
    int rc = run_igemm("conv_backward_input", dx->dtype, wt, cuda_data_ptr(dy), cuda_data_ptr(dx),
                       &d, phases);
    cuda_free(wt);
    return rc;
}

static int conv_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy,
                                tensor *dw, int add) {
    if (check_int_sizes("conv2d weight gradient", g)) return -1;
    cuda_gemm_args d = conv_args(g);
    d.M = (int)g->K, d.N = (int)(g->C * g->R * g->S), d.K = (int)(g->N * g->OH * g->OW);
    d.tap_major = (g->OH * g->OW) % tile_depth(dw->dtype) == 0; // a tile lies within one image
    return run_split_k("conv_backward_weight", dw->dtype, cuda_data_ptr(dy), cuda_data_ptr(x),
                       cuda_data_ptr(dw), &d, add);
}
static int cuda_conv_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy,
                                     tensor *dw) {
    return conv_backward_weight(g, x, dy, dw, 0);
}
static int cuda_conv_backward_weight_add(const conv_geometry *g, const tensor *x, const tensor *dy,
                                         tensor *dw) {
    return conv_backward_weight(g, x, dy, dw, 1);
}

// Per-channel sums (backend.h): one launch of channel_sums over (channel, split) blocks, the
// last block of each channel writing its results (a ticket per channel, in cuda_tickets).
unsigned *cuda_tickets;

static int cuda_channel_sums(const channel_sums_args *b) {
    const tensor *x = b->x;
    int64_t C = x->shape[1], hw = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    cuda_sums_args a = {.m = x->shape[0] * hw,
                        .c = (int)C,
                        .hw = (int)hw,
                        .mode = b->mode == SUMS_STATS     ? CUDA_SUMS_STATS
                                : b->mode == SUMS_BN_GRAD ? CUDA_SUMS_BN_GRAD
                                                          : CUDA_SUMS_PLAIN,
                        .act = b->act,
                        .update_running = b->running_mean != NULL,
                        .eps = b->eps,
                        .slope = b->slope,
                        .momentum = b->momentum};
    if (C == 0 || a.m == 0) return 0;
    if (C > CUDA_TICKETS || hw > 2147483647) {
        err_set("CUDA: per-channel sums over %lld channels of %lld values exceed the kernel's "
                "range (%d channels)",
                (long long)C, (long long)hw, CUDA_TICKETS);
        return -1;
    }
    a.unbias = a.m > 1 ? (double)a.m / (double)(a.m - 1) : 1.0;
    // as the reductions split: at least 4 blocks an SM in all, at least 2,048 values a block
    long long target = 4LL * cuda_sm_count(), splits = 1;
    if (C < target && a.m >= 8192) {
        splits = (target + C - 1) / C;
        if (splits > a.m / 2048) splits = a.m / 2048;
        if (splits > 65535) splits = 65535;
    }
    a.chunk = (a.m + splits - 1) / splits;
    a.splits = (int)((a.m + a.chunk - 1) / a.chunk);
    bool f64 = x->dtype == TENSOR_F64, wide = tensor_numel(x) > 2147483647;
    char name[32];
    snprintf(name, sizeof name, "channel_sums%s_%s", wide ? "_wide" : "", f64 ? "f64" : "f32");
    void *k = cuda_fixed_kernel(name);
    if (!k) return -1;
    double *part = NULL;
    if (a.splits > 1 && !(part = cuda_alloc((size_t)(C * a.splits) * 2 * sizeof(double))))
        return -1;
    const tensor *in[6] = {x, b->g, b->mean, b->var, b->gamma, b->beta};
    tensor *out[6] = {b->out1, b->out2, b->acc1, b->acc2, b->running_mean, b->running_var};
    void *ip[6], *op[6];
    for (int i = 0; i < 6; i++) {
        ip[i] = in[i] ? cuda_data_ptr(in[i]) : NULL;
        op[i] = out[i] ? cuda_data_ptr(out[i]) : NULL;
    }
    void *args[] = {&ip[0], &ip[1], &ip[2], &ip[3], &ip[4], &ip[5], &part, &cuda_tickets,
                    &op[0], &op[1], &op[2], &op[3], &op[4], &op[5], &a};
    static const char *const what[3] = {"channel_sums (batch norm statistics)",
                                        "channel_sums (batch norm gradient)",
                                        "channel_sums (bias gradient)"};
    int rc =
        cuda_launch(k, what[a.mode], d3((unsigned)C, (unsigned)a.splits, 1), d3(256, 1, 1), args);
    if (part) cuda_free(part);
    return rc;
}

static const backend cuda_backend = {
    .mem = {.name = "cuda",
            .device = DEVICE_CUDA,
            .alloc = cuda_alloc,
            .free = cuda_free,
            .copy_from_host = cuda_copy_from_host,
            .copy_to_host = cuda_copy_to_host,
            .copy_device = cuda_copy_device,
            .synchronize = cuda_synchronize},
    .elementwise = cuda_elementwise,
    .reduce = cuda_reduce,
    .gemm = cuda_gemm,
    .conv2d_forward = cuda_conv_forward,
    .conv2d_backward_input = cuda_conv_backward_input,
    .conv2d_backward_weight = cuda_conv_backward_weight,
    .conv2d_backward_weight_add = cuda_conv_backward_weight_add,
    .gemm_add = cuda_gemm_add,
    .channel_sums = cuda_channel_sums,
};

static int init(void) {
    const char *which = getenv("BANIS_CUDA");
    bool emulated = which && !strcmp(which, "emulated");
    if (which && *which && !emulated && strcmp(which, "gpu")) {
        snprintf(cuda_rt.why, sizeof cuda_rt.why,
                 "CUDA: BANIS_CUDA=%s is neither 'gpu' nor 'emulated'", which);
        return -1;
    }
    cuda_rt.dev = emulated ? cudev_emulated(cuda_rt.why, sizeof cuda_rt.why)
                           : cudev_cuda(cuda_rt.why, sizeof cuda_rt.why);
    if (!cuda_rt.dev) return -1;
    cuda_rt.arch = cuda_rt.dev->arch;
    cuda_rt.sms = cuda_rt.dev->sms;
    const char *tf32 = getenv("BANIS_ALLOW_TF32");
    cuda_rt.allow_tf32 = !(tf32 && !strcmp(tf32, "0"));
    const char *gemm = getenv("BANIS_CUDA_GEMM");
    if (gemm && strcmp(gemm, "pipelined") && strcmp(gemm, "registers")) {
        snprintf(cuda_rt.why, sizeof cuda_rt.why,
                 "CUDA: BANIS_CUDA_GEMM=%s is neither 'registers' (the default) nor 'pipelined'",
                 gemm);
        return -1;
    }
    cuda_rt.gemm_pipelined = gemm && !strcmp(gemm, "pipelined");
    if (cuda_load_library(cuda_fixed_source(), "banis fixed kernels", &cuda_rt.fixed)) {
        snprintf(cuda_rt.why, sizeof cuda_rt.why, "%s", err_message());
        return -1;
    }
    if (cuda_graph_init()) {
        snprintf(cuda_rt.why, sizeof cuda_rt.why, "%s", err_message());
        return -1;
    }
    // the per-channel sums' tickets, zero (each launch leaves them so): made at start, so that
    // a captured step allocates nothing for them
    static const unsigned zeros[CUDA_TICKETS];
    cuda_tickets = cuda_alloc(sizeof zeros);
    if (!cuda_tickets || cuda_copy_from_host(cuda_tickets, zeros, sizeof zeros)) {
        snprintf(cuda_rt.why, sizeof cuda_rt.why, "%s", err_message());
        return -1;
    }
    return 0;
}

const backend *backend_cuda(void) {
    if (!cuda_rt.ready) cuda_rt.ready = init() ? -1 : 1;
    if (cuda_rt.ready < 0) {
        err_set("%s", cuda_rt.why);
        return NULL;
    }
    return &cuda_backend;
}

void backend_cuda_allow_tf32(bool allow) { cuda_rt.allow_tf32 = allow; }

backend_counters backend_cuda_counters(void) { return cuda_rt.counters; }

const char *backend_cuda_device_name(void) {
    return cuda_rt.dev ? cuda_rt.dev->name : "no CUDA device";
}
bool backend_cuda_is_emulated(void) { return cuda_rt.dev && cuda_rt.dev->emulated; }
