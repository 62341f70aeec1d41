// The fixed CUDA kernels (reductions, GEMM, implicit-GEMM convolutions): their source is
// kernels/fixed.cu, embedded at build time; NVRTC compiles it at run time like the rendered ones.
#include "cuda_render.h"

#include "fixed_cu.h" // generated from kernels/fixed.cu by embed.py: static const char fixed_cu[]

const char *cuda_fixed_source(void) { return fixed_cu; }

const char *const cuda_fixed_kernel_names[] = {
    "reduce_sum_f32",
    "reduce_max_f32",
    "reduce_sum_f64",
    "reduce_max_f64",
    "splitk_sum_f32",
    "splitk_sum_f64",
    "reduce_rows_sum_f32",
    "reduce_rows_max_f32",
    "reduce_rows_sum_f64",
    "reduce_rows_max_f64",
    "conv_bwd_input_direct_f32",
    "conv_bwd_input_direct_f64",
    "permute3_f32",
    "permute3_f64",
    "advance_u64",
    "channel_sums_f32",
    "channel_sums_f64",
    "channel_sums_wide_f32",
    "channel_sums_wide_f64",
    "matmul_f32_exact",
    "matmul_f64",
    "matmul_f32_tf32",
    "matmul_f32_tf32_pipelined",
    "conv_forward_f32_exact",
    "conv_forward_f64",
    "conv_forward_f32_tf32",
    "conv_forward_f32_tf32_pipelined",
    "conv_backward_input_f32_exact",
    "conv_backward_input_f64",
    "conv_backward_input_f32_tf32",
    "conv_backward_input_f32_tf32_pipelined",
    "conv_backward_weight_f32_exact",
    "conv_backward_weight_f64",
    "conv_backward_weight_f32_tf32",
    "conv_backward_weight_f32_tf32_pipelined",
};
const int cuda_fixed_kernel_count =
    (int)(sizeof cuda_fixed_kernel_names / sizeof *cuda_fixed_kernel_names);
