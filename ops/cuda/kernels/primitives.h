// Every PTX instruction the kernels use, each one named device function with two bodies:
// inline PTX for NVRTC, and under BANIS_EMULATED (the emulated CUDA device, ops/cuda/emu/) an
// emulation written from the PTX ISA's own definition. No inline asm anywhere else.
#pragma once

// cvt.rna.tf32.f32 (PTX ISA, "cvt"): round an FP32 value to TF32 (10 explicit mantissa bits),
// to nearest with ties away from zero; the result is an FP32 bit pattern with the low 13 bits 0.
__device__ __forceinline__ unsigned to_tf32(float x) {
#ifdef BANIS_EMULATED
    unsigned u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) // Inf stays Inf; NaN stays a (quiet) NaN
        return (u & 0x007fffffu) ? (u | 0x00400000u) & 0xffffe000u : u;
    // add half of the last kept place to the magnitude, then truncate: ties go away from zero
    return (u + 0x1000u) & 0xffffe000u;
#else
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#endif
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (PTX ISA, "Matrix Fragments for
// mma.m16n8k8", .tf32): D (16x8) = A (16x8, row) x B (8x8, col) + C, warp-wide. With
// g = lane / 4 and t = lane % 4, lane holds
//   A: a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4]
//   B: b0 = B[t][g], b1 = B[t+4][g]
//   C, D: c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
// The operands are TF32 (the low 13 bits of each FP32 pattern are ignored); products and sums
// in FP32. The emulation gathers the 32 lanes' fragments at a warp barrier (a lane missing is
// a fault), and every lane computes its part of D in k order.
__device__ __forceinline__ void mma_tf32(float *d, const unsigned *a, const unsigned *b) {
#ifdef BANIS_EMULATED
    struct frag {
        unsigned a[4], b[2];
        float c[4];
    };
    frag mine;
    for (int i = 0; i < 4; i++) mine.a[i] = a[i] & 0xffffe000u;
    for (int i = 0; i < 2; i++) mine.b[i] = b[i] & 0xffffe000u;
    for (int i = 0; i < 4; i++) mine.c[i] = d[i];
    const void *const *all = __emu_warp_gather(&mine, "mma.sync.m16n8k8");
    auto f32 = [](unsigned u) {
        float f;
        memcpy(&f, &u, 4);
        return f;
    };
    float A[16][8], B[8][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const frag *q = (const frag *)all[l];
        int g = l / 4, t = l % 4;
        A[g][t] = f32(q->a[0]);
        A[g + 8][t] = f32(q->a[1]);
        A[g][t + 4] = f32(q->a[2]);
        A[g + 8][t + 4] = f32(q->a[3]);
        B[t][g] = f32(q->b[0]);
        B[t + 4][g] = f32(q->b[1]);
        C[g][2 * t] = q->c[0];
        C[g][2 * t + 1] = q->c[1];
        C[g + 8][2 * t] = q->c[2];
        C[g + 8][2 * t + 1] = q->c[3];
    }
    int lane = __emu_lane(), g = lane / 4, t = lane % 4;
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; i++) {
        float acc = C[rows[i]][cols[i]];
        for (int k = 0; k < 8; k++) acc += A[rows[i]][k] * B[k][cols[i]];
        d[i] = acc;
    }
    __emu_warp_release("mma.sync.m16n8k8");
#else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
