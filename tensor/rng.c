#include "rng.h"

#include <math.h>
#include <stdlib.h>

#include "error.h"

void rng_init(rng *r, uint64_t seed) {
    r->seed = seed;
    r->offset = 0;
}

// Philox4x32's ten rounds on the counter c under the key (k0, k1), in place: written once for
// the single block and for rng_blocks' vector lanes (inlined there, so the loop vectorises).
static inline __attribute__((always_inline)) void
philox_rounds(uint32_t *c0, uint32_t *c1, uint32_t *c2, uint32_t *c3, uint32_t k0, uint32_t k1) {
#pragma GCC unroll 10
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * *c0, p1 = (uint64_t)0xCD9E8D57u * *c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ *c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ *c3 ^ k1;
        *c1 = (uint32_t)p1;
        *c3 = (uint32_t)p0;
        *c0 = n0;
        *c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

void rng_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    philox_rounds(&c0, &c1, &c2, &c3, key[0], key[1]);
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void rng_block(const rng *r, uint64_t index, uint32_t round, uint32_t out[4]) {
    uint64_t i = r->offset + index;
    uint32_t ctr[4] = {(uint32_t)i, (uint32_t)(i >> 32), round, 0};
    uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
    rng_philox4x32_10(ctr, key, out);
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void
rng_blocks(const rng *r, uint64_t first, int n, uint32_t w[4][RNG_BLOCKS_MAX]) {
    const uint32_t key0 = (uint32_t)r->seed, key1 = (uint32_t)(r->seed >> 32);
    int m = n < RNG_BLOCKS_MAX ? n : RNG_BLOCKS_MAX; // a plain trip count: the loop vectorises
#pragma omp simd
    for (int i = 0; i < m; i++) { // philox4x32_10, one element per lane
        uint64_t ctr = r->offset + first + (uint64_t)i;
        uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
        philox_rounds(&c0, &c1, &c2, &c3, key0, key1);
        w[0][i] = c0;
        w[1][i] = c1;
        w[2][i] = c2;
        w[3][i] = c3;
    }
}

uint64_t rng_u01_threshold(double p) {
    const uint64_t top = (uint64_t)1 << 53;
    if (!(p > 0x1.0p-54)) return 0; // also NaN: rng_u01 >= 2^-54, nothing is below
    if (p > 1) return top;
    uint64_t t = (uint64_t)(p * 0x1.0p53); // near the answer; step to where the order changes
    if (t > top) t = top;
    while (t > 0 && ((double)(t - 1) + 0.5) * 0x1.0p-53 >= p) t--;
    while (t < top && ((double)t + 0.5) * 0x1.0p-53 < p) t++;
    return t;
}

double rng_box_muller(const uint32_t w[4]) {
    double u1 = rng_u01(w[0], w[1]), u2 = rng_u01(w[2], w[3]);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_fill_uniform(rng *r, double *dst, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_block(r, (uint64_t)i, 0, w);
        dst[i] = lo + (hi - lo) * rng_u01(w[0], w[1]);
    }
    r->offset += (uint64_t)n;
}

void rng_fill_normal(rng *r, double *dst, int64_t n, double mean, double std) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_block(r, (uint64_t)i, 0, w);
        dst[i] = mean + std * rng_box_muller(w);
    }
    r->offset += (uint64_t)n;
}

void rng_fill_truncated_normal(rng *r, double *dst, int64_t n, double mean, double std) {
    for (int64_t i = 0; i < n; i++) {
        double z = 0;
        for (uint32_t round = 0; round < 256; round++) { // P(256 rejections) ~ 0.0455^256
            uint32_t w[4];
            rng_block(r, (uint64_t)i, round, w);
            z = rng_box_muller(w);
            if (fabs(z) <= 2.0) break;
            z = 0;
        }
        dst[i] = mean + std * z;
    }
    r->offset += (uint64_t)n;
}

void rng_fill_bernoulli(rng *r, double *dst, int64_t n, double p) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t w[4];
        rng_block(r, (uint64_t)i, 0, w);
        dst[i] = rng_u01(w[0], w[1]) < p ? 1.0 : 0.0;
    }
    r->offset += (uint64_t)n;
}

typedef void (*fill_fn)(rng *, double *, int64_t, double, double);

static void fill_bernoulli2(rng *r, double *d, int64_t n, double p, double unused) {
    (void)unused;
    rng_fill_bernoulli(r, d, n, p);
}

static tensor *draw(const char *who, fill_fn fill, rng *r, tensor_dtype dt, int ndim,
                    const int64_t *shape, double a, double b, tensor_device_type dev) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d] > 0 ? shape[d] : 0;
    double *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) {
        err_set("%s: out of host memory for %lld values", who, (long long)n);
        return NULL;
    }
    fill(r, tmp, n, a, b);
    tensor *t = tensor_from_doubles(dt, ndim, shape, tmp, dev);
    free(tmp);
    return t;
}

tensor *tensor_rand_uniform(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double lo,
                            double hi, tensor_device_type dev) {
    return draw("rand_uniform", rng_fill_uniform, r, dt, ndim, shape, lo, hi, dev);
}
tensor *tensor_rand_normal(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double mean,
                           double std, tensor_device_type dev) {
    return draw("rand_normal", rng_fill_normal, r, dt, ndim, shape, mean, std, dev);
}
tensor *tensor_rand_truncated_normal(rng *r, tensor_dtype dt, int ndim, const int64_t *shape,
                                     double mean, double std, tensor_device_type dev) {
    return draw("rand_truncated_normal", rng_fill_truncated_normal, r, dt, ndim, shape, mean, std,
                dev);
}
tensor *tensor_rand_bernoulli(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double p,
                              tensor_device_type dev) {
    return draw("rand_bernoulli", fill_bernoulli2, r, dt, ndim, shape, p, 0, dev);
}
