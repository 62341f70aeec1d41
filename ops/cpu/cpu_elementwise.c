// The elementwise IR interpreter: the index space is cut into chunks; for each chunk every
// live node is computed over the whole chunk (a tight loop the compiler vectorises), in the
// dtype of the program's first output (float32 programs in float, as the CUDA kernels), then the
// outputs are stored in their dtype.
#include <tgmath.h>
#include <string.h>

#include "../../tensor/error.h"
#include "../../tensor/rng.h"
#include "cpu.h"

#define CHUNK 256 // elements per work item: 256 measured a little faster than 128 and 512
_Static_assert(CHUNK <= RNG_BLOCKS_MAX,
               "a chunk's random numbers are drawn in one rng_blocks call");
#define MAX_OPERANDS (EW_MAX_INPUTS + EW_MAX_OUTPUTS)

typedef struct {
    char *base;
    tensor_dtype dtype;
    int64_t strides[TENSOR_MAX_DIMS];
} operand;

#define CPU_TEMPLATE "cpu_elementwise_impl.h" // its functions for float and double
#include "cpu_template.h"

int cpu_elementwise(const char *op, const ew_program *p, tensor *const *outs,
                    const tensor *const *ins) {
    (void)op; // the CPU's loops need no name (its profile wrapper uses it)
    const tensor *o0 = outs[0];
    int64_t numel = tensor_numel(o0);
    if (numel == 0) return 0;
    // Operands: outputs first, then inputs. Collapse dimensions that are contiguous in all.
    operand ops[MAX_OPERANDS];
    int n_ops = p->n_outputs + p->n_inputs;
    for (int k = 0; k < n_ops; k++) {
        const tensor *t = k < p->n_outputs ? outs[k] : ins[k - p->n_outputs];
        ops[k].base = cpu_data(t);
        ops[k].dtype = t->dtype;
        memcpy(ops[k].strides, t->strides, sizeof ops[k].strides);
    }
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = 0;
    for (int d = 0; d < o0->ndim; d++) {
        if (o0->shape[d] == 1) continue;
        bool merge = ndim > 0;
        for (int k = 0; merge && k < n_ops; k++)
            if (ops[k].strides[ndim - 1] != ops[k].strides[d] * o0->shape[d]) merge = false;
        if (merge) {
            shape[ndim - 1] *= o0->shape[d];
            for (int k = 0; k < n_ops; k++) ops[k].strides[ndim - 1] = ops[k].strides[d];
        } else {
            shape[ndim] = o0->shape[d];
            for (int k = 0; k < n_ops; k++) ops[k].strides[ndim] = ops[k].strides[d];
            ndim++;
        }
    }
    if (ndim == 0) {
        shape[0] = 1;
        for (int k = 0; k < n_ops; k++) ops[k].strides[0] = 0;
        ndim = 1;
    }
    bool live[EW_MAX_NODES], f64 = o0->dtype == TENSOR_F64; // the compute type, as on CUDA
    ew_live_nodes(p, live);
    // Work items: (row of the outer dims, chunk of the innermost dim). Each operand's offset is
    // computed once per item; along the row it advances by the innermost stride.
    int last = ndim - 1;
    int64_t inner = shape[last], rows = numel / inner;
    int64_t chunks_per_row = (inner + CHUNK - 1) / CHUNK, items = rows * chunks_per_row;
    // two threads pay from about 8 K elements (a parallel region costs a few microseconds)
#pragma omp parallel for schedule(static) if (numel >= 8192)
    for (int64_t item = 0; item < items; item++) {
        int64_t row = item / chunks_per_row, j0 = (item % chunks_per_row) * CHUNK;
        int n = (int)(inner - j0 < CHUNK ? inner - j0 : CHUNK);
        int64_t off[MAX_OPERANDS];
        for (int k = 0; k < n_ops; k++) off[k] = j0 * ops[k].strides[last];
        int64_t rem = row;
        for (int d = last - 1; d >= 0; d--) {
            int64_t i = rem % shape[d];
            rem /= shape[d];
            for (int k = 0; k < n_ops; k++) off[k] += i * ops[k].strides[d];
        }
        if (f64)
            eval_item_f64(p, live, ops, last, off, n, (uint64_t)(row * inner + j0));
        else
            eval_item_f32(p, live, ops, last, off, n, (uint64_t)(row * inner + j0));
    }
    return 0;
}
