// Reductions: each output element folds its reduced sub-space, accumulating in double.
#include <math.h>
#include <string.h>

#include "cpu.h"

static inline double load(const char *base, tensor_dtype dt, int64_t off) {
    return dt == TENSOR_F64 ? ((const double *)base)[off] : ((const float *)base)[off];
}

#define CPU_TEMPLATE "cpu_reduce_impl.h" // its functions for float and double
#include "cpu_template.h"

int cpu_reduce(reduce_kind kind, const tensor *in, tensor *out) {
    // Reduced dims (extent > 1 in `in`, 1 in `out`), collapsed where contiguous.
    int64_t rshape[TENSOR_MAX_DIMS], rstride[TENSOR_MAX_DIMS];
    int nr = 0;
    int64_t rcount = 1;
    for (int d = 0; d < in->ndim; d++) {
        if (out->shape[d] != 1 || in->shape[d] == 1) continue;
        if (nr > 0 && rstride[nr - 1] == in->strides[d] * in->shape[d]) {
            rshape[nr - 1] *= in->shape[d];
            rstride[nr - 1] = in->strides[d];
        } else {
            rshape[nr] = in->shape[d];
            rstride[nr] = in->strides[d];
            nr++;
        }
        rcount *= in->shape[d];
    }
    const char *ib = cpu_data(in);
    char *ob = cpu_data(out);
    int64_t n_out = tensor_numel(out);
    int nd = out->ndim;
#pragma omp parallel for schedule(static) if (n_out > 1 && n_out * rcount > 32768)
    for (int64_t o = 0; o < n_out; o++) {
        int64_t rem = o, ioff = 0, ooff = 0;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t i = rem % out->shape[d];
            rem /= out->shape[d];
            ioff += i * in->strides[d];
            ooff += i * out->strides[d];
        }
        double acc = kind == REDUCE_MAX ? -INFINITY : 0.0;
        if (rcount == 0) acc = kind == REDUCE_MAX ? NAN : 0.0;
        int64_t idx[TENSOR_MAX_DIMS] = {0};
        int64_t inner = nr ? rshape[nr - 1] : 1, istride = nr ? rstride[nr - 1] : 0;
        int64_t outer = rcount / (inner ? inner : 1);
        int64_t base = ioff;
        for (int64_t r = 0; r < outer && rcount; r++) {
            if (kind == REDUCE_SUM) {
                acc += in->dtype == TENSOR_F64 ? sum_f64((const double *)ib + base, inner, istride)
                                               : sum_f32((const float *)ib + base, inner, istride);
            } else {
                for (int64_t j = 0; j < inner; j++) {
                    double v = load(ib, in->dtype, base + j * istride);
                    if (v > acc || isnan(v)) acc = v;
                }
            }
            // advance the outer reduced dims
            for (int d = nr - 2; d >= 0; d--) {
                idx[d]++;
                base += rstride[d];
                if (idx[d] < rshape[d]) break;
                base -= rstride[d] * rshape[d];
                idx[d] = 0;
            }
        }
        if (out->dtype == TENSOR_F64)
            ((double *)ob)[ooff] = acc;
        else
            ((float *)ob)[ooff] = (float)acc;
    }
    return 0;
}
