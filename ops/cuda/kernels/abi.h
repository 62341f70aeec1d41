// The argument blocks of the fixed kernels, included by the host C (ops/cuda/cuda_backend.c)
// and by the kernels (fixed.cu, inlined by ops/cuda/embed.py), so both sides share one layout.
// Sizes a kernel holds in `int` are checked on the host before a launch.
#pragma once

// Reductions: block (x, y) reduces elements [y * chunk, (y + 1) * chunk) of output x.
typedef struct {
    long long n_out, n_red;
    int out_nd, red_nd;
    long long out_shape[6], out_in_stride[6], out_stride[6], red_shape[6], red_stride[6];
    long long chunk;
    int splits; // > 1: write partial[x * splits + y] for a second pass
} cuda_red_args;

// The tiled GEMM: C (M x N) = A (M x K) B (K x N), batched matmul or implicit-GEMM convolution.
typedef struct {
    int M, N, K;
    long long a_bs, a_rs, a_cs, b_bs, b_rs, b_cs;    // matmul strides
    int n, c, h, w, k, r, s, oh, ow, sh, sw, pt, pl; // convolution geometry
    int k_chunk; // split K (weight gradient; matmul if > 0): block z covers [z * k_chunk, (z + 1) * k_chunk)
    int hq, wq, rq, sq; // input gradient by phase: pixels and taps per phase (ceil(h / sh), ...)
    int tap_major; // K ordered tap-major (channels a multiple of the tile depth): the weights are
                   // pre-permuted (forward (K, R*S, C), input gradient (R*S, C, K)); for the
                   // weight gradient: whole tiles within one image (OH*OW a multiple of it)
    const void *bias; // forward and input gradient: added to output row m (NULL: none)
} cuda_gemm_args;

// Per-channel sums (fixed.cu's channel_sums): x is (N, C, HW) contiguous; block (c, s) sums
// values [s * chunk, (s + 1) * chunk) of channel c's m; the last block of a channel to finish
// (a ticket per channel) sums the channel's partials and writes its results.
typedef struct {
    long long m, chunk; // values per channel (N * HW), and per block
    int c, hw, splits;  // channels, values per image and channel, blocks per channel
    int mode;           // CUDA_SUMS_STATS, CUDA_SUMS_BN_GRAD or CUDA_SUMS_PLAIN
    int act;            // batch norm's fused activation, in op_activation's order (ops/ops.h)
    int update_running; // statistics: the running mean and variance updated in place
    double eps, slope, momentum, unbias; // unbias = m / (m - 1), for the running variance
} cuda_sums_args;
#define CUDA_SUMS_STATS        0 // batch mean and biased variance (and the running ones)
#define CUDA_SUMS_BN_GRAD      1 // batch norm's dbeta = sum gp and dgamma = sum gp * xhat
#define CUDA_SUMS_PLAIN        2 // sum x (a bias gradient)
#define CUDA_BN_ACT_LEAKY_RELU 1
#define CUDA_BN_ACT_RELU       2
#define CUDA_BN_ACT_TANH       3
#define CUDA_BN_ACT_SIGMOID    4

// A captured graph's last kernel: ctr[i] += by[i] for i < n (the device's offsets of the random
// streams the graph draws from, advanced once per replay).
#define CUDA_GRAPH_MAX_RNGS 8
typedef struct {
    unsigned long long by[CUDA_GRAPH_MAX_RNGS];
    int n;
} cuda_advance_args;
