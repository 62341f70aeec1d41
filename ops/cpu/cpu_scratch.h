// What the CPU kernels share and call back for (defined in cpu_scratch.c, below the backend):
// the number of threads they may use and per-thread scratch memory.
#pragma once
#include <stddef.h>

// The threads a parallel kernel may use (OpenMP's, or 1).
int cpu_threads(void);
// Per-thread scratch buffer `slot` (0 .. CPU_SCRATCH_SLOTS - 1; the GEMM's packing uses 0 and 1,
// a convolution 2 to 4, a GEMM cut along its contraction 5) of at least `nbytes`, kept for the thread's life and
// freed when it exits. NULL when out of memory.
#define CPU_SCRATCH_SLOTS 6
void *cpu_scratch(int slot, size_t nbytes);
