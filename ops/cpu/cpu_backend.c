// The CPU backend: the readable reference every other backend is tested against.
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    void *ptr[4];
    size_t size[4];
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch *s = p;
    for (int i = 0; i < 4; i++) free(s->ptr[i]);
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

static const backend cpu_backend = {
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

const backend *backend_cpu(void) { return &cpu_backend; }
