// The CPU backend: the readable reference every other backend is tested against.
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "../profile.h"
#include "cpu.h"

// ---- a caching allocator: a training step allocates the same sizes every step, and handing
// each back to malloc (which returns large blocks to the kernel) cost a page fault per 4 KiB on
// every reuse. Blocks are kept in size classes (64 B steps up to 4 KiB, then four per power of
// two: at most 25% slack), each behind a 64-byte header that records its class and size; at most
// CACHE_MAX bytes are kept. Under AddressSanitizer nothing is kept, so use-after-free is caught.
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_MAX ((size_t)0)
#else
#define CACHE_MAX ((size_t)4 << 30)
#endif
#define HEADER    64
#define N_CLASSES 256

typedef struct block_header {
    struct block_header *next; // in its class's free list, while cached
    size_t rounded;            // the block's size (its class's size)
    int size_class;            // -1: too large to cache
} block_header;
_Static_assert(sizeof(block_header) <= HEADER,
               "the header fits in front of the 64-byte aligned data");

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static block_header *cache_head[N_CLASSES]; // free blocks by class
static size_t cache_bytes;

static int size_class(size_t n, size_t *rounded) {
    if (n <= 4096) {
        *rounded = n < 64 ? 64 : (n + 63) & ~(size_t)63;
        return (int)(*rounded / 64) - 1; // 0..63
    }
    int e = 63 - __builtin_clzll((unsigned long long)(n - 1)); // 2^e < n <= 2^(e+1)
    size_t quarter = (size_t)1 << (e - 2), base = (size_t)1 << e;
    size_t q = (n - base + quarter - 1) / quarter; // 1..4
    *rounded = base + q * quarter;
    int c = 64 + (e - 12) * 4 + (int)(q - 1);
    return c < N_CLASSES ? c : -1; // beyond the classes (2^60 B): not cached
}

static void *cpu_alloc(size_t nbytes) {
    size_t rounded;
    int c = size_class(nbytes ? nbytes : 1, &rounded);
    block_header *h = NULL;
    if (c >= 0) {
        pthread_mutex_lock(&cache_lock);
        h = cache_head[c];
        if (h) {
            cache_head[c] = h->next;
            cache_bytes -= rounded;
        }
        pthread_mutex_unlock(&cache_lock);
    }
    if (!h) {
        void *p = NULL;
        if (rounded > SIZE_MAX - HEADER || posix_memalign(&p, 64, rounded + HEADER)) {
            err_set("out of host memory: could not allocate %zu bytes", nbytes);
            return NULL;
        }
        h = p;
        *h = (block_header){NULL, rounded, c};
    }
    return (char *)h + HEADER;
}

static void cpu_free(void *p) {
    if (!p) return;
    block_header *h = (block_header *)((char *)p - HEADER);
    pthread_mutex_lock(&cache_lock);
    if (h->size_class >= 0 && cache_bytes + h->rounded <= CACHE_MAX) {
        h->next = cache_head[h->size_class];
        cache_head[h->size_class] = h;
        cache_bytes += h->rounded;
        h = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
    free(h);
}

static int cpu_copy(void *dst, const void *src, size_t n) {
    if (n) memmove(dst, src, n);
    return 0;
}

static int cpu_synchronize(void) { return 0; }

// ---- BANIS_CPU_PROFILE=1: the wall time of every compute call, by op (elementwise programs by
// the op that issued them, GEMMs and convolutions by pass and shape), in the profile table.
#define TIMED(call, ...)                                                                           \
    do {                                                                                           \
        double t0 = profile_now_ms();                                                              \
        int rc = call;                                                                             \
        char what[64];                                                                             \
        snprintf(what, sizeof what, __VA_ARGS__);                                                  \
        profile_add(what, profile_now_ms() - t0);                                                  \
        return rc;                                                                                 \
    } while (0)
#define CONV_NAME(pass, g)                                                                         \
    "conv %s N%lld %lld->%lld %lldx%lld->%lldx%lld", pass, (long long)g->N, (long long)g->C,       \
        (long long)g->K, (long long)g->H, (long long)g->W, (long long)g->OH, (long long)g->OW

static int p_elementwise(const char *op, const ew_program *p, tensor *const *outs,
                         const tensor *const *ins) {
    TIMED(cpu_elementwise(op, p, outs, ins), "elementwise %s (%lld)", op ? op : "?",
          (long long)tensor_numel(outs[0]));
}
static int p_reduce(reduce_kind kind, const tensor *in, tensor *out) {
    TIMED(cpu_reduce(kind, in, out), "reduce %s %lld -> %lld", kind == REDUCE_SUM ? "sum" : "max",
          (long long)tensor_numel(in), (long long)tensor_numel(out));
}
static int p_gemm(const gemm_args *g) {
    TIMED(cpu_gemm(g), "gemm %lldx (%lld x %lld x %lld)%s%s", (long long)g->batch, (long long)g->M,
          (long long)g->N, (long long)g->K, g->a_col_stride != 1 ? " At" : "",
          g->b_col_stride != 1 ? " Bt" : "");
}
static int p_conv_fwd(const conv_geometry *g, const tensor *x, const tensor *w, const tensor *bias,
                      tensor *y) {
    TIMED(cpu_conv2d_forward(g, x, w, bias, y), CONV_NAME("fwd", g));
}
static int p_conv_dx(const conv_geometry *g, const tensor *dy, const tensor *w, const tensor *bias,
                     tensor *dx) {
    TIMED(cpu_conv2d_backward_input(g, dy, w, bias, dx), CONV_NAME("dx ", g));
}
static int p_conv_dw(const conv_geometry *g, const tensor *x, const tensor *dy, tensor *dw) {
    TIMED(cpu_conv2d_backward_weight(g, x, dy, dw), CONV_NAME("dw ", g));
}

static backend cpu_backend = {
    .mem = {.name = "cpu",
            .device = DEVICE_CPU,
            .alloc = cpu_alloc,
            .free = cpu_free,
            .copy_from_host = cpu_copy,
            .copy_to_host = cpu_copy,
            .copy_device = cpu_copy,
            .synchronize = cpu_synchronize},
    .elementwise = cpu_elementwise,
    .reduce = cpu_reduce,
    .gemm = cpu_gemm,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_input = cpu_conv2d_backward_input,
    .conv2d_backward_weight = cpu_conv2d_backward_weight,
};

static pthread_once_t profile_once = PTHREAD_ONCE_INIT;
static void profile_init(void) {
    if (!profile_wanted("BANIS_CPU_PROFILE", "CPU: wall time by op")) return;
    cpu_backend.elementwise = p_elementwise;
    cpu_backend.reduce = p_reduce;
    cpu_backend.gemm = p_gemm;
    cpu_backend.conv2d_forward = p_conv_fwd;
    cpu_backend.conv2d_backward_input = p_conv_dx;
    cpu_backend.conv2d_backward_weight = p_conv_dw;
}

const backend *backend_cpu(void) {
    pthread_once(&profile_once, profile_init);
    return &cpu_backend;
}
