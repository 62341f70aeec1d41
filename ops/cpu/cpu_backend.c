// The CPU backend: the readable reference every other backend is tested against.
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tensor/error.h"
#include "cpu.h"

#ifdef _OPENMP
#include <omp.h>
int cpu_threads(void) { return omp_get_max_threads(); }
#else
int cpu_threads(void) { return 1; }
#endif

// ---- per-thread scratch, released by a thread-exit destructor
typedef struct {
    void *ptr[CPU_SCRATCH_SLOTS];
    size_t size[CPU_SCRATCH_SLOTS];
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch *s = p;
    for (int i = 0; i < CPU_SCRATCH_SLOTS; i++) free(s->ptr[i]);
    free(s);
}

static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

void *cpu_scratch(int slot, size_t nbytes) {
    pthread_once(&scratch_once, scratch_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->size[slot] < nbytes) {
        free(s->ptr[slot]);
        s->ptr[slot] = aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
        s->size[slot] = s->ptr[slot] ? nbytes : 0;
    }
    return s->ptr[slot];
}

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
// the op that issued them, GEMMs and convolutions by pass and shape), printed at exit.
typedef struct {
    char name[64];
    double ms;
    int64_t calls;
} profile_row;
static profile_row profile[512];
static int n_profile;

static int by_time(const void *a, const void *b) {
    double x = ((const profile_row *)a)->ms, y = ((const profile_row *)b)->ms;
    return (x < y) - (x > y);
}

static void print_profile(void) {
    double total = 0;
    for (int i = 0; i < n_profile; i++) total += profile[i].ms;
    qsort(profile, (size_t)n_profile, sizeof *profile, by_time);
    fprintf(stderr, "\nCPU profile (BANIS_CPU_PROFILE): wall time by op, %.1f ms in all\n", total);
    fprintf(stderr, "%-64s %10s %8s %10s %6s\n", "op", "ms", "calls", "us/call", "%");
    for (int i = 0; i < n_profile; i++)
        fprintf(stderr, "%-64s %10.2f %8lld %10.1f %6.1f\n", profile[i].name, profile[i].ms,
                (long long)profile[i].calls, 1e3 * profile[i].ms / (double)profile[i].calls,
                100 * profile[i].ms / total);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void profile_add(const char *what, double ms) {
    int i = 0;
    while (i < n_profile && strcmp(profile[i].name, what)) i++;
    if (i == n_profile) {
        if (n_profile == 512) return;
        snprintf(profile[n_profile++].name, sizeof profile[0].name, "%s", what);
    }
    profile[i].ms += ms;
    profile[i].calls++;
}

static int p_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    double t0 = now_ms();
    int rc = cpu_elementwise(p, outs, ins);
    char what[64];
    snprintf(what, sizeof what, "elementwise %s (%lld)", backend_op_name ? backend_op_name : "?",
             (long long)tensor_numel(outs[0]));
    profile_add(what, now_ms() - t0);
    return rc;
}
static int p_reduce(reduce_kind kind, const tensor *in, tensor *out) {
    double t0 = now_ms();
    int rc = cpu_reduce(kind, in, out);
    char what[64];
    snprintf(what, sizeof what, "reduce %s %lld -> %lld", kind == REDUCE_SUM ? "sum" : "max",
             (long long)tensor_numel(in), (long long)tensor_numel(out));
    profile_add(what, now_ms() - t0);
    return rc;
}
static int p_gemm(const gemm_args *g) {
    double t0 = now_ms();
    int rc = cpu_gemm(g);
    char what[64];
    snprintf(what, sizeof what, "gemm %lldx (%lld x %lld x %lld)%s%s", (long long)g->batch,
             (long long)g->M, (long long)g->N, (long long)g->K, g->a_col_stride != 1 ? " At" : "",
             g->b_col_stride != 1 ? " Bt" : "");
    profile_add(what, now_ms() - t0);
    return rc;
}
static void conv_name(char *what, size_t n, const char *pass, const conv_geometry *g) {
    snprintf(what, n, "conv %s N%lld %lld->%lld %lldx%lld->%lldx%lld", pass, (long long)g->N,
             (long long)g->C, (long long)g->K, (long long)g->H, (long long)g->W, (long long)g->OH,
             (long long)g->OW);
}
static int p_conv_fwd(const conv_geometry *g, const tensor *x, const tensor *w, tensor *y) {
    double t0 = now_ms();
    int rc = cpu_conv2d_forward(g, x, w, y);
    char what[64];
    conv_name(what, sizeof what, "fwd", g);
    profile_add(what, now_ms() - t0);
    return rc;
}
static int p_conv_dx(const conv_geometry *g, const tensor *dy, const tensor *w, tensor *dx) {
    double t0 = now_ms();
    int rc = cpu_conv2d_backward_input(g, dy, w, dx);
    char what[64];
    conv_name(what, sizeof what, "dx ", g);
    profile_add(what, now_ms() - t0);
    return rc;
}
static int p_conv_dw(const conv_geometry *g, const tensor *x, const tensor *dy, tensor *dw) {
    double t0 = now_ms();
    int rc = cpu_conv2d_backward_weight(g, x, dy, dw);
    char what[64];
    conv_name(what, sizeof what, "dw ", g);
    profile_add(what, now_ms() - t0);
    return rc;
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
    const char *env = getenv("BANIS_CPU_PROFILE");
    if (!env || !*env || !strcmp(env, "0")) return;
    cpu_backend.elementwise = p_elementwise;
    cpu_backend.reduce = p_reduce;
    cpu_backend.gemm = p_gemm;
    cpu_backend.conv2d_forward = p_conv_fwd;
    cpu_backend.conv2d_backward_input = p_conv_dx;
    cpu_backend.conv2d_backward_weight = p_conv_dw;
    atexit(print_profile);
}

const backend *backend_cpu(void) {
    pthread_once(&profile_once, profile_init);
    return &cpu_backend;
}
