// The CPU kernels' shared helpers (cpu_scratch.h): the thread count and per-thread scratch.
#include <pthread.h>
#include <stdlib.h>

#include "cpu_scratch.h"

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
