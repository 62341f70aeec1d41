// Tensors: views, broadcasting, copies, the RNG, ownership and leaks.
#include <check.h>
#include <math.h>
#include <string.h>

#include "../ops/backend.h"
#include "../ops/ops.h"
#include "../tensor/error.h"
#include "check_runner.h"

static void values(const tensor *t, double *out) { ck_assert_int_eq(tensor_to_doubles(t, out), 0); }

static tensor *arange(tensor_dtype dt, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    double v[256];
    for (int64_t i = 0; i < n; i++) v[i] = (double)i;
    return tensor_from_doubles(dt, ndim, shape, v, DEVICE_CPU);
}

START_TEST(test_cpu_allocator_classes) {
    // The CPU backend's caching allocator: 64-byte aligned blocks that hold what was asked for,
    // handed out again for a request of the same size class (64 B steps to 4 KiB, then four per
    // power of two) and not for a larger class. (Under AddressSanitizer nothing is cached.)
    const backend *be = backend_for(DEVICE_CPU);
    const size_t sizes[] = {
        1,       63, 64, 65, 4095, 4096, 4097, 5000, 5120, (size_t)1 << 20, ((size_t)1 << 20) + 1,
        3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = be->mem.alloc(sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq((uintptr_t)p % 64, 0);
        memset(p, 0xab, sizes[i]);
        ck_assert_int_eq(p[sizes[i] - 1], 0xab);
        be->mem.free(p);
#ifndef __SANITIZE_ADDRESS__
        unsigned char *q = be->mem.alloc(sizes[i]);
        ck_assert_ptr_eq(q, p); // the same block back
        be->mem.free(q);
#endif
    }
    // 5000 and 5120 share the class 5120 (4096 + 1024); 5121 is in the next one, 6144
    void *a = be->mem.alloc(5000);
    be->mem.free(a);
    void *b = be->mem.alloc(5121), *c = be->mem.alloc(5120);
#ifndef __SANITIZE_ADDRESS__
    ck_assert_ptr_ne(b, a);
    ck_assert_ptr_eq(c, a);
#endif
    memset(b, 1, 5121);
    memset(c, 2, 5120);
    be->mem.free(b);
    be->mem.free(c);
}
END_TEST

START_TEST(test_views) {
    tensor_scope_begin();
    tensor *a = arange(TENSOR_F32, SHAPE(2, 3, 4));
    double v[64];
    // permute (2,0,1): element [k][i][j] = a[i][j][k]
    tensor *p = tensor_view_permute(a, (const int[]){2, 0, 1});
    ck_assert(!tensor_is_contiguous(p));
    values(p, v);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                ck_assert_double_eq(v[(k * 2 + i) * 3 + j], (i * 3 + j) * 4 + k);
    // a permuted tensor cannot be viewed flat; op_reshape copies instead
    ck_assert_ptr_null(tensor_view_reshape(p, SHAPE(24)));
    err_clear();
    tensor *flat = op_reshape(p, SHAPE(-1));
    ck_assert_ptr_nonnull(flat);
    values(flat, v);
    ck_assert_double_eq(v[1], 4); // p[0][0][1] = a[0][1][0] = (0*3 + 1)*4 + 0
    // reshape of a contiguous tensor is a view: same storage
    tensor *r = tensor_view_reshape(a, SHAPE(6, 4));
    ck_assert_ptr_eq(r->storage, a->storage);
    // slice with a step: a[1, :, 1:4:2]
    tensor *s = tensor_view_slice(tensor_view_slice(a, 0, 1, 2, 1), 2, 1, 4, 2);
    ck_assert_int_eq(s->shape[2], 2);
    values(s, v);
    double want[6] = {13, 15, 17, 19, 21, 23};
    for (int i = 0; i < 6; i++) ck_assert_double_eq(v[i], want[i]);
    // expand: stride 0, values repeat
    tensor *col = arange(TENSOR_F64, SHAPE(3, 1));
    tensor *e = tensor_view_expand(col, SHAPE(2, 3, 4));
    ck_assert_int_eq(e->strides[0], 0);
    ck_assert_int_eq(e->strides[2], 0);
    values(e, v);
    ck_assert_double_eq(v[4 * 2 + 3], 2);
    ck_assert_double_eq(v[12 + 5], 1);
    // contiguous copy of a slice
    tensor *c = tensor_contiguous(s);
    ck_assert(tensor_is_contiguous(c));
    values(c, v);
    ck_assert_double_eq(v[5], 23);
    // reshape with unit dims and -1 inference
    tensor *u = tensor_view_reshape(a, SHAPE(1, 2, 1, -1));
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(u->shape[3], 12);
    tensor_scope_end();
}
END_TEST

START_TEST(test_broadcasting) {
    tensor_scope_begin();
    tensor *a = arange(TENSOR_F64, SHAPE(3, 1));
    tensor *b = arange(TENSOR_F64, SHAPE(1, 4));
    tensor *s = op_add(op_mul_scalar(a, 10), b);
    ck_assert_int_eq(s->ndim, 2);
    ck_assert_int_eq(s->shape[0], 3);
    ck_assert_int_eq(s->shape[1], 4);
    double v[12];
    values(s, v);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ck_assert_double_eq(v[i * 4 + j], 10 * i + j);
    // rank extension: (4) + (2, 3, 4)
    tensor *c = op_sub(arange(TENSOR_F64, SHAPE(2, 3, 4)), arange(TENSOR_F64, SHAPE(4)));
    double w[24];
    values(c, w);
    for (int i = 0; i < 24; i++) ck_assert_double_eq(w[i], i - i % 4);
    // incompatible shapes: NULL, a message naming the op and both shapes
    err_clear();
    ck_assert_ptr_null(op_add(arange(TENSOR_F64, SHAPE(3)), arange(TENSOR_F64, SHAPE(4))));
    ck_assert_ptr_nonnull(strstr(err_message(), "add"));
    ck_assert_ptr_nonnull(strstr(err_message(), "(3)"));
    ck_assert_ptr_nonnull(strstr(err_message(), "(4)"));
    // a NULL input propagates
    ck_assert_ptr_null(op_exp(NULL));
    // mixing dtypes is refused
    ck_assert_ptr_null(op_mul(arange(TENSOR_F64, SHAPE(3)), arange(TENSOR_F32, SHAPE(3))));
    ck_assert_ptr_nonnull(strstr(err_message(), "dtypes"));
    tensor_scope_end();
}
END_TEST

START_TEST(test_cast_and_copy) {
    tensor_scope_begin();
    double v[6] = {0.1, -2.5, 3.25, 1e-8, 7, -0.3};
    tensor *d = tensor_from_doubles(TENSOR_F64, SHAPE(2, 3), v, DEVICE_CPU);
    tensor *f = tensor_cast(d, TENSOR_F32);
    float out[6];
    ck_assert_int_eq(tensor_to_host(f, out), 0);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(out[i], (float)v[i]);
    // copy into a transposed view writes through to the right places
    tensor *z = tensor_zeros(TENSOR_F64, SHAPE(3, 2), DEVICE_CPU);
    ck_assert_int_eq(tensor_copy_(tensor_view_permute(z, (const int[]){1, 0}), d), 0);
    double w[6];
    values(z, w);
    ck_assert_double_eq(w[1], v[3]); // z[0][1] = d[1][0]
    ck_assert_double_eq(w[4], v[2]); // z[2][0] = d[0][2]
    ck_assert_double_eq(tensor_item(op_sum(d, ALL_AXES, false)),
                        v[0] + v[1] + v[2] + v[3] + v[4] + v[5]);
    tensor_scope_end();
}
END_TEST

START_TEST(test_philox_known_answers) {
    // Known-answer vectors of Philox4x32-10 (Salmon et al., Random123 kat_vectors).
    const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                                {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
    const uint32_t key[3][2] = {{0, 0}, {0xffffffff, 0xffffffff}, {0xa4093822, 0x299f31d0}};
    const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                 {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                 {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        rng_philox4x32_10(ctr[t], key[t], out);
        for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want[t][i]);
    }
    // Known answer 0 through the batched form (counter 0, key 0, one element) ...
    static uint32_t w[4][RNG_BLOCKS_MAX];
    rng zero = {0, 0};
    rng_blocks(&zero, 0, 1, w);
    for (int i = 0; i < 4; i++) ck_assert_uint_eq(w[i][0], want[0][i]);
    // ... and the batched form equals rng_block element by element, across the counter's
    // 32-bit carry and for every batch length up to the maximum
    rng s = {0x0123456789abcdefull, 0xfffffff0ull};
    for (int n = 1; n <= RNG_BLOCKS_MAX; n += 37) {
        rng_blocks(&s, 3, n, w);
        for (int i = 0; i < n; i++) {
            uint32_t one[4];
            rng_block(&s, 3 + (uint64_t)i, 0, one);
            for (int k = 0; k < 4; k++) ck_assert_uint_eq(w[k][i], one[k]);
        }
    }
}
END_TEST

START_TEST(test_rng_u01_threshold) {
    // The CPU's branch-free Bernoulli compares the 53 bits with rng_u01_threshold(p); it must
    // decide as rng_u01(hi, lo) < p does (the CUDA kernels compare in double), at the edges of
    // the threshold, for probabilities of every kind, and at the ends of the range.
    const double ps[] = {0.7,           0.3,       0.5,       1.0 / 3, 0.999999,     1e-9,
                         0x1.0p-54,     0x1.0p-53, 1.0,       0.0,     -1.0,         2.0,
                         1 - 0x1.0p-53, NAN,       0x1.0p-52, 0.25,    0.1234567891, 0.9};
    const uint64_t top = (uint64_t)1 << 53;
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
        uint64_t t = rng_u01_threshold(ps[i]);
        ck_assert_uint_le(t, top);
        // bits just below and at the threshold, the ends, and a spread of values between
        uint64_t probe[] = {t ? t - 1 : 0,
                            t < top ? t : top - 1,
                            t + 1 < top ? t + 1 : top - 1,
                            0,
                            top - 1,
                            top / 2,
                            top / 3};
        for (size_t j = 0; j < sizeof probe / sizeof *probe; j++) {
            uint64_t bits = probe[j];
            uint64_t word = bits << 11 | 0x5a5; // the 11 discarded bits must not matter
            double u = rng_u01((uint32_t)(word >> 32), (uint32_t)word);
            ck_assert_msg((bits < t) == (u < ps[i]), "p = %a, bits %llu, threshold %llu", ps[i],
                          (unsigned long long)bits, (unsigned long long)t);
        }
    }
    // by hand: rng_u01 is (bits + 1/2) / 2^53 rounded to a double, so for p = 1/2 exactly the
    // bits below 2^52 are below it, for p = 0 none; for p = 1 all but the top value, whose
    // 2^53 - 1/2 rounds (to even) to 2^53: rng_u01 is 1.0 there
    ck_assert_uint_eq(rng_u01_threshold(0.5), top / 2);
    ck_assert_uint_eq(rng_u01_threshold(0.0), 0);
    ck_assert_uint_eq(rng_u01_threshold(1.0), top - 1);
    ck_assert_double_eq(rng_u01(0xffffffffu, 0xffffffffu), 1.0);
    ck_assert_uint_eq(rng_u01_threshold(2.0), top);
}
END_TEST

START_TEST(test_rng_determinism) {
    tensor_scope_begin();
    rng a, b, c;
    rng_init(&a, 99);
    rng_init(&b, 99);
    rng_init(&c, 100);
    double x[100], y[100], z[100];
    values(tensor_rand_normal(&a, TENSOR_F64, SHAPE(100), 0, 1, DEVICE_CPU), x);
    values(tensor_rand_normal(&b, TENSOR_F64, SHAPE(100), 0, 1, DEVICE_CPU), y);
    values(tensor_rand_normal(&c, TENSOR_F64, SHAPE(100), 0, 1, DEVICE_CPU), z);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        ck_assert_double_eq(x[i], y[i]);
        differ += x[i] != z[i];
    }
    ck_assert_int_eq(differ, 100);
    // the stream advances: a second draw differs from the first
    values(tensor_rand_normal(&a, TENSOR_F64, SHAPE(100), 0, 1, DEVICE_CPU), y);
    ck_assert_double_ne(x[0], y[0]);
    // a draw of n then m equals the tail of one draw of n + m (counter-based)
    rng d, e;
    rng_init(&d, 5);
    rng_init(&e, 5);
    double whole[30], part[20];
    rng_fill_uniform(&d, whole, 30, 0, 1);
    rng_fill_uniform(&e, part, 10, 0, 1);
    rng_fill_uniform(&e, part, 20, 0, 1);
    for (int i = 0; i < 20; i++) ck_assert_double_eq(part[i], whole[10 + i]);
    tensor_scope_end();
}
END_TEST

static void moments(const double *v, int n, double *mean, double *var) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *var = s2 / (n - 1);
}

START_TEST(test_rng_moments) {
    enum { N = 200000 };
    static double v[N];
    rng r;
    rng_init(&r, 2024);
    double m, s2;
    // Standard errors at N = 2e5: mean ~ sd/447; tolerances are ~5 standard errors.
    rng_fill_uniform(&r, v, N, -1, 3);
    moments(v, N, &m, &s2);
    ck_assert_double_eq_tol(m, 1.0, 0.012);
    ck_assert_double_eq_tol(s2, 16.0 / 12.0, 0.015);
    for (int i = 0; i < N; i++) ck_assert(v[i] > -1 && v[i] < 3);
    rng_fill_normal(&r, v, N, 2, 0.5);
    moments(v, N, &m, &s2);
    ck_assert_double_eq_tol(m, 2.0, 0.006);
    ck_assert_double_eq_tol(s2, 0.25, 0.004);
    rng_fill_truncated_normal(&r, v, N, 0, 1);
    moments(v, N, &m, &s2);
    ck_assert_double_eq_tol(m, 0.0, 0.01);
    // variance of N(0,1) truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1) = 0.7737
    ck_assert_double_eq_tol(s2, 0.7737, 0.008);
    for (int i = 0; i < N; i++) ck_assert(fabs(v[i]) <= 2.0);
    rng_fill_bernoulli(&r, v, N, 0.3);
    moments(v, N, &m, &s2);
    ck_assert_double_eq_tol(m, 0.3, 0.006);
    for (int i = 0; i < N; i++) ck_assert(v[i] == 0 || v[i] == 1);
}
END_TEST

START_TEST(test_no_leaks_across_steps) {
    // Build a graph, run backward, end the scope: every tensor and byte comes back.
    tensor_scope_begin();
    rng r;
    rng_init(&r, 1);
    tensor *w = tensor_keep(tensor_rand_normal(&r, TENSOR_F32, SHAPE(8, 4), 0, 1, DEVICE_CPU));
    w->requires_grad = true;
    tensor_scope_end();
    int64_t tensors0 = tensor_live_count(), bytes0 = tensor_storage_live_bytes();
    for (int step = 0; step < 5; step++) {
        tensor_scope_begin();
        tensor *x = tensor_rand_uniform(&r, TENSOR_F32, SHAPE(3, 8), -1, 1, DEVICE_CPU);
        tensor *loss = op_mean(op_square(op_tanh(op_matmul(x, w))), ALL_AXES, false);
        ck_assert_int_eq(ag_backward(loss, NULL), 0);
        ck_assert_ptr_null(loss->node); // the graph is freed by backward
        tensor_scope_end();
        if (step == 0) { // the gradient buffer is the one lasting allocation
            tensors0 = tensor_live_count();
            bytes0 = tensor_storage_live_bytes();
        }
        ck_assert_int_eq(tensor_live_count(), tensors0);
        ck_assert_int_eq(tensor_storage_live_bytes(), bytes0);
    }
    ck_assert_ptr_nonnull(w->grad);
    tensor_release(w);
}
END_TEST

START_TEST(test_backward_accumulates) {
    tensor_scope_begin();
    double v[3] = {1, 2, 3};
    tensor *x = tensor_from_doubles(TENSOR_F64, SHAPE(3), v, DEVICE_CPU);
    x->requires_grad = true;
    // y = sum(x*x) + sum(3x): dy/dx = 2x + 3, and x is used twice in the graph
    tensor *y =
        op_add(op_sum(op_square(x), ALL_AXES, false), op_sum(op_mul_scalar(x, 3), ALL_AXES, false));
    ck_assert_int_eq(ag_backward(y, NULL), 0);
    double g[3];
    values(x->grad, g);
    for (int i = 0; i < 3; i++) ck_assert_double_eq(g[i], 2 * v[i] + 3);
    // a second backward adds to the gradient
    tensor *y2 = op_sum(x, ALL_AXES, false);
    ck_assert_int_eq(ag_backward(y2, NULL), 0);
    values(x->grad, g);
    for (int i = 0; i < 3; i++) ck_assert_double_eq(g[i], 2 * v[i] + 4);
    // no-grad mode records nothing
    bool prev = ag_set_grad_enabled(false);
    tensor *z = op_mul(x, x);
    ck_assert(!z->requires_grad);
    ck_assert_ptr_null(z->node);
    ag_set_grad_enabled(prev);
    ck_assert_int_ne(ag_backward(z, NULL), 0);
    tensor_scope_end();
}
END_TEST

// tensor_scope_end_keeping: the scope's other tensors are freed at its end; the kept ones move
// to the scope around it (alive until that one ends), NULLs skipped.
START_TEST(test_scope_end_keeping) {
    int64_t before = tensor_live_count();
    tensor_scope_begin(); // the outer scope
    tensor_scope_begin();
    tensor *a = tensor_ones(TENSOR_F32, SHAPE(3), DEVICE_CPU);
    tensor *b = tensor_zeros(TENSOR_F32, SHAPE(5), DEVICE_CPU);
    tensor *c = tensor_full(TENSOR_F64, SHAPE(2), 7, DEVICE_CPU);
    ck_assert_int_eq(tensor_live_count(), before + 3);
    tensor_scope_end_keeping(3, (tensor *[]){a, NULL, c});
    ck_assert_int_eq(tensor_live_count(), before + 2); // b freed; a and c alive
    double v[3];
    ck_assert_int_eq(tensor_to_doubles(a, v), 0);
    ck_assert_double_eq(v[2], 1);
    ck_assert_int_eq(tensor_to_doubles(c, v), 0);
    ck_assert_double_eq(v[1], 7);
    (void)b;
    tensor_scope_end(); // the outer scope frees them
    ck_assert_int_eq(tensor_live_count(), before);
}
END_TEST

// A probe op: identity forward, and a backward that records the live bytes when it runs (the
// walk reaches it last when it is the graph's first op).
static int64_t probe_live;
static int probe_backward(ag_node *n, tensor *g, tensor **gin) {
    (void)n;
    probe_live = tensor_storage_live_bytes();
    gin[0] = g;
    return 0;
}
static tensor *probe(tensor *x) {
    tensor *y = tensor_clone(x);
    return y && !ag_record(y, "probe", probe_backward, 1, &x, NULL, 0) ? y : NULL;
}

// The walk frees a node's saved tensors once its backward has run: activations that only the
// graph holds (their scope ended, the loss kept) are gone when the walk reaches the graph's
// first op; activations a scope still holds stay until it ends (scopes are the rule).
START_TEST(test_backward_frees_node_by_node) {
    const int64_t n = 1 << 16; // 256 KiB a float32 activation
    tensor_scope_begin();
    tensor *x = tensor_keep(tensor_full(TENSOR_F32, SHAPE(n), 0.5, DEVICE_CPU));
    x->requires_grad = true;
    tensor_scope_end();
    for (int graph_alone = 1; graph_alone >= 0; graph_alone--) {
        ag_zero_grad(x);
        int64_t base = tensor_storage_live_bytes(), act = n * 4;
        tensor_scope_begin(); // the update
        tensor_scope_begin(); // its forward
        tensor *loss = op_sum(op_exp(op_exp(op_exp(probe(x)))), ALL_AXES, false);
        ck_assert_ptr_nonnull(loss);
        int64_t forward = tensor_storage_live_bytes() - base;
        if (graph_alone) tensor_scope_end_keeping(1, &loss);
        ck_assert_int_eq(ag_backward(loss, NULL), 0);
        // when the probe's backward runs: the probe's output (its tensor is still the walk's)
        // and the gradient reaching it; held by the scope: the three exp outputs as well
        int64_t at_probe = probe_live - base;
        fprintf(stderr, "%s: forward %lld bytes, live at the graph's first op %lld\n",
                graph_alone ? "graph alone" : "scope holds", (long long)forward,
                (long long)at_probe);
        ck_assert_int_ge(forward, 4 * act); // probe + 3 exp outputs, the sum's 4 bytes
        ck_assert_int_eq(at_probe, (graph_alone ? 2 : 5) * act + 8); // + the sum's seed, loss
        if (!graph_alone) tensor_scope_end();
        tensor_scope_end();
        ck_assert_int_eq(tensor_storage_live_bytes(), base + (x->grad && graph_alone ? act : 0));
        double g;
        tensor_scope_begin(); // the view's own
        ck_assert_int_eq(tensor_to_doubles(tensor_view_slice(x->grad, 0, 0, 1, 1), &g), 0);
        tensor_scope_end();
        double e1 = exp(0.5), e2 = exp(e1), e3 = exp(e2); // d/dx exp(exp(exp(x)))
        ck_assert_double_eq_tol(g, e3 * e2 * e1, 1e-3 * e3 * e2 * e1);
    }
    tensor_release(x);
}
END_TEST

// ag_backward_keeping_graph: the graph can be walked again (gradients add), and ag_backward
// frees it after; a freed graph's nodes are gone.
START_TEST(test_backward_keeping_graph) {
    tensor_scope_begin();
    double v[3] = {1, 2, 3};
    tensor *x = tensor_from_doubles(TENSOR_F64, SHAPE(3), v, DEVICE_CPU);
    x->requires_grad = true;
    tensor *h = op_square(x);
    tensor *y = op_sum(op_mul(h, x), ALL_AXES, false); // sum x^3: 3x^2
    ck_assert_int_eq(ag_backward_keeping_graph(y, NULL), 0);
    ck_assert_ptr_nonnull(y->node);
    ck_assert_ptr_nonnull(h->node);
    ck_assert_int_eq(ag_backward(y, NULL), 0);
    ck_assert_ptr_null(y->node);
    ck_assert_ptr_null(h->node);
    double g[3];
    values(x->grad, g);
    for (int i = 0; i < 3; i++) ck_assert_double_eq(g[i], 2 * 3 * v[i] * v[i]);
    tensor_scope_end();
}
END_TEST

// The memory trace: what is live at the threshold, summed by the op that made it.
START_TEST(test_memory_trace) {
    tensor_scope_begin();
    tensor *x = tensor_full(TENSOR_F32, SHAPE(1024), 1, DEVICE_CPU); // 4 KiB, before the trace
    x->requires_grad = true;
    int64_t base = tensor_storage_live_bytes();
    tensor_trace_start(base + 2 * 4096); // reached by the second exp's output
    tensor *a = op_exp(x), *b = op_exp(a), *c = op_exp(b);
    ck_assert_ptr_nonnull(c);
    char buf[2048] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ck_assert_int_eq(tensor_trace_report(f), base + 2 * 4096); // c came after the point
    fclose(f);
    // the storage that crossed the threshold is counted under the op that made it, too
    ck_assert_msg(strstr(buf, "       2  exp\n"), "%s", buf);
    ck_assert_msg(!strstr(buf, "no op recorded"), "%s", buf);
    tensor_trace_start(base + (1 << 30)); // never reached
    f = fmemopen(buf, sizeof buf - 1, "w");
    ck_assert_int_eq(tensor_trace_report(f), -1);
    fclose(f);
    tensor_scope_end();
}
END_TEST

int main(void) {
    TCase *tc = check_case(
        "core", 0,
        CHECK_TESTS(test_views, test_cpu_allocator_classes, test_broadcasting, test_cast_and_copy,
                    test_philox_known_answers, test_rng_determinism, test_rng_u01_threshold,
                    test_rng_moments, test_no_leaks_across_steps, test_backward_accumulates,
                    test_scope_end_keeping, test_backward_frees_node_by_node,
                    test_backward_keeping_graph, test_memory_trace));
    return check_main("tensor", tc);
}
