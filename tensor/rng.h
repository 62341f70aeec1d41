// A counter-based random number generator (Philox 4x32-10, Salmon et al. 2011). Element i of
// a draw is a pure function of (seed, offset + i), so a seed gives the same numbers on every
// backend and in any order of evaluation; a generator is two integers, trivially saved.
#pragma once
#include <stdint.h>

#include "tensor.h"

typedef struct {
    uint64_t seed;
    uint64_t offset; // advances by the number of elements drawn
} rng;

void rng_init(rng *r, uint64_t seed);
void rng_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

// Element `index` of stream `r`, draw `round` (rounds serve rejection sampling).
void rng_block(const rng *r, uint64_t index, uint32_t round, uint32_t out[4]);
// Elements first .. first + n - 1 of stream `r` (round 0), word k of element i in w[k][i]: the
// same numbers as rng_block, computed many at a time in vector registers.
#define RNG_BLOCKS_MAX 256
void rng_blocks(const rng *r, uint64_t first, int n, uint32_t w[4][RNG_BLOCKS_MAX]);
// Uniform in (0, 1] with 53 random bits, from two 32-bit words: (bits + 1/2) / 2^53, rounded
// (the top value rounds to 1.0; never 0).
static inline double rng_u01(uint32_t hi, uint32_t lo) {
    uint64_t bits = (((uint64_t)hi << 32) | lo) >> 11;
    return ((double)bits + 0.5) * 0x1.0p-53;
}
// The count of 53-bit values whose rng_u01 is below p: rng_u01(hi, lo) < p exactly when
// ((hi << 32 | lo) >> 11) < rng_u01_threshold(p) (rng_u01 grows with its bits).
uint64_t rng_u01_threshold(double p);
// Standard normal from one block (Box-Muller over words 0-1 and 2-3).
double rng_box_muller(const uint32_t w[4]);

// Host-side draws into doubles (used by the tensor functions below).
void rng_fill_uniform(rng *r, double *dst, int64_t n, double lo, double hi);
void rng_fill_normal(rng *r, double *dst, int64_t n, double mean, double std);
// Normal resampled until within two standard deviations (TensorFlow's truncated_normal).
void rng_fill_truncated_normal(rng *r, double *dst, int64_t n, double mean, double std);
void rng_fill_bernoulli(rng *r, double *dst, int64_t n, double p);

tensor *tensor_rand_uniform(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double lo,
                            double hi, tensor_device_type dev);
tensor *tensor_rand_normal(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double mean,
                           double std, tensor_device_type dev);
tensor *tensor_rand_truncated_normal(rng *r, tensor_dtype dt, int ndim, const int64_t *shape,
                                     double mean, double std, tensor_device_type dev);
tensor *tensor_rand_bernoulli(rng *r, tensor_dtype dt, int ndim, const int64_t *shape, double p,
                              tensor_device_type dev);
