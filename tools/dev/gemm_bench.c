// GEMM throughput on this machine at BANIS's sizes (the matrix products inside its dense
// layers and, via im2col, its convolutions). Checks each result against a naive product.
// Usage: gemm-bench [--reps N]
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tensor/clock.h"
#include "../../ops/cpu/cpu.h"

typedef struct {
    const char *what;
    int64_t M, N, K;
} shape;

int main(int argc, char **argv) {
    int reps = 5;
    if (argc == 3 && !strcmp(argv[1], "--reps")) reps = atoi(argv[2]);
    if (argc != 1 && (argc != 3 || strcmp(argv[1], "--reps") || reps < 1)) {
        fprintf(stderr, "usage: gemm-bench [--reps N]\n");
        return 2;
    }
    // im2col GEMMs are per sample: (K out-channels) x (OH*OW) x (C*R*S).
    const shape shapes[] = {
        {"G dense 100->8*8*256, batch 128", 128, 16384, 100},
        {"G convT 8x8 256->256 (per sample)", 256, 64, 6400},
        {"G convT 16x16 256->128 (per sample)", 6400, 256, 128},
        {"E conv 64x64 1->128 s2 (per sample)", 128, 1024, 25},
        {"E conv 32x32 128->256 s2 (per sample)", 256, 256, 3200},
        {"E conv 16x16 256->512 s2 (per sample)", 512, 64, 6400},
        {"E dense 8192->100, batch 128", 128, 100, 8192},
        {"E dense 8192->100, batch 16", 16, 100, 8192},
        {"E dense weight gradient, batch 16", 8192, 100, 16},
        {"square 1024", 1024, 1024, 1024},
    };
    printf("GEMM on the CPU backend, %d threads, float32 (best of %d)\n", cpu_threads(), reps);
    printf("%-42s %6s %6s %6s %10s %9s\n", "shape", "M", "N", "K", "GFLOP/s", "max err");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        float *a = malloc(sizeof(float) * (size_t)(M * K)),
              *b = malloc(sizeof(float) * (size_t)(K * N));
        float *c = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++) a[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5);
        for (int64_t i = 0; i < K * N; i++) b[i] = (float)((i * 104729 % 1000) / 1000.0 - 0.5);
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now_seconds();
            cpu_gemm_parallel_f32(M, N, K, a, K, 1, b, N, 1, c, N, false);
            double t = now_seconds() - t0;
            if (t < best) best = t;
        }
        // spot-check 64 entries against a double-precision dot product
        double err = 0;
        for (int t = 0; t < 64; t++) {
            int64_t i = (t * 37) % M, j = (t * 101) % N;
            double ref = 0;
            for (int64_t k = 0; k < K; k++) ref += (double)a[i * K + k] * b[k * N + j];
            double e = fabs(ref - c[i * N + j]) / (1 + fabs(ref));
            if (e > err) err = e;
        }
        printf("%-42s %6lld %6lld %6lld %10.1f %9.1e%s\n", shapes[s].what, (long long)M,
               (long long)N, (long long)K, 2.0 * (double)M * (double)N * (double)K / best / 1e9,
               err, err > 1e-4 ? "  WRONG" : "");
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
