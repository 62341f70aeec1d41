// Kernel sources for NVRTC. Rendering needs no GPU and no CUDA runtime, so the same code
// serves the backend and tools/nvrtc-check (which compiles every kernel the library can
// generate, on machines without a GPU too).
#pragma once
#include <stdbool.h>

#include "../backend.h"

#define CUDA_EW_MAX_OPERANDS (EW_MAX_INPUTS + EW_MAX_OUTPUTS)

// The argument block of every rendered elementwise kernel (passed by value). Scalars and the
// random stream are arguments, so a new learning rate or a new dropout mask is not a new kernel.
typedef struct {
    long long n;
    int shape[TENSOR_MAX_DIMS];
    long long strides[CUDA_EW_MAX_OPERANDS][TENSOR_MAX_DIMS];
    void *ptr[CUDA_EW_MAX_OPERANDS];
    unsigned long long rng_seed, rng_offset;
    const unsigned long long *rng_delta; // device: added to rng_offset (a graph's advance)
    double scalar[EW_MAX_NODES];
} cuda_ew_args;

// How a kernel walks its operands: dimensions of extent 1 dropped and neighbours that are
// contiguous in every operand merged (a batch-norm over (N, C, H, W) becomes (N, C, H*W)),
// then either one flat index for all (contiguous) or per-dimension strides, in 32-bit index
// arithmetic when every offset fits.
typedef struct {
    int nd;
    bool contig, idx32;
} cuda_ew_layout;
// Plans the walk and, if `a` is given, fills its n, shape, strides and pointers.
cuda_ew_layout cuda_ew_plan(const ew_program *p, tensor *const *outs, const tensor *const *ins,
                            cuda_ew_args *a);
// The kernel's key, computed without rendering: the program's structure (ew_hash), the
// operands' dtypes and the layout.
uint64_t cuda_ew_key(const ew_program *p, const cuda_ew_layout *L, tensor *const *outs,
                     const tensor *const *ins);
// Renders `p` over these operands (outputs then inputs) as the kernel of that key. Writes the
// kernel's name, ew_<op>_<key> (the op that first uses it: a profiler's list is readable), and
// returns a malloc'd source, or NULL.
char *cuda_render_elementwise(const ew_program *p, const cuda_ew_layout *L, tensor *const *outs,
                              const tensor *const *ins, const char *op, char name[64]);

// The fixed kernels (reductions, GEMM, implicit-GEMM convolutions in exact FP32/FP64 and
// TF32 tensor-core forms), one source; cuda_fixed_kernel_names lists its entry points.
const char *cuda_fixed_source(void);
extern const char *const cuda_fixed_kernel_names[];
extern const int cuda_fixed_kernel_count;
