// Batched matrix multiplication on the backend's GEMM; transposes are stride tricks.
#include "../tensor/error.h"
#include "backend.h"
#include "ops.h"

// C = A @ B for 2-D or 3-D operands (a 2-D B is shared across A's batch). With `acc` (2-D
// operands, a backend with gemm_add): acc += A @ B instead, and acc is returned.
static tensor *matmul_to(tensor *a, tensor *b, tensor *acc) {
    char sa[96], sb[96];
    if (a->ndim < 2 || a->ndim > 3 || b->ndim < 2 || b->ndim > 3 ||
        (a->ndim == 2 && b->ndim == 3)) {
        err_set("matmul: expects (M,K)@(K,N), (B,M,K)@(B,K,N) or (B,M,K)@(K,N); got %s @ %s",
                tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    int64_t batch = a->ndim == 3 ? a->shape[0] : 1;
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    if (K != K2 || (b->ndim == 3 && b->shape[0] != batch)) {
        err_set("matmul: shapes %s and %s do not match", tensor_shape_str(a, sa, sizeof sa),
                tensor_shape_str(b, sb, sizeof sb));
        return NULL;
    }
    if (a->dtype != b->dtype || tensor_device(a) != tensor_device(b)) {
        err_set("matmul: operands differ in dtype or device");
        return NULL;
    }
    tensor *c = acc            ? acc
                : a->ndim == 3 ? tensor_empty(a->dtype, SHAPE(batch, M, N), tensor_device(a))
                               : tensor_empty(a->dtype, SHAPE(M, N), tensor_device(a));
    if (!c) return NULL;
    int ao = a->ndim - 2, bo = b->ndim - 2;
    gemm_args g = {
        .batch = batch,
        .M = M,
        .N = N,
        .K = K,
        .a = a,
        .b = b,
        .c = c,
        .a_batch_stride = a->ndim == 3 ? a->strides[0] : 0,
        .a_row_stride = a->strides[ao],
        .a_col_stride = a->strides[ao + 1],
        .b_batch_stride = b->ndim == 3 ? b->strides[0] : 0,
        .b_row_stride = b->strides[bo],
        .b_col_stride = b->strides[bo + 1],
    };
    op_flops_add(2 * batch * M * N * K);
    const backend *be = tensor_backend(a);
    if (acc ? be->gemm_add(&g) : be->gemm(&g)) {
        err_prefix("matmul: ");
        return NULL;
    }
    return c;
}

static tensor *matmul_raw(tensor *a, tensor *b) { return matmul_to(a, b, NULL); }

static int matmul_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *a = n->inputs[0], *b = n->inputs[1];
    if (a->requires_grad) {
        gin[0] = matmul_raw(g, op_transpose(b, -2, -1));
        if (!gin[0]) return -1;
    }
    if (b->requires_grad) {
        if (b->ndim == 2 && a->ndim == 3) { // shared B: sum over the batch
            tensor *a2 = op_reshape(op_contiguous(a), SHAPE(-1, a->shape[2]));
            tensor *g2 = op_reshape(op_contiguous(g), SHAPE(-1, g->shape[2]));
            gin[1] = a2 && g2 ? matmul_raw(op_transpose(a2, 0, 1), g2) : NULL;
        } else if (a->ndim == 2 && tensor_backend(b)->gemm_add && ag_leaf_grad(b)) {
            // added to the leaf's gradient by the GEMM's own pass (CUDA)
            return matmul_to(op_transpose(a, -2, -1), g, ag_leaf_grad(b)) ? 0 : -1;
        } else {
            gin[1] = matmul_raw(op_transpose(a, -2, -1), g);
        }
        if (!gin[1]) return -1;
    }
    return 0;
}

tensor *op_matmul(tensor *a, tensor *b) {
    if (!a || !b) return NULL;
    tensor *c = matmul_raw(a, b);
    tensor *in[2] = {a, b};
    if (c && ag_record(c, "matmul", matmul_backward, 2, in, NULL, 0)) return NULL;
    return c;
}

static _Atomic int64_t flops;
int64_t op_flops(void) { return flops; }
void op_flops_reset(void) { flops = 0; }
void op_flops_add(int64_t n) { flops += n; }
