// The CUDA backend's kernels and launches: the kernels by key, loaded once; every launch
// counted, and timed for the profile when BANIS_CUDA_PROFILE is set.
#include <stdint.h>
#include <string.h>

#include "../../tensor/error.h"
#include "../profile.h"
#include "cuda_internal.h"
#include "kernel_cache.h"

// A table from a 64-bit key (the elementwise key, or a hash of a fixed kernel's
// name) to the loaded kernel, open addressing; a lookup never renders or compares strings.
static u64_map kernels;

int cuda_load_library(const char *src, const char *what, void **module) {
    int before = cuda_rt.dev->compile_count();
    int rc = cuda_rt.dev->load(src, what, module);
    cuda_rt.counters.compiles += cuda_rt.dev->compile_count() - before;
    cuda_rt.counters.module_loads++;
    return rc;
}

static uint64_t name_key(const char *name) {
    return cuda_kernel_hash(KERNEL_HASH_SEED, name, strlen(name)) | 1;
}

void *cuda_find_kernel(uint64_t key) {
    void **v = cuda_map_find(&kernels, key, false);
    return v ? *v : NULL;
}

static int add_kernel(uint64_t key, void *k) {
    void **v = cuda_map_find(&kernels, key, true);
    if (!v) {
        err_set("CUDA: out of host memory for the kernel table");
        return -1;
    }
    *v = k;
    return 0;
}

void *cuda_get_kernel(uint64_t key, const char *name, void *module) {
    void *k = cuda_find_kernel(key);
    if (k) return k;
    if (cuda_rt.dev->kernel(module, name, &k)) return NULL;
    return add_kernel(key, k) ? NULL : k;
}

void *cuda_fixed_kernel(const char *name) {
    return cuda_get_kernel(name_key(name), name, cuda_rt.fixed);
}

// BANIS_CUDA_PROFILE=1: every launch is timed with events (synchronising after each, so the
// step runs slower) and device time by kernel goes into the profile table (ops/profile.h).
static int profiling = -1;
static void *ev_start, *ev_stop;

int cuda_launch(void *k, const char *what, dim3 grid, dim3 block_dim, void **args) {
    cuda_rt.counters.launches++;
    if (profiling < 0) {
        profiling = profile_wanted("BANIS_CUDA_PROFILE", "CUDA: device time by kernel") &&
                    !cuda_rt.dev->event_new(&ev_start) && !cuda_rt.dev->event_new(&ev_stop);
    }
    bool timed = profiling && !cuda_capture.g; // a captured launch does not run now
    if (timed) cuda_rt.dev->event_record(ev_start);
    if (cuda_rt.dev->launch(k, what, grid.v, block_dim.v, args)) {
        if (cuda_capture.g) cuda_capture.failed = true;
        return -1;
    }
    if (timed) {
        float ms = 0;
        cuda_rt.dev->event_record(ev_stop);
        if (!cuda_rt.dev->event_wait(ev_stop) && !cuda_rt.dev->event_ms(ev_start, ev_stop, &ms))
            profile_add(what, ms);
    }
    return 0;
}

int cuda_sm_count(void) { return cuda_rt.sms > 0 ? cuda_rt.sms : 132; }

unsigned cuda_stride_blocks(long long n) {
    long long b = (n + 255) / 256, cap = 8LL * cuda_sm_count();
    return (unsigned)(b < cap ? (b > 0 ? b : 1) : cap);
}
