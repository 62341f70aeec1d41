// The CUDA backend: device memory through a caching allocator, one stream, and kernels that
// are compiled at run time (the rendered elementwise ones and the fixed ones), cached in memory
// and on disk. It runs on a device seam (device.h): a real GPU through the CUDA runtime and
// NVRTC, or the emulated CUDA device (BANIS_CUDA=emulated). Every call is checked and named.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cuda_render.h"
#include "cuda.h"
#include "device.h"
#include "kernel_cache.h"
#include "kernels/abi.h"

static struct {
    int ready; // 0 not tried, 1 ready, -1 unavailable
    char why[512];
    int arch, sms;
    bool allow_tf32;
    void *fixed; // the module of the fixed kernels
} dev;
static const cudev *D; // the device under the backend

// ---- the caching allocator: freed blocks are kept by rounded size and reused -------------
// Free lists by size class and the live blocks by pointer, both in open-addressing tables, so
// an allocation or a free costs O(1) however many blocks are cached.
static backend_counters counters;

typedef struct block {
    void *ptr;
    struct block *next;
} block;

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

static u64_map classes; // block size -> head of its free list (block *)

// ---- graphs (see backend.h): the capture in progress, and each graph's private blocks.
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
static struct {
    backend_graph *g; // non-NULL while capturing
    bool failed;
    u64_map pool;     // size -> blocks freed while capturing (reused by the capture only)
    void **allocated; // blocks allocated while capturing
    size_t n_allocated, cap_allocated;
} capture;
// The graphs' random-stream deltas, CUDA_GRAPH_MAX_RNGS to a slice, in one block made at start:
// slice 0 stays zero (every launch outside a graph reads it), slices 1.. are live graphs'
// (taken and zeroed by a device copy of slice 0 at capture: capturing allocates nothing).
#define DELTA_SLICES 64
static unsigned long long *zero_delta;
static uint64_t slices_used = 1;
static size_t bytes_in_use, bytes_cached;

typedef struct backend_graph backend_graph;
typedef struct {
    void *ptr; // NULL: empty; TOMBSTONE: deleted
    size_t size;
    backend_graph *graph; // allocated while capturing it: returns to its pool when freed
} live_block;
#define TOMBSTONE ((void *)1)
static live_block *live;
static size_t cap_live, n_live_used; // used counts tombstones too

static size_t round_size(size_t n) {
    if (n < (1u << 20)) return (n + 511) & ~(size_t)511;
    return (n + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
}

static size_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static map_slot *map_slot_of(map_slot *t, size_t cap, uint64_t key) {
    size_t i = mix(key) & (cap - 1);
    while (t[i].key && t[i].key != key) i = (i + 1) & (cap - 1);
    return &t[i];
}

// The value slot of `key`: NULL when absent (unless `create`: then a new slot holding NULL;
// NULL only without host memory).
static void **map_find(u64_map *m, uint64_t key, bool create) {
    if (m->cap) {
        map_slot *e = map_slot_of(m->slots, m->cap, key);
        if (e->key || !create) return e->key ? &e->value : NULL;
    }
    if (!create) return NULL;
    if ((m->n + 1) * 2 > m->cap) { // grow and rehash
        size_t cap = m->cap ? 2 * m->cap : 256;
        map_slot *t = calloc(cap, sizeof *t);
        if (!t) return NULL;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key) *map_slot_of(t, cap, m->slots[i].key) = m->slots[i];
        free(m->slots);
        m->slots = t;
        m->cap = cap;
    }
    map_slot *e = map_slot_of(m->slots, m->cap, key);
    e->key = key;
    e->value = NULL;
    m->n++;
    return &e->value;
}

// Gives the cached blocks back to the device, after the work that used them has finished
// (cudaFree does not wait for the stream). Never while capturing: nothing is freed then.
static void release_cache(void) {
    if (capture.g) return;
    if (D->sync()) return;
    counters.syncs++;
    for (size_t i = 0; i < classes.cap; i++)
        while (classes.slots[i].value) {
            block *b = classes.slots[i].value;
            classes.slots[i].value = b->next;
            D->free(b->ptr);
            bytes_cached -= (size_t)classes.slots[i].key;
            free(b);
        }
}

static int live_grow(void) {
    size_t cap = cap_live ? 2 * cap_live : 4096;
    live_block *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < cap_live; i++)
        if (live[i].ptr && live[i].ptr != TOMBSTONE)
            for (size_t j = mix((uintptr_t)live[i].ptr) & (cap - 1);; j = (j + 1) & (cap - 1))
                if (!t[j].ptr) {
                    t[j] = live[i];
                    break;
                }
    size_t used = 0;
    for (size_t i = 0; i < cap; i++) used += t[i].ptr != NULL;
    free(live);
    live = t;
    cap_live = cap;
    n_live_used = used;
    return 0;
}

static int graph_keep(backend_graph *g, void *p, size_t size) {
    if (g->n_blocks == g->cap_blocks) {
        size_t c = g->cap_blocks ? 2 * g->cap_blocks : 64;
        graph_block *t = realloc(g->blocks, c * sizeof *t);
        if (!t) return -1;
        g->blocks = t;
        g->cap_blocks = c;
    }
    g->blocks[g->n_blocks++] = (graph_block){p, size};
    return 0;
}

static void *cuda_alloc(size_t nbytes) {
    size_t size = round_size(nbytes);
    void *p = NULL;
    void **head = map_find(capture.g ? &capture.pool : &classes, size, false);
    if (capture.g && !(head && *head)) head = map_find(&classes, size, false);
    if (head && *head) {
        block *hit = *head;
        *head = hit->next;
        p = hit->ptr;
        bytes_cached -= size;
        free(hit);
        D->park(p, false);
    }
    if (!p && capture.g) { // cudaMalloc inside a capture: refused (the step's own run came first)
        capture.failed = true;
        err_set("CUDA graph capture: a device allocation of %zu bytes inside the captured step "
                "(the step's run before its capture left no free block of that size: the step "
                "allocates differently from run to run)",
                size);
        return NULL;
    }
    if (!p) {
        counters.device_allocs++;
        int rc = D->malloc(&p, size);
        if (rc) { // give the cache back and try once more
            release_cache();
            rc = D->malloc(&p, size);
        }
        if (rc) {
            err_prefix("(%zu bytes in use by tensors) ", bytes_in_use);
            return NULL;
        }
    }
    if ((n_live_used + 1) * 2 > cap_live && live_grow()) {
        D->free(p);
        err_set("CUDA: out of host memory tracking device blocks");
        return NULL;
    }
    size_t i = mix((uintptr_t)p) & (cap_live - 1);
    while (live[i].ptr && live[i].ptr != TOMBSTONE) i = (i + 1) & (cap_live - 1);
    if (!live[i].ptr) n_live_used++;
    live[i] = (live_block){p, size, NULL};
    bytes_in_use += size;
    if (capture.g) {
        if (capture.n_allocated == capture.cap_allocated) {
            size_t c = capture.cap_allocated ? 2 * capture.cap_allocated : 256;
            void **t = realloc(capture.allocated, c * sizeof *t);
            if (!t) {
                capture.failed = true;
                return p;
            }
            capture.allocated = t;
            capture.cap_allocated = c;
        }
        capture.allocated[capture.n_allocated++] = p;
    }
    return p;
}

// Keeps a freed block (parked) in `pool`'s free list of its size; without host memory for the
// list entry, gives it back to the device.
static void cache_block(u64_map *pool, void *p, size_t size) {
    void **head = map_find(pool, size, true);
    block *b = head ? malloc(sizeof *b) : NULL;
    if (!b) { // out of host memory: the block goes back to the device (never while capturing)
        if (capture.g)
            capture.failed = true;
        else
            D->free(p);
        return;
    }
    *b = (block){p, *head};
    *head = b;
    bytes_cached += size;
    D->park(p, true);
}

static void cuda_free(void *p) {
    if (!p || !cap_live) return;
    for (size_t i = mix((uintptr_t)p) & (cap_live - 1); live[i].ptr; i = (i + 1) & (cap_live - 1)) {
        if (live[i].ptr != p) continue;
        size_t size = live[i].size;
        backend_graph *owner = live[i].graph;
        live[i].ptr = TOMBSTONE;
        bytes_in_use -= size;
        if (owner) { // a block a graph wrote while it was captured: the graph's from now on
            if (graph_keep(owner, p, size)) {
                if (!capture.g) D->free(p);
                return;
            }
            D->park(p, true);
            return;
        }
        cache_block(capture.g ? &capture.pool : &classes, p, size);
        return;
    }
}

// Uploads go through a pinned staging ring, so the caller's buffer is free at once and the
// copy needs no synchronisation: a region of the ring is reused only after the copy that last
// read it has completed (an event per copy; with a 64 MiB ring that is long done in a training
// loop). Larger copies are staged in pieces the same way.
#define STAGING_BYTES  ((size_t)64 << 20)
#define STAGING_COPIES 64
static struct {
    char *buf;
    size_t head;
    struct {
        void *ev;
        size_t off, len;
    } q[STAGING_COPIES];
    int first, count;
} staging;

static int
staging_wait(int k) { // waits for queue entry k (from first) and pops it and those before
    void *ev = staging.q[(staging.first + k) % STAGING_COPIES].ev;
    int reached = D->event_query(ev);
    if (reached < 0) return -1;
    if (!reached) {
        counters.syncs++;
        if (D->event_wait(ev)) return -1;
    }
    staging.first = (staging.first + k + 1) % STAGING_COPIES;
    staging.count -= k + 1;
    return 0;
}

static int refuse_in_capture(const char *what) {
    capture.failed = true;
    err_set("CUDA graph capture: %s inside the captured step (a graph holds device work only: "
            "upload before the step, read after it)",
            what);
    return -1;
}

static int copy_from_host(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    if (capture.g) return refuse_in_capture("a copy from the host");
    counters.h2d_copies++;
    counters.h2d_bytes += (int64_t)n;
    if (!staging.buf) {
        staging.buf = D->host_alloc(STAGING_BYTES);
        for (int i = 0; staging.buf && i < STAGING_COPIES; i++)
            if (D->event_new(&staging.q[i].ev)) {
                D->host_free(staging.buf);
                staging.buf = NULL;
            }
    }
    if (!staging.buf) { // no pinned memory: a synchronous copy
        counters.syncs++;
        return D->copy_h2d(dst, src, n) || D->sync() ? -1 : 0;
    }
    for (size_t done = 0; done < n;) {
        size_t len = n - done < STAGING_BYTES / 2 ? n - done : STAGING_BYTES / 2;
        if (staging.head + len > STAGING_BYTES) staging.head = 0;
        size_t off = staging.head;
        if (staging.count == STAGING_COPIES && staging_wait(0)) return -1;
        int last = -1; // the newest queued copy whose region overlaps [off, off + len)
        for (int k = 0; k < staging.count; k++) {
            int i = (staging.first + k) % STAGING_COPIES;
            if (staging.q[i].off < off + len && off < staging.q[i].off + staging.q[i].len) last = k;
        }
        if (last >= 0 && staging_wait(last)) return -1;
        memcpy(staging.buf + off, (const char *)src + done, len);
        if (D->copy_h2d((char *)dst + done, staging.buf + off, len)) return -1;
        int i = (staging.first + staging.count++) % STAGING_COPIES;
        staging.q[i].off = off;
        staging.q[i].len = len;
        if (D->event_record(staging.q[i].ev)) return -1;
        staging.head = off + len;
        done += len;
    }
    return 0;
}

static int copy_to_host(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    if (capture.g) return refuse_in_capture("a copy to the host");
    counters.d2h_copies++;
    counters.d2h_bytes += (int64_t)n;
    counters.syncs++;
    return D->copy_d2h(dst, src, n);
}

static int copy_device(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    return D->copy_d2d(dst, src, n);
}

static int synchronize(void) {
    if (capture.g) return refuse_in_capture("a synchronisation");
    counters.syncs++;
    return D->sync();
}

// ---- kernels: a table from a 64-bit key (the elementwise key, or a hash of a fixed kernel's
// name) to the loaded kernel, open addressing; a lookup never renders or compares strings.
static u64_map kernels;

static int load_library(const char *src, const char *what, void **module) {
    int before = D->compile_count();
    int rc = D->load(src, what, module);
    counters.compiles += D->compile_count() - before;
    counters.module_loads++;
    return rc;
}

static uint64_t name_key(const char *name) {
    return cuda_kernel_hash(KERNEL_HASH_SEED, name, strlen(name)) | 1;
}

static void *find_kernel(uint64_t key) {
    void **v = map_find(&kernels, key, false);
    return v ? *v : NULL;
}

static int add_kernel(uint64_t key, void *k) {
    void **v = map_find(&kernels, key, true);
    if (!v) {
        err_set("CUDA: out of host memory for the kernel table");
        return -1;
    }
    *v = k;
    return 0;
}

// The kernel `name` from the library `lib` (loaded once, found by its key afterwards).
static void *get_kernel(uint64_t key, const char *name, void *module) {
    void *k = find_kernel(key);
    if (k) return k;
    if (D->kernel(module, name, &k)) return NULL;
    return add_kernel(key, k) ? NULL : k;
}

static void *fixed_kernel(const char *name) { return get_kernel(name_key(name), name, dev.fixed); }

typedef struct {
    unsigned v[3];
} dim3;
static dim3 d3(unsigned x, unsigned y, unsigned z) { return (dim3){{x, y, z}}; }

// BANIS_CUDA_PROFILE=1: every launch is timed with events (synchronising after each, so the
// step runs slower) and a table of device time by kernel is printed at exit.
typedef struct {
    char name[48];
    double ms;
    int64_t calls;
} profile_row;
static profile_row profile[256];
static int n_profile, profiling = -1;
static void *ev_start, *ev_stop;

static int by_time(const void *a, const void *b) {
    double x = ((const profile_row *)a)->ms, y = ((const profile_row *)b)->ms;
    return (x < y) - (x > y);
}

static void print_profile(void) {
    double total = 0;
    for (int i = 0; i < n_profile; i++) total += profile[i].ms;
    qsort(profile, (size_t)n_profile, sizeof *profile, by_time);
    fprintf(stderr, "\nCUDA profile (BANIS_CUDA_PROFILE): device time by kernel, %.1f ms in all\n",
            total);
    fprintf(stderr, "%-48s %10s %8s %10s %6s\n", "kernel", "ms", "calls", "us/call", "%");
    for (int i = 0; i < n_profile; i++)
        fprintf(stderr, "%-48s %10.2f %8lld %10.1f %6.1f\n", profile[i].name, profile[i].ms,
                (long long)profile[i].calls, 1e3 * profile[i].ms / (double)profile[i].calls,
                100 * profile[i].ms / total);
}

static void profile_add(const char *what, float ms) {
    int i = 0;
    while (i < n_profile && strcmp(profile[i].name, what)) i++;
    if (i == n_profile) {
        if (n_profile == 256) return;
        snprintf(profile[n_profile++].name, sizeof profile[0].name, "%s", what);
    }
    profile[i].ms += ms;
    profile[i].calls++;
}

static int launch(void *k, const char *what, dim3 grid, dim3 block_dim, void **args) {
    counters.launches++;
    if (profiling < 0) {
        const char *env = getenv("BANIS_CUDA_PROFILE");
        profiling = env && *env && strcmp(env, "0");
        if (profiling && (D->event_new(&ev_start) || D->event_new(&ev_stop))) profiling = 0;
        if (profiling) atexit(print_profile);
    }
    bool timed = profiling && !capture.g; // a captured launch does not run now
    if (timed) D->event_record(ev_start);
    if (D->launch(k, what, grid.v, block_dim.v, args)) {
        if (capture.g) capture.failed = true;
        return -1;
    }
    if (timed) {
        float ms = 0;
        D->event_record(ev_stop);
        if (!D->event_wait(ev_stop) && !D->event_ms(ev_start, ev_stop, &ms)) profile_add(what, ms);
    }
    return 0;
}

static void *data_ptr(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)tensor_dtype_size(t->dtype);
}

static int sm_count(void);
// Blocks for a grid-stride kernel over n elements, 256 threads a block: enough to fill the
// device (8 blocks per multiprocessor; every kernel of this kind loops over the rest).
static unsigned stride_blocks(long long n) {
    long long b = (n + 255) / 256, cap = 8LL * sm_count();
    return (unsigned)(b < cap ? (b > 0 ? b : 1) : cap);
}

static int cuda_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    int64_t n = tensor_numel(outs[0]);
    if (n == 0) return 0;
    static cuda_ew_args a; // ~2 KB: not on the stack; the launch copies it
    cuda_ew_layout L = cuda_ew_plan(p, outs, ins, &a);
    uint64_t key = cuda_ew_key(p, &L, outs, ins) | 1; // never 0, the empty slot
    char name[64];
    void *k = find_kernel(key);
    if (!k) { // first use of this program structure: render, compile (or read the disk cache), load
        char *src = cuda_render_elementwise(p, &L, outs, ins, backend_op_name, name);
        if (!src) {
            err_set("CUDA: out of host memory rendering a kernel");
            return -1;
        }
        void *lib;
        int rc = load_library(src, name, &lib);
        free(src);
        if (rc || !(k = get_kernel(key, name, lib))) return -1;
    }
    a.rng_seed = p->rng_seed;
    a.rng_offset = p->rng_offset;
    a.rng_delta = NULL;
    if (ew_uses_rng(p)) {
        a.rng_delta = zero_delta;
        if (capture.g) { // the graph's delta of this generator, advanced at every replay
            int i = 0;
            while (i < capture.g->n_rngs && (const void *)capture.g->rngs[i] != p->rng_stream) i++;
            if (i == capture.g->n_rngs) {
                capture.failed = true;
                err_set("CUDA graph capture: %s draws random numbers from a generator not named "
                        "to the capture (a replay could not advance it)",
                        backend_op_name);
                return -1;
            }
            a.rng_delta = capture.g->deltas + i;
        }
    }
    int slot[EW_MAX_NODES];
    ew_scalar_args(p, a.scalar, slot);
    unsigned blocks = stride_blocks(n);
    void *args[] = {&a};
    char what[64];
    snprintf(what, sizeof what, "ew %s", backend_op_name);
    return launch(k, what, d3(blocks, 1, 1), d3(256, 1, 1), args);
}

static int sm_count(void);

// Appends a dimension, merged into the previous one when they are contiguous with each other.
static void push_dim(long long *shape, long long *s1, long long *s2, int *nd, long long n,
                     long long st1, long long st2, bool two) {
    if (*nd > 0 && s1[*nd - 1] == st1 * n && (!two || s2[*nd - 1] == st2 * n)) {
        shape[*nd - 1] *= n;
        s1[*nd - 1] = st1;
        if (two) s2[*nd - 1] = st2;
        return;
    }
    shape[*nd] = n;
    s1[*nd] = st1;
    if (two) s2[*nd] = st2;
    (*nd)++;
}

static int cuda_reduce(reduce_kind kind, const tensor *in, tensor *out) {
    cuda_red_args a = {.n_out = tensor_numel(out), .n_red = 1};
    for (int d = 0; d < in->ndim; d++) {
        if (in->shape[d] == 1) continue;
        if (out->shape[d] == 1) {
            push_dim(a.red_shape, a.red_stride, NULL, &a.red_nd, in->shape[d], in->strides[d], 0,
                     false);
            a.n_red *= in->shape[d];
        } else {
            push_dim(a.out_shape, a.out_in_stride, a.out_stride, &a.out_nd, out->shape[d],
                     in->strides[d], out->strides[d], true);
        }
    }
    if (a.n_out == 0) return 0;
    char name[32];
    void *ip = data_ptr(in), *op = data_ptr(out);
    if (a.n_red <= 128) { // short rows: a thread per output, not a block
        snprintf(name, sizeof name, "reduce_rows_%s_%s", kind == REDUCE_MAX ? "max" : "sum",
                 in->dtype == TENSOR_F64 ? "f64" : "f32");
        void *k = fixed_kernel(name);
        void *args[] = {&ip, &op, &a};
        return k ? launch(k, name, d3(stride_blocks(a.n_out), 1, 1), d3(256, 1, 1), args) : -1;
    }
    snprintf(name, sizeof name, "reduce_%s_%s", kind == REDUCE_MAX ? "max" : "sum",
             in->dtype == TENSOR_F64 ? "f64" : "f32");
    void *k = fixed_kernel(name);
    if (!k) return -1;
    // Few outputs over long reductions: split each reduction over blocks, then sum the partials.
    long long target = 4LL * sm_count(), splits = 1;
    if (a.n_out < target && a.n_red >= 8192) {
        splits = (target + a.n_out - 1) / a.n_out;
        if (splits > a.n_red / 2048) splits = a.n_red / 2048;
        if (splits > 65535) splits = 65535;
    }
    if (splits <= 1) {
        a.chunk = a.n_red;
        a.splits = 1;
        void *args[] = {&ip, &op, &a};
        return launch(k, name, d3((unsigned)a.n_out, 1, 1), d3(256, 1, 1), args);
    }
    a.chunk = (a.n_red + splits - 1) / splits;
    a.splits = (int)splits;
    size_t esize = (size_t)tensor_dtype_size(in->dtype);
    void *partial = cuda_alloc((size_t)(a.n_out * splits) * esize);
    if (!partial) return -1;
    void *args[] = {&ip, &partial, &a};
    int rc = launch(k, name, d3((unsigned)a.n_out, (unsigned)splits, 1), d3(256, 1, 1), args);
    // second pass: out[o] = reduce(partial[o * splits ... ])
    cuda_red_args b = {.n_out = a.n_out,
                       .n_red = splits,
                       .out_nd = a.out_nd,
                       .red_nd = 1,
                       .chunk = splits,
                       .splits = 1};
    memcpy(b.out_shape, a.out_shape, sizeof b.out_shape);
    memcpy(b.out_stride, a.out_stride, sizeof b.out_stride);
    long long st = splits; // partials are contiguous (n_out, splits) in the output's index order
    for (int d = a.out_nd - 1; d >= 0; d--) {
        b.out_in_stride[d] = st;
        st *= a.out_shape[d];
    }
    b.red_shape[0] = splits;
    b.red_stride[0] = 1;
    void *args2[] = {&partial, &op, &b};
    if (!rc) rc = launch(k, name, d3((unsigned)a.n_out, 1, 1), d3(256, 1, 1), args2);
    cuda_free(partial);
    return rc;
}

static int run_igemm(const char *base, tensor_dtype dt, const void *a, const void *b, void *c,
                     cuda_gemm_args *g, int batch) {
    if (g->M == 0 || g->N == 0 || batch == 0) return 0; // nothing to write (K = 0 writes zeros)
    char name[64];
    snprintf(name, sizeof name, "%s_%s", base,
             dt == TENSOR_F64 ? "f64"
             : dev.allow_tf32 ? "f32_tf32"
                              : "f32_exact");
    void *k = fixed_kernel(name);
    if (!k) return -1;
    void *args[] = {&a, &b, &c, g};
    return launch(k, name,
                  d3((unsigned)((g->N + 127) / 128), (unsigned)((g->M + 63) / 64), (unsigned)batch),
                  d3(256, 1, 1), args);
}

// One GEMM whose K is split over blocks when its output has too few tiles to fill the GPU and K
// is long (a weight gradient's images x pixels, a dense layer's features): the blocks write
// partials, summed in a fixed order (deterministic). C is contiguous (M, N).
static int run_split_k(const char *base, tensor_dtype dt, const void *a, const void *b, void *c,
                       cuda_gemm_args *d) {
    long long tiles = (long long)((d->N + 127) / 128) * ((d->M + 63) / 64),
              target = 2LL * sm_count();
    int splits = 1;
    if (tiles < target && d->K >= 1024) {
        splits = (int)((target + tiles - 1) / tiles);
        if (splits > d->K / 512) splits = d->K / 512;
        if (splits > 256) splits = 256;
    }
    d->k_chunk = ((d->K + splits - 1) / splits + 31) / 32 * 32; // whole tiles (BK is 16 or 32)
    splits = d->k_chunk ? (d->K + d->k_chunk - 1) / d->k_chunk : 1;
    if (splits <= 1) {
        d->k_chunk = strcmp(base, "matmul") ? d->K : 0;
        return run_igemm(base, dt, a, b, c, d, 1);
    }
    d->a_bs = d->b_bs = 0; // z is the split, not a batch
    size_t esize = (size_t)tensor_dtype_size(dt);
    long long mn = (long long)d->M * d->N;
    void *ws = cuda_alloc((size_t)(mn * splits) * esize);
    if (!ws) return -1;
    int rc = run_igemm(base, dt, a, b, ws, d, splits);
    if (!rc) {
        const char *name = dt == TENSOR_F64 ? "splitk_sum_f64" : "splitk_sum_f32";
        void *k = fixed_kernel(name);
        void *args[] = {&ws, &c, &mn, &splits};
        rc = k ? launch(k, name, d3(stride_blocks(mn), 1, 1), d3(256, 1, 1), args) : -1;
    }
    cuda_free(ws);
    return rc;
}

static int cuda_gemm(const gemm_args *g) {
    cuda_gemm_args d = {.M = (int)g->M,
                        .N = (int)g->N,
                        .K = (int)g->K,
                        .a_bs = g->a_batch_stride,
                        .a_rs = g->a_row_stride,
                        .a_cs = g->a_col_stride,
                        .b_bs = g->b_batch_stride,
                        .b_rs = g->b_row_stride,
                        .b_cs = g->b_col_stride};
    size_t es = (size_t)tensor_dtype_size(g->c->dtype);
    char *a = data_ptr(g->a), *b = data_ptr(g->b), *c = data_ptr(g->c);
    if (g->batch == 1) return run_split_k("matmul", g->c->dtype, a, b, c, &d);
    // the grid's z holds at most 65,535 batch entries: larger batches in slices
    for (int64_t b0 = 0; b0 < g->batch; b0 += 65535) {
        int n = (int)(g->batch - b0 < 65535 ? g->batch - b0 : 65535);
        if (run_igemm("matmul", g->c->dtype, a + (size_t)(b0 * g->a_batch_stride) * es,
                      b + (size_t)(b0 * g->b_batch_stride) * es,
                      c + (size_t)(b0 * g->M * g->N) * es, &d, n))
            return -1;
    }
    return 0;
}

static cuda_gemm_args conv_args(const conv_geometry *g) {
    return (cuda_gemm_args){.n = (int)g->N,
                            .c = (int)g->C,
                            .h = (int)g->H,
                            .w = (int)g->W,
                            .k = (int)g->K,
                            .r = (int)g->R,
                            .s = (int)g->S,
                            .oh = (int)g->OH,
                            .ow = (int)g->OW,
                            .sh = (int)g->stride_h,
                            .sw = (int)g->stride_w,
                            .pt = (int)g->pad_top,
                            .pl = (int)g->pad_left};
}

// The GEMM's kernels hold sizes and offsets within one image in `int`.
static int check_int_sizes(const char *op, const conv_geometry *g) {
    int64_t v[] = {g->N * g->OH * g->OW, g->N * g->H * g->W, g->C * g->R * g->S,
                   g->K * g->R * g->S,   g->C * g->H * g->W, g->K * g->OH * g->OW};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (v[i] > 2147483647) {
            err_set("CUDA: %s: a dimension product (%lld) exceeds the kernels' 32-bit index range",
                    op, (long long)v[i]);
            return -1;
        }
    return 0;
}

// The GEMM's tile depth for this dtype (TF32 tiles are 32 deep, the exact ones 16).
static int tile_depth(tensor_dtype dt) { return dt == TENSOR_F32 && dev.allow_tf32 ? 32 : 16; }

// A copy of the weight w (d0, d1, d2) with element (i0, i1, i2) at i0*s0 + i1*s1 + i2*s2, in a
// block from the cache (the caller frees it after its launches: the stream orders reuse).
static void *permuted(const tensor *w, int64_t d0, int64_t d1, int64_t d2, long long s0,
                      long long s1, long long s2) {
    size_t es = (size_t)tensor_dtype_size(w->dtype);
    void *out = cuda_alloc((size_t)(d0 * d1 * d2) * es);
    if (!out) return NULL;
    const char *name = w->dtype == TENSOR_F64 ? "permute3_f64" : "permute3_f32";
    void *k = fixed_kernel(name);
    long long total = d0 * d1 * d2;
    unsigned blocks = stride_blocks(total);
    int a0 = (int)d0, a1 = (int)d1, a2 = (int)d2;
    void *in = data_ptr(w);
    void *args[] = {&in, &out, &a0, &a1, &a2, &s0, &s1, &s2};
    if (!k || launch(k, name, d3(blocks, 1, 1), d3(256, 1, 1), args)) {
        cuda_free(out);
        return NULL;
    }
    return out;
}

static int cuda_conv_forward(const conv_geometry *g, const tensor *x, const tensor *w, tensor *y) {
    if (check_int_sizes("conv2d forward", g)) return -1;
    cuda_gemm_args d = conv_args(g);
    d.M = (int)g->K, d.N = (int)(g->N * g->OH * g->OW), d.K = (int)(g->C * g->R * g->S);
    d.tap_major = g->C % tile_depth(y->dtype) == 0;
    if (!d.tap_major)
        return run_igemm("conv_forward", y->dtype, data_ptr(w), data_ptr(x), data_ptr(y), &d, 1);
    // K ordered (tap, channel): w as (K, R*S, C), so a tile's A loads are contiguous
    long long rs = g->R * g->S;
    void *wt = permuted(w, g->K, g->C, rs, rs * g->C, 1, g->C);
    if (!wt) return -1;
    int rc = run_igemm("conv_forward", y->dtype, wt, data_ptr(x), data_ptr(y), &d, 1);
    cuda_free(wt);
    return rc;
}

static int cuda_conv_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w,
                                    tensor *dx) {
    if (check_int_sizes("conv2d input gradient", g)) return -1;
    cuda_gemm_args d = conv_args(g);
    if (g->C <= 4) { // a 64-row GEMM tile would be mostly empty: one thread per dx element
        const char *name =
            dx->dtype == TENSOR_F64 ? "conv_bwd_input_direct_f64" : "conv_bwd_input_direct_f32";
        void *k = fixed_kernel(name);
        if (!k) return -1;
        long long total = g->N * g->C * g->H * g->W;
        if (total == 0) return 0;
        unsigned blocks = stride_blocks(total);
        void *dyp = data_ptr(dy), *wp = data_ptr(w), *dxp = data_ptr(dx);
        void *args[] = {&dyp, &wp, &dxp, &d};
        return launch(k, name, d3(blocks, 1, 1), d3(256, 1, 1), args);
    }
    // by phase: block z covers the input pixels (iy % sh, ix % sw) = (z / sw, z % sw)
    d.hq = (int)((g->H + g->stride_h - 1) / g->stride_h);
    d.wq = (int)((g->W + g->stride_w - 1) / g->stride_w);
    d.rq = (int)((g->R + g->stride_h - 1) / g->stride_h);
    d.sq = (int)((g->S + g->stride_w - 1) / g->stride_w);
    d.M = (int)g->C, d.N = (int)(g->N * d.hq * d.wq), d.K = (int)(g->K * d.rq * d.sq);
    d.tap_major = g->K % tile_depth(dx->dtype) == 0;
    int phases = (int)(g->stride_h * g->stride_w);
    if (!d.tap_major)
        return run_igemm("conv_backward_input", dx->dtype, data_ptr(w), data_ptr(dy), data_ptr(dx),
                         &d, phases);
    // K ordered (tap, output channel): w as (R*S, C, K), contiguous along the output channel
    long long rs = g->R * g->S;
    void *wt = permuted(w, g->K, g->C, rs, 1, g->K, g->C * g->K);
    if (!wt) return -1;
    int rc =
        run_igemm("conv_backward_input", dx->dtype, wt, data_ptr(dy), data_ptr(dx), &d, phases);
    cuda_free(wt);
    return rc;
}

static int cuda_conv_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy,
                                     tensor *dw) {
    if (check_int_sizes("conv2d weight gradient", g)) return -1;
    cuda_gemm_args d = conv_args(g);
    d.M = (int)g->K, d.N = (int)(g->C * g->R * g->S), d.K = (int)(g->N * g->OH * g->OW);
    d.tap_major = (g->OH * g->OW) % tile_depth(dw->dtype) == 0; // a tile lies within one image
    return run_split_k("conv_backward_weight", dw->dtype, data_ptr(dy), data_ptr(x), data_ptr(dw),
                       &d);
}

static const backend cuda_backend = {
    .mem = {.name = "cuda",
            .device = DEVICE_CUDA,
            .alloc = cuda_alloc,
            .free = cuda_free,
            .copy_from_host = copy_from_host,
            .copy_to_host = copy_to_host,
            .copy_device = copy_device,
            .synchronize = synchronize},
    .elementwise = cuda_elementwise,
    .reduce = cuda_reduce,
    .gemm = cuda_gemm,
    .conv2d_forward = cuda_conv_forward,
    .conv2d_backward_input = cuda_conv_backward_input,
    .conv2d_backward_weight = cuda_conv_backward_weight,
};

static int sm_count(void) { return dev.sms > 0 ? dev.sms : 132; }

static int init(void) {
    const char *which = getenv("BANIS_CUDA");
    bool emulated = which && !strcmp(which, "emulated");
    if (which && *which && !emulated && strcmp(which, "gpu")) {
        snprintf(dev.why, sizeof dev.why, "CUDA: BANIS_CUDA=%s is neither 'gpu' nor 'emulated'",
                 which);
        return -1;
    }
    D = emulated ? cudev_emulated(dev.why, sizeof dev.why) : cudev_cuda(dev.why, sizeof dev.why);
    if (!D) return -1;
    dev.arch = D->arch;
    dev.sms = D->sms;
    const char *tf32 = getenv("BANIS_ALLOW_TF32");
    dev.allow_tf32 = !(tf32 && !strcmp(tf32, "0"));
    if (load_library(cuda_fixed_source(), "banis fixed kernels", &dev.fixed)) {
        snprintf(dev.why, sizeof dev.why, "%s", err_message());
        return -1;
    }
    static const unsigned long long zeros[DELTA_SLICES * CUDA_GRAPH_MAX_RNGS];
    zero_delta = cuda_alloc(sizeof zeros);
    if (!zero_delta || copy_from_host(zero_delta, zeros, sizeof zeros)) {
        snprintf(dev.why, sizeof dev.why, "%s", err_message());
        return -1;
    }
    return 0;
}

const backend *backend_cuda(void) {
    if (!dev.ready) dev.ready = init() ? -1 : 1;
    if (dev.ready < 0) {
        err_set("%s", dev.why);
        return NULL;
    }
    return &cuda_backend;
}

void backend_cuda_allow_tf32(bool allow) { dev.allow_tf32 = allow; }

void backend_cuda_memory(size_t *in_use, size_t *cached) {
    *in_use = bytes_in_use;
    *cached = bytes_cached;
}

backend_counters backend_cuda_counters(void) { return counters; }

const char *backend_cuda_device_name(void) { return D ? D->name : "no CUDA device"; }
bool backend_cuda_is_emulated(void) { return D && D->emulated; }

// ---- graphs ------------------------------------------------------------------------------
void backend_graph_free(backend_graph *g) {
    if (!g) return;
    if (g->exec) D->graph_free(g->exec);
    for (size_t i = 0; i < cap_live; i++) // blocks it wrote, still held: ordinary from now on
        if (live[i].ptr && live[i].ptr != TOMBSTONE && live[i].graph == g) live[i].graph = NULL;
    for (size_t i = 0; i < g->n_blocks; i++) // its pool back to the cache (parked already)
        cache_block(&classes, g->blocks[i].ptr, g->blocks[i].size);
    free(g->blocks);
    if (g->deltas)
        slices_used &= ~((uint64_t)1 << ((g->deltas - zero_delta) / CUDA_GRAPH_MAX_RNGS));
    free(g);
}

int backend_cuda_capture_begin(int n_rngs, rng *const *rngs) {
    if (!backend_cuda()) return -1;
    if (capture.g) {
        err_set("CUDA graph capture: a capture is in progress already");
        return -1;
    }
    if (n_rngs > CUDA_GRAPH_MAX_RNGS) {
        err_set("CUDA graph capture: %d random generators named, at most %d", n_rngs,
                CUDA_GRAPH_MAX_RNGS);
        return -1;
    }
    int slice = 1;
    while (slice < DELTA_SLICES && (slices_used >> slice & 1)) slice++;
    if (slice == DELTA_SLICES) {
        err_set("CUDA graph capture: %d graphs exist already (free one first)", DELTA_SLICES - 1);
        return -1;
    }
    backend_graph *g = calloc(1, sizeof *g);
    if (!g) {
        err_set("CUDA graph capture: out of host memory");
        return -1;
    }
    g->deltas = zero_delta + slice * CUDA_GRAPH_MAX_RNGS;
    slices_used |= (uint64_t)1 << slice;
    if (copy_device(g->deltas, zero_delta, CUDA_GRAPH_MAX_RNGS * sizeof *zero_delta)) {
        backend_graph_free(g);
        return -1;
    }
    g->n_rngs = n_rngs;
    for (int i = 0; i < n_rngs; i++) {
        g->rngs[i] = rngs[i];
        g->start[i] = rngs[i]->offset;
    }
    // the graph's last kernel, launched once now (advancing nothing), so that its module is
    // loaded before the capture: a capture loads nothing
    void *k = n_rngs ? fixed_kernel("advance_u64") : NULL;
    cuda_advance_args none = {.n = 0};
    void *args[] = {&g->deltas, &none};
    if (n_rngs && (!k || launch(k, "graph: advance random streams", d3(1, 1, 1),
                                d3(CUDA_GRAPH_MAX_RNGS, 1, 1), args))) {
        backend_graph_free(g);
        return -1;
    }
    if (D->capture_begin()) {
        backend_graph_free(g);
        return -1;
    }
    capture.g = g;
    capture.failed = false;
    capture.n_allocated = 0;
    return 0;
}

backend_graph *backend_cuda_capture_end(void) {
    backend_graph *g = capture.g;
    if (!g) {
        err_set("CUDA graph capture: no capture in progress");
        return NULL;
    }
    // last node: each generator's device delta moves by what one run of the step drew
    cuda_advance_args a = {.n = g->n_rngs};
    for (int i = 0; i < g->n_rngs; i++) a.by[i] = g->advance[i] = g->rngs[i]->offset - g->start[i];
    void *k = g->n_rngs ? fixed_kernel("advance_u64") : NULL;
    void *args[] = {&g->deltas, &a};
    if (g->n_rngs && (!k || launch(k, "graph: advance random streams", d3(1, 1, 1),
                                   d3(CUDA_GRAPH_MAX_RNGS, 1, 1), args)))
        capture.failed = true;
    char why[512] = "";
    if (capture.failed) snprintf(why, sizeof why, "%s", err_message());
    int rc = D->capture_end(&g->exec);
    capture.g = NULL;
    // the capture's pool becomes the graph's; what it allocated and still holds returns to it
    for (size_t i = 0; i < capture.pool.cap; i++)
        while (capture.pool.slots[i].value) {
            block *b = capture.pool.slots[i].value;
            capture.pool.slots[i].value = b->next;
            if (graph_keep(g, b->ptr, (size_t)capture.pool.slots[i].key)) {
                D->free(b->ptr);
                capture.failed = true;
            }
            bytes_cached -= (size_t)capture.pool.slots[i].key;
            free(b);
        }
    for (size_t j = 0; j < capture.n_allocated; j++) {
        void *p = capture.allocated[j];
        for (size_t i = mix((uintptr_t)p) & (cap_live - 1); live[i].ptr;
             i = (i + 1) & (cap_live - 1))
            if (live[i].ptr == p) {
                live[i].graph = g;
                break;
            }
    }
    if (rc || capture.failed) {
        if (why[0]) err_set("%s", why);
        err_prefix("CUDA graph capture: ");
        backend_graph_free(g);
        return NULL;
    }
    return g;
}

int backend_graph_launch(backend_graph *g) {
    // the device's deltas must be each generator's offset past the capture's start: they are,
    // unless something else drew from a generator since the last replay (then one upload)
    unsigned long long want[CUDA_GRAPH_MAX_RNGS] = {0};
    bool stale = false;
    for (int i = 0; i < g->n_rngs; i++) {
        want[i] = g->rngs[i]->offset - g->start[i];
        stale |= want[i] != g->dev_delta[i];
    }
    if (stale && copy_from_host(g->deltas, want, sizeof want)) return -1;
    for (size_t i = 0; i < g->n_blocks; i++) D->park(g->blocks[i].ptr, false);
    int rc = D->graph_launch(g->exec);
    for (size_t i = 0; i < g->n_blocks; i++) D->park(g->blocks[i].ptr, true);
    if (rc) return -1;
    counters.graph_launches++;
    for (int i = 0; i < g->n_rngs; i++) {
        g->dev_delta[i] = want[i] + g->advance[i];
        g->rngs[i]->offset += g->advance[i];
    }
    g->replays++;
    return 0;
}
