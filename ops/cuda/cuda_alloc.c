// The CUDA backend's caching allocator: freed blocks are kept by rounded size and reused.
// Free lists by size class and the live blocks by pointer, both in open-addressing tables, so
// an allocation or a free costs O(1) however many blocks are cached. While a graph is captured,
// blocks freed go to the capture's pool (reused by the capture only) and become the graph's.
#include <stdint.h>
#include <stdlib.h>

#include "../../tensor/error.h"
#include "cuda_internal.h"

static u64_map classes; // block size -> head of its free list (block *)
static size_t bytes_in_use, bytes_cached, bytes_in_graphs; // the last: graphs' private pools

typedef struct block {
    void *ptr;
    struct block *next;
} block;

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

size_t cuda_mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static map_slot *map_slot_of(map_slot *t, size_t cap, uint64_t key) {
    size_t i = cuda_mix(key) & (cap - 1);
    while (t[i].key && t[i].key != key) i = (i + 1) & (cap - 1);
    return &t[i];
}

void **cuda_map_find(u64_map *m, uint64_t key, bool create) {
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
    if (cuda_capture.g) return;
    if (cuda_rt.dev->sync()) return;
    cuda_rt.counters.syncs++;
    for (size_t i = 0; i < classes.cap; i++)
        while (classes.slots[i].value) {
            block *b = classes.slots[i].value;
            classes.slots[i].value = b->next;
            cuda_rt.dev->free(b->ptr);
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
            for (size_t j = cuda_mix((uintptr_t)live[i].ptr) & (cap - 1);; j = (j + 1) & (cap - 1))
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
    bytes_in_graphs += size;
    return 0;
}

void *cuda_alloc(size_t nbytes) {
    size_t size = round_size(nbytes);
    void *p = NULL;
    void **head = cuda_map_find(cuda_capture.g ? &cuda_capture.pool : &classes, size, false);
    if (cuda_capture.g && !(head && *head)) head = cuda_map_find(&classes, size, false);
    if (head && *head) {
        block *hit = *head;
        *head = hit->next;
        p = hit->ptr;
        bytes_cached -= size;
        free(hit);
        cuda_rt.dev->park(p, false);
    }
    if (!p &&
        cuda_capture.g) { // cudaMalloc inside a capture: refused (the step's own run came first)
        cuda_capture.failed = true;
        err_set("CUDA graph capture: a device allocation of %zu bytes inside the captured step "
                "(the step's run before its capture left no free block of that size: the step "
                "allocates differently from run to run)",
                size);
        return NULL;
    }
    if (!p) {
        cuda_rt.counters.device_allocs++;
        int rc = cuda_rt.dev->malloc(&p, size);
        if (rc) { // give the cache back and try once more
            release_cache();
            rc = cuda_rt.dev->malloc(&p, size);
        }
        if (rc) {
            err_prefix("(%zu bytes in use by tensors) ", bytes_in_use);
            return NULL;
        }
    }
    if ((n_live_used + 1) * 2 > cap_live && live_grow()) {
        cuda_rt.dev->free(p);
        err_set("CUDA: out of host memory tracking device blocks");
        return NULL;
    }
    size_t i = cuda_mix((uintptr_t)p) & (cap_live - 1);
    while (live[i].ptr && live[i].ptr != TOMBSTONE) i = (i + 1) & (cap_live - 1);
    if (!live[i].ptr) n_live_used++;
    live[i] = (live_block){p, size, NULL};
    bytes_in_use += size;
    if (cuda_capture.g) {
        if (cuda_capture.n_allocated == cuda_capture.cap_allocated) {
            size_t c = cuda_capture.cap_allocated ? 2 * cuda_capture.cap_allocated : 256;
            void **t = realloc(cuda_capture.allocated, c * sizeof *t);
            if (!t) {
                cuda_capture.failed = true;
                return p;
            }
            cuda_capture.allocated = t;
            cuda_capture.cap_allocated = c;
        }
        cuda_capture.allocated[cuda_capture.n_allocated++] = p;
    }
    return p;
}

// Without host memory for the list entry, the block goes back to the device.
void cuda_cache_block(u64_map *pool, void *p, size_t size) {
    if (!pool) pool = &classes;
    void **head = cuda_map_find(pool, size, true);
    block *b = head ? malloc(sizeof *b) : NULL;
    if (!b) { // out of host memory: the block goes back to the device (never while capturing)
        if (cuda_capture.g)
            cuda_capture.failed = true;
        else
            cuda_rt.dev->free(p);
        return;
    }
    *b = (block){p, *head};
    *head = b;
    bytes_cached += size;
    cuda_rt.dev->park(p, true);
}

void cuda_free(void *p) {
    if (!p || !cap_live) return;
    for (size_t i = cuda_mix((uintptr_t)p) & (cap_live - 1); live[i].ptr;
         i = (i + 1) & (cap_live - 1)) {
        if (live[i].ptr != p) continue;
        size_t size = live[i].size;
        backend_graph *owner = live[i].graph;
        live[i].ptr = TOMBSTONE;
        bytes_in_use -= size;
        if (owner) { // a block a graph wrote while it was captured: the graph's from now on
            if (graph_keep(owner, p, size)) {
                if (!cuda_capture.g) cuda_rt.dev->free(p);
                return;
            }
            cuda_rt.dev->park(p, true);
            return;
        }
        cuda_cache_block(cuda_capture.g ? &cuda_capture.pool : &classes, p, size);
        return;
    }
}

void cuda_alloc_capture_done(backend_graph *g) {
    // the capture's pool becomes the graph's; what it allocated and still holds returns to it
    for (size_t i = 0; i < cuda_capture.pool.cap; i++)
        while (cuda_capture.pool.slots[i].value) {
            block *b = cuda_capture.pool.slots[i].value;
            cuda_capture.pool.slots[i].value = b->next;
            if (graph_keep(g, b->ptr, (size_t)cuda_capture.pool.slots[i].key)) {
                cuda_rt.dev->free(b->ptr);
                cuda_capture.failed = true;
            }
            bytes_cached -= (size_t)cuda_capture.pool.slots[i].key;
            free(b);
        }
    for (size_t j = 0; j < cuda_capture.n_allocated; j++) {
        void *p = cuda_capture.allocated[j];
        for (size_t i = cuda_mix((uintptr_t)p) & (cap_live - 1); live[i].ptr;
             i = (i + 1) & (cap_live - 1))
            if (live[i].ptr == p) {
                live[i].graph = g;
                break;
            }
    }
}

void cuda_alloc_graph_freed(backend_graph *g) {
    for (size_t i = 0; i < cap_live; i++) // blocks it wrote, still held: ordinary from now on
        if (live[i].ptr && live[i].ptr != TOMBSTONE && live[i].graph == g) live[i].graph = NULL;
    for (size_t i = 0; i < g->n_blocks; i++) { // its pool back to the cache (parked already)
        bytes_in_graphs -= g->blocks[i].size;
        cuda_cache_block(&classes, g->blocks[i].ptr, g->blocks[i].size);
    }
}

void backend_cuda_memory(size_t *in_use, size_t *cached, size_t *graph_pools) {
    *in_use = bytes_in_use;
    *cached = bytes_cached;
    *graph_pools = bytes_in_graphs;
}
