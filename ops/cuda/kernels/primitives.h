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

// cp.async.ca.shared.global [dst], [src], 4, src_bytes and cp.async.cg.shared.global [dst],
// [src], 16, src_bytes (PTX ISA, "cp.async"): an asynchronous copy from global to shared
// memory of 4 (or 16) bytes, src_bytes of them read and the rest zero-filled (src_bytes 0: a
// predicated-off copy, src not read). Both addresses aligned to the copy's size. The copy joins
// the thread's open group; its data is only sure to be there after the cp_async_wait that
// completes that group (and, for other threads, the __syncthreads after it).
__device__ __forceinline__ void cp_async4(void *dst, const void *src, int src_bytes) {
#ifdef BANIS_EMULATED
    __emu_cp_async(dst, src, 4, src_bytes);
#else
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
#ifdef BANIS_EMULATED
    __emu_cp_async(dst, src, 16, src_bytes);
#else
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src),
                 "r"(src_bytes));
#endif
}
// cp.async.commit_group: the copies issued since the last commit become one group.
__device__ __forceinline__ void cp_async_commit() {
#ifdef BANIS_EMULATED
    __emu_cp_commit();
#else
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// cp.async.wait_group N: wait until at most the N most recent groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef BANIS_EMULATED
    __emu_cp_wait(N);
#else
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (PTX ISA, "ldmatrix"), warp-wide: four 8x8 matrices
// of 16-bit elements, each row 16 contiguous bytes of shared memory at a 16-byte aligned
// address; lanes 8i..8i+7 give the addresses of matrix i's rows 0..7, and lane l receives in
// r[i] the 32 bits of matrix i's row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1. On 32-bit data
// (TF32) a row is 4 words and r[i] is word l % 4 of row l / 4: an mma.m16n8k8 tf32 A fragment
// from an m-major tile when the four matrices are (rows 0-7, words 0-3), (rows 8-15, words
// 0-3), (rows 0-7, words 4-7), (rows 8-15, words 4-7). The emulation gathers the 32 addresses.
__device__ __forceinline__ void ldmatrix_x4(unsigned *r, const void *row) {
#ifdef BANIS_EMULATED
    if ((uintptr_t)row % 16)
        __emu_fault("ldmatrix: row address %p is not 16-byte aligned (lane %d)", row, __emu_lane());
    const void *const *all = __emu_warp_gather(row, "ldmatrix.x4");
    int lane = __emu_lane();
    for (int i = 0; i < 4; i++)
        memcpy(&r[i], (const char *)all[8 * i + lane / 4] + 4 * (lane % 4), 4);
    __emu_warp_release("ldmatrix.x4");
#else
    unsigned a = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
#endif
}
