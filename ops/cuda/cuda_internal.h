// What the CUDA backend's files share (not an interface: ops/cuda/cuda.h and ops/backend.h are).
// The backend is one stream on one device (device.h), in five files by concern:
//   cuda_alloc.c    the caching allocator (and the blocks a graph owns)
//   cuda_copy.c     copies to and from the device, through a pinned staging ring
//   cuda_launch.c   the kernel table, launches and the profile
//   cuda_graph.c    capture and replay of CUDA graphs
//   cuda_backend.c  the ops (elementwise, reductions, GEMMs, convolutions) and the start
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda.h"
#include "device.h"
#include "kernels/abi.h"

// The device under the backend and what the backend has done (cuda_backend.c).
typedef struct {
    int ready; // 0 not tried, 1 ready, -1 unavailable
    char why[512];
    int arch, sms;
    bool allow_tf32;
    bool gemm_pipelined; // BANIS_CUDA_GEMM=pipelined: the TF32 GEMM's cp.async form
    void *fixed;         // the module of the fixed kernels
    const cudev *dev;
    backend_counters counters;
} cuda_runtime;
extern cuda_runtime cuda_rt;
// The per-channel sums' tickets (cuda_backend.c): one counter a channel, zero between launches.
#define CUDA_TICKETS 16384
extern unsigned *cuda_tickets;

// A map from a non-zero 64-bit key to a pointer, open addressing (kept at most half full):
// the free lists by block size, and the loaded kernels by key.
typedef struct {
    uint64_t key; // 0: empty
    void *value;
} map_slot;
typedef struct {
    map_slot *slots;
    size_t cap, n; // cap a power of two
} u64_map;

// The value slot of `key`: NULL when absent (unless `create`: then a new slot holding NULL;
// NULL only without host memory).
void **cuda_map_find(u64_map *m, uint64_t key, bool create);
size_t cuda_mix(uint64_t x); // a 64-bit hash finaliser, for open addressing

// ---- graphs (cuda_graph.c): each graph's private blocks and its random-stream deltas
typedef struct {
    void *ptr;
    size_t size;
} graph_block;
struct backend_graph {
    void *exec;          // the device's graph
    graph_block *blocks; // its private pool: blocks freed while it was captured (parked)
    size_t n_blocks, cap_blocks;
    int n_rngs;
    rng *rngs[CUDA_GRAPH_MAX_RNGS];
    uint64_t start[CUDA_GRAPH_MAX_RNGS];     // each generator's offset when the capture began
    uint64_t advance[CUDA_GRAPH_MAX_RNGS];   // how far one run of the step moves it
    uint64_t dev_delta[CUDA_GRAPH_MAX_RNGS]; // what the device's deltas hold before a replay
    unsigned long long *deltas;              // on the device: offset - start, per generator
    int64_t replays;
};
// The capture in progress.
typedef struct {
    backend_graph *g; // non-NULL while capturing
    bool failed;
    u64_map pool;     // size -> blocks freed while capturing (reused by the capture only)
    void **allocated; // blocks allocated while capturing
    size_t n_allocated, cap_allocated;
} cuda_capture_state;
extern cuda_capture_state cuda_capture;
// Slice 0 of the graphs' random-stream deltas: zeros, read by every launch outside a graph.
extern unsigned long long *cuda_zero_delta;
int cuda_graph_init(void); // makes the deltas' block (at the backend's start)

// ---- the allocator (cuda_alloc.c)
void *cuda_alloc(size_t nbytes);
void cuda_free(void *p);
// Keeps a freed block (parked) in `pool`'s free list of its size (NULL: the ordinary cache).
void cuda_cache_block(u64_map *pool, void *p, size_t size);
// At a capture's end: its pool becomes g's, and the blocks it allocated are marked g's.
void cuda_alloc_capture_done(backend_graph *g);
// A capture's plan (cuda.h: backend_cuda_plan_record), made at its start from the record when
// there is one, its blocks allocated; 0 also when there is none or it could not be made (then
// the capture takes blocks from the cache). Abandon: its blocks to the cache, before capturing.
int cuda_plan_start(void);
void cuda_plan_abandon(void);
// When g is freed: the blocks it wrote and still held become ordinary, its pool returns.
void cuda_alloc_graph_freed(backend_graph *g);

// ---- copies (cuda_copy.c)
int cuda_copy_from_host(void *dst, const void *src, size_t n);
int cuda_copy_to_host(void *dst, const void *src, size_t n);
int cuda_copy_device(void *dst, const void *src, size_t n);
int cuda_synchronize(void);

// ---- kernels and launches (cuda_launch.c)
typedef struct {
    unsigned v[3];
} dim3;
static inline dim3 d3(unsigned x, unsigned y, unsigned z) { return (dim3){{x, y, z}}; }
int cuda_load_library(const char *src, const char *what, void **module);
void *cuda_find_kernel(uint64_t key);
// The kernel `name` from `module` (looked up once, found by its key afterwards).
void *cuda_get_kernel(uint64_t key, const char *name, void *module);
void *cuda_fixed_kernel(const char *name); // from the fixed kernels' module
// Launches k (named `what` in messages and the profile); a failure fails a capture.
int cuda_launch(void *k, const char *what, dim3 grid, dim3 block_dim, void **args);
int cuda_sm_count(void);
// Blocks for a grid-stride kernel over n elements, 256 threads a block: enough to fill the
// device (8 blocks per multiprocessor; every kernel of this kind loops over the rest).
unsigned cuda_stride_blocks(long long n);
static inline void *cuda_data_ptr(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)tensor_dtype_size(t->dtype);
}
