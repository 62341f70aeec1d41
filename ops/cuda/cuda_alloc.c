// The CUDA backend's caching allocator: freed blocks are kept by rounded size and reused.
// Free lists by size class and the live blocks by pointer, both in open-addressing tables, so
// an allocation or a free costs O(1) however many blocks are cached. While a graph is captured,
// blocks freed go to the capture's pool (reused by the capture only) and become the graph's.
// A capture can instead be planned from a record of the same work (a first capture of it):
// its temporaries are laid out at offsets in one block (an arena) before it starts, those
// whose lifetimes do not overlap sharing memory, and the arena becomes the graph's.
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
    uint64_t rec;         // recorded: the record's generation << 32 | its index + 1; else 0
    struct arena *arena;  // a temporary at an offset in a planned capture's arena; else NULL
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

// ---- the record of what a piece of work allocates, and the plan laid out from it
static struct {
    bool on, failed; // failed: out of host memory while recording (no plan from it)
    uint32_t gen;
    size_t *size; // of allocation k, rounded
    int32_t *ev;  // in order: k (allocation k) or -k - 1 (allocation k freed)
    size_t n, cap, n_ev, cap_ev;
} rec;

// A planned capture's arena, and the live temporaries in it. It becomes the graph's when the
// capture ends with none of them live; else (a capture gone wrong) it is orphaned: given to
// the cache when the last of them is freed.
typedef struct arena {
    void *ptr;
    size_t size, n_live, cap_live;
    size_t *live_off, *live_size; // the live temporaries, for the overlap check
    bool orphan;
} arena;
static struct {
    arena *a;           // non-NULL: a planned capture is in progress
    size_t *off;        // recorded allocation k's offset in the arena, or SIZE_MAX: not planned
    size_t *size;       // its size
    size_t n_rec, next; // the record's length, and the capture's next allocation
} plan;

static bool grow(void **a, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return true;
    size_t c = *cap ? 2 * *cap : 1024;
    void *t = realloc(*a, c * elem);
    if (!t) return false;
    *a = t;
    *cap = c;
    return true;
}

static void rec_event(int32_t e) {
    if (!grow((void **)&rec.ev, &rec.cap_ev, rec.n_ev, sizeof *rec.ev)) {
        rec.failed = true;
        return;
    }
    rec.ev[rec.n_ev++] = e;
}

static uint64_t rec_alloc(size_t size) {
    if (rec.failed || rec.n >= INT32_MAX ||
        !grow((void **)&rec.size, &rec.cap, rec.n, sizeof *rec.size)) {
        rec.failed = true;
        return 0;
    }
    rec.size[rec.n] = size;
    rec_event((int32_t)rec.n);
    return (uint64_t)rec.gen << 32 | ++rec.n;
}

void backend_cuda_plan_record(bool on) {
    if (on) {
        backend_cuda_plan_drop();
        rec.gen++;
    }
    rec.on = on;
}

void backend_cuda_plan_drop(void) {
    rec.on = rec.failed = false;
    rec.n = rec.n_ev = 0;
}

static void plan_free_arrays(void) {
    free(plan.off);
    free(plan.size);
    plan.off = plan.size = NULL;
    plan.n_rec = plan.next = 0;
    plan.a = NULL;
}

static void arena_free(arena *a) {
    free(a->live_off);
    free(a->live_size);
    free(a);
}

typedef struct {
    size_t k, size;
} by_size;
static int bigger_first(const void *x, const void *y) {
    const by_size *a = x, *b = y;
    if (a->size != b->size) return a->size < b->size ? 1 : -1;
    return a->k < b->k ? -1 : a->k > b->k;
}
static int lower_offset(const void *x, const void *y) {
    size_t a = *(const size_t *)x, b = *(const size_t *)y;
    return (plan.off[a] > plan.off[b]) - (plan.off[a] < plan.off[b]);
}

// The layout (offline, as memory planners for inference lay out their tensors): allocations
// freed within the record, largest first, each at the lowest-waste gap among the placed ones
// whose lifetimes overlap its own. Returns the arena's size; 0 with nothing to lay out or
// without host memory.
static size_t plan_lay_out(void) {
    size_t n = rec.n, total = 0, n_placed = 0, *start = malloc(n * sizeof *start),
           *end = malloc(n * sizeof *end), *placed = malloc(n * sizeof *placed),
           *near = malloc(n * sizeof *near);
    by_size *order = malloc(n * sizeof *order);
    plan.off = malloc(n * sizeof *plan.off);
    plan.size = malloc(n * sizeof *plan.size);
    plan.n_rec = n;
    if (!start || !end || !placed || !near || !order || !plan.off || !plan.size) goto out;
    for (size_t k = 0; k < n; k++) {
        end[k] = SIZE_MAX;
        plan.off[k] = SIZE_MAX;
        plan.size[k] = rec.size[k];
    }
    for (size_t i = 0; i < rec.n_ev; i++)
        if (rec.ev[i] >= 0)
            start[rec.ev[i]] = i;
        else
            end[-(int64_t)rec.ev[i] - 1] = i;
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if (end[k] != SIZE_MAX) order[m++] = (by_size){k, rec.size[k]};
    qsort(order, m, sizeof *order, bigger_first);
    for (size_t i = 0; i < m; i++) {
        size_t k = order[i].k, s = order[i].size, n_near = 0;
        for (size_t j = 0; j < n_placed; j++) {
            size_t q = placed[j];
            if (start[q] < end[k] && start[k] < end[q]) near[n_near++] = q;
        }
        qsort(near, n_near, sizeof *near, lower_offset);
        size_t best = SIZE_MAX, best_gap = SIZE_MAX, top = 0;
        for (size_t j = 0; j < n_near; j++) {
            size_t q = near[j];
            if (plan.off[q] > top && plan.off[q] - top >= s && plan.off[q] - top < best_gap) {
                best = top;
                best_gap = plan.off[q] - top;
            }
            if (plan.off[q] + plan.size[q] > top) top = plan.off[q] + plan.size[q];
        }
        plan.off[k] = best != SIZE_MAX ? best : top;
        if (plan.off[k] + s > total) total = plan.off[k] + s;
        placed[n_placed++] = k;
    }
out:
    free(start);
    free(end);
    free(placed);
    free(near);
    free(order);
    if (!plan.off || !plan.size) total = 0;
    return total;
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

// Out of device memory: the cache goes back to the device, then one more try.
static int device_malloc(void **p, size_t size) {
    cuda_rt.counters.device_allocs++;
    int rc = cuda_rt.dev->malloc(p, size);
    if (rc) {
        release_cache();
        rc = cuda_rt.dev->malloc(p, size);
    }
    return rc;
}

int cuda_plan_start(void) {
    if (rec.on) return 0; // this capture is the one recorded
    size_t size = rec.n && !rec.failed ? plan_lay_out() : 0;
    backend_cuda_plan_drop();
    arena *a = size ? calloc(1, sizeof *a) : NULL;
    if (a && device_malloc(&a->ptr, size)) {
        free(a);
        a = NULL;
    }
    if (!a) { // no plan: the capture takes its blocks from the cache, as without a record
        plan_free_arrays();
        return 0;
    }
    a->size = size;
    plan.a = a;
    return 0;
}

void cuda_plan_abandon(void) {
    if (plan.a) {
        cuda_cache_block(&classes, plan.a->ptr, plan.a->size);
        arena_free(plan.a);
    }
    plan_free_arrays();
}

// The capture's next allocation at its planned offset, when the record foresaw it (the same
// size, freed within the record) and no live temporary of the arena overlaps it; NULL: else.
static void *plan_take(size_t size) {
    arena *a = plan.a;
    size_t k = plan.next++;
    if (!size || k >= plan.n_rec || plan.size[k] != size || plan.off[k] == SIZE_MAX) return NULL;
    size_t off = plan.off[k];
    for (size_t i = 0; i < a->n_live; i++)
        if (a->live_off[i] < off + size && off < a->live_off[i] + a->live_size[i]) return NULL;
    if (a->n_live == a->cap_live) {
        size_t c = a->cap_live ? 2 * a->cap_live : 256;
        size_t *o = realloc(a->live_off, c * sizeof *o);
        if (o) a->live_off = o;
        size_t *z = o ? realloc(a->live_size, c * sizeof *z) : NULL;
        if (!z) return NULL;
        a->live_size = z;
        a->cap_live = c;
    }
    a->live_off[a->n_live] = off;
    a->live_size[a->n_live++] = size;
    return (char *)a->ptr + off;
}

// A temporary of an arena freed: its memory free again in the plan (an orphan arena: to the
// cache once the last is freed).
static void arena_release(arena *a, void *p) {
    size_t off = (size_t)((char *)p - (char *)a->ptr);
    for (size_t i = 0; i < a->n_live; i++)
        if (a->live_off[i] == off) {
            a->live_off[i] = a->live_off[--a->n_live];
            a->live_size[i] = a->live_size[a->n_live];
            break;
        }
    if (a->orphan && !a->n_live) {
        cuda_cache_block(&classes, a->ptr, a->size);
        arena_free(a);
    }
}

void *cuda_alloc(size_t nbytes) {
    size_t size = round_size(nbytes);
    void *p = NULL;
    arena *in = plan.a && cuda_capture.g ? plan.a : NULL;
    if (in && (p = plan_take(size))) goto track;
    in = NULL;
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
    if (!p && device_malloc(&p, size)) {
        err_prefix("(%zu bytes in use by tensors) ", bytes_in_use);
        return NULL;
    }
track:
    if ((n_live_used + 1) * 2 > cap_live && live_grow()) {
        if (in)
            arena_release(in, p);
        else
            cuda_rt.dev->free(p);
        err_set("CUDA: out of host memory tracking device blocks");
        return NULL;
    }
    size_t i = cuda_mix((uintptr_t)p) & (cap_live - 1);
    while (live[i].ptr && live[i].ptr != TOMBSTONE) i = (i + 1) & (cap_live - 1);
    if (!live[i].ptr) n_live_used++;
    live[i] = (live_block){p, size, NULL, rec.on ? rec_alloc(size) : 0, in};
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
        if (rec.on && live[i].rec >> 32 == rec.gen && live[i].rec)
            rec_event(-(int32_t)(live[i].rec & 0xffffffffu));
        if (live[i].arena) { // the arena's, free again in its plan
            arena_release(live[i].arena, p);
            return;
        }
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
                if (!live[i].arena) live[i].graph = g;
                break;
            }
    }
    arena *a = plan.a;
    if (!a) return;
    plan_free_arrays();
    if (a->n_live) { // temporaries that outlived the capture: the record did not hold
        a->orphan = true;
        cuda_capture.failed = true;
        err_set("a planned temporary outlived the capture (the step allocates differently "
                "from run to run)");
        return;
    }
    if (graph_keep(g, a->ptr, a->size)) {
        cuda_rt.dev->free(a->ptr);
        cuda_capture.failed = true;
    } else {
        cuda_rt.dev->park(a->ptr, true);
    }
    arena_free(a);
    if (!cuda_capture.failed) release_cache(); // what the runs before it left is not needed now
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
