// Weight initialisers, as Keras defines them, drawn from the engine's RNG.
#include <math.h>
#include <stdlib.h>

#include "../tensor/error.h"
#include "nn.h"

int nn_init_tensor(tensor *t, nn_init init, int64_t fan_in, int64_t fan_out, rng *r) {
    if (!t) return -1;
    switch (init) {
        case NN_INIT_ZEROS: return tensor_fill_(t, 0);
        case NN_INIT_ONES: return tensor_fill_(t, 1);
        default: break;
    }
    int64_t n = tensor_numel(t);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) {
        err_set("init: out of host memory");
        return -1;
    }
    if (init == NN_INIT_GLOROT_UNIFORM) {
        double limit = sqrt(6.0 / (double)(fan_in + fan_out));
        rng_fill_uniform(r, v, n, -limit, limit);
    } else { // he_normal: truncated normal, stddev sqrt(2 / fan_in) / 0.87962566 (Keras)
        rng_fill_truncated_normal(r, v, n, 0, sqrt(2.0 / (double)fan_in) / 0.87962566103423978);
    }
    tensor_scope_begin();
    tensor *src = tensor_from_doubles(t->dtype, t->ndim, t->shape, v, tensor_device(t));
    int rc = src ? tensor_copy_(t, src) : -1;
    tensor_scope_end();
    free(v);
    return rc;
}
