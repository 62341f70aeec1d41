// The emulated device's memory (emu.h): each allocation is an mmap of its own whose last page
// is a guard, kept sorted by address; outside launches and copies it is inaccessible (a host
// dereference faults), new and re-issued blocks are NaN-filled, parked blocks are closed.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../tensor/error.h"
#include "emu.h"

// ---- device memory: each allocation ends at a guard emu.page ---------------------------------------
static allocation *allocs;
static int n_allocs, cap_allocs, next_id;
static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;

void emu_set_access(allocation *a, int prot) {
    mprotect(a->map, a->map_len - (size_t)emu.page, prot);
}

// The allocations are kept sorted by address: a lookup is a binary search.
static int first_after(const void *p) { // index of the first allocation whose map starts above p
    int lo = 0, hi = n_allocs;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (allocs[mid].map <= (const char *)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

allocation *emu_find_alloc(const void *p, size_t n) { // the allocation holding [p, p + n)
    int i = first_after(p) - 1;
    if (i >= 0 && (const char *)p >= allocs[i].user &&
        (const char *)p + n <= allocs[i].user + allocs[i].size)
        return &allocs[i];
    return NULL;
}

void emu_describe(const void *addr, char *buf, size_t n) {
    const char *p = addr;
    for (int i = 0; i < n_allocs; i++) {
        allocation *a = &allocs[i];
        if (p >= a->map && p < a->map + a->map_len) {
            if (p >= a->user + a->size)
                snprintf(buf, n,
                         "address %p is %lld bytes past the end of allocation #%d (%zu bytes)",
                         addr, (long long)(p - (a->user + a->size)), a->id, a->size);
            else if (p < a->user)
                snprintf(buf, n, "address %p is %lld bytes before allocation #%d (%zu bytes)", addr,
                         (long long)(a->user - p), a->id, a->size);
            else
                snprintf(buf, n, "address %p is at offset %lld of allocation #%d (%zu bytes)", addr,
                         (long long)(p - a->user), a->id, a->size);
            return;
        }
    }
    snprintf(buf, n, "address %p is in no allocation of the device", addr);
}

int emu_malloc(void **p, size_t n) {
    if (emu_recording_now) {
        char what[96];
        snprintf(what, sizeof what, "a device allocation (cudaMalloc of %zu bytes)", n);
        return emu_refuse_in_capture(what);
    }
    size_t size = (n + 15) & ~(size_t)15,
           body = (size + (size_t)emu.page - 1) / (size_t)emu.page * (size_t)emu.page;
    size_t len = body + (size_t)emu.page;
    char *map =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        err_set("emulated CUDA device: out of memory: asked for %zu bytes (%s)", n,
                strerror(errno));
        return -1;
    }
    if (emu.execute) // NaN in every float and double: read-before-write shows (no kernel runs: untouched)
        memset(map + body - size, 0xff, size);
    mprotect(map + body, (size_t)emu.page, PROT_NONE);
    pthread_mutex_lock(&alloc_lock);
    if (n_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? 2 * cap_allocs : 256;
        allocs = realloc(allocs, sizeof *allocs * (size_t)cap_allocs);
    }
    int at = first_after(map);
    memmove(&allocs[at + 1], &allocs[at], sizeof *allocs * (size_t)(n_allocs - at));
    n_allocs++;
    allocation *a = &allocs[at];
    *a = (allocation){
        .user = map + body - size, .map = map, .size = size, .map_len = len, .id = ++next_id};
    if (emu.protect) emu_set_access(a, PROT_NONE);
    pthread_mutex_unlock(&alloc_lock);
    *p = a->user;
    return 0;
}

void emu_park(void *p, bool parked) {
    if (!emu.execute)
        return; // no kernel runs: nothing to guard (and the host's own cost is measured)
    pthread_mutex_lock(&alloc_lock);
    allocation *a = emu_find_alloc(p, 1);
    if (a) {
        a->parked = parked;
        if (!parked) { // handed out again: its old contents are garbage to the new owner
            emu_set_access(a, PROT_READ | PROT_WRITE);
            memset(a->user, 0xff, a->size);
        }
        emu_set_access(a, parked || emu.protect ? PROT_NONE : PROT_READ | PROT_WRITE);
    }
    pthread_mutex_unlock(&alloc_lock);
}

void emu_free(void *p) {
    if (emu_recording_now) { // refused: the block stays allocated
        emu_refuse_in_capture("a device free (cudaFree)");
        return;
    }
    pthread_mutex_lock(&alloc_lock);
    allocation *a = emu_find_alloc(p, 1);
    if (a && a->user == p) {
        munmap(a->map, a->map_len);
        int i = (int)(a - allocs);
        memmove(&allocs[i], &allocs[i + 1], sizeof *allocs * (size_t)(n_allocs - i - 1));
        n_allocs--;
    }
    pthread_mutex_unlock(&alloc_lock);
}

void emu_mem_info(size_t *f, size_t *t) {
    *t = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)emu.page;
    *f = (size_t)sysconf(_SC_AVPHYS_PAGES) * (size_t)emu.page;
}

int emu_open_range(const char *what, const void *p, size_t n, allocation **out) {
    allocation *a = emu_find_alloc(p, n);
    if (!a) {
        char where[200];
        emu_describe(p, where, sizeof where);
        err_set("emulated CUDA device: %s of %zu bytes outside device memory: %s", what, n, where);
        return -1;
    }
    if (emu.protect) emu_set_access(a, PROT_READ | PROT_WRITE);
    *out = a;
    return 0;
}
void emu_close_range(allocation *a) {
    if (emu.protect && a) emu_set_access(a, PROT_NONE);
}
