// The CPU backend: the readable reference every other backend is tested against.
#include <pthread.h>
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

static void *cpu_alloc(size_t nbytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (nbytes + 63) & ~(size_t)63)) {
        err_set("out of host memory: could not allocate %zu bytes", nbytes);
        return NULL;
    }
    return p;
}

static void cpu_free(void *p) { free(p); }

static int cpu_copy(void *dst, const void *src, size_t n) {
    if (n) memmove(dst, src, n);
    return 0;
}

static int cpu_synchronize(void) { return 0; }

static const backend cpu_backend = {
    .name = "cpu",
    .device = DEVICE_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy_from_host = cpu_copy,
    .copy_to_host = cpu_copy,
    .copy_device = cpu_copy,
    .elementwise = cpu_elementwise,
    .reduce = cpu_reduce,
    .gemm = cpu_gemm,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_input = cpu_conv2d_backward_input,
    .conv2d_backward_weight = cpu_conv2d_backward_weight,
    .synchronize = cpu_synchronize,
};

const backend *backend_cpu(void) { return &cpu_backend; }
