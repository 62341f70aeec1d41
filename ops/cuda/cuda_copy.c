// The CUDA backend's copies: to and from the host, and on the device; none while capturing
// a graph but device-to-device ones.
#include <string.h>

#include "../../tensor/error.h"
#include "cuda_internal.h"

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
    int reached = cuda_rt.dev->event_query(ev);
    if (reached < 0) return -1;
    if (!reached) {
        cuda_rt.counters.syncs++;
        if (cuda_rt.dev->event_wait(ev)) return -1;
    }
    staging.first = (staging.first + k + 1) % STAGING_COPIES;
    staging.count -= k + 1;
    return 0;
}

static int refuse_in_capture(const char *what) {
    cuda_capture.failed = true;
    err_set("CUDA graph capture: %s inside the captured step (a graph holds device work only: "
            "upload before the step, read after it)",
            what);
    return -1;
}

int cuda_copy_from_host(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    if (cuda_capture.g) return refuse_in_capture("a copy from the host");
    cuda_rt.counters.h2d_copies++;
    cuda_rt.counters.h2d_bytes += (int64_t)n;
    if (!staging.buf) {
        staging.buf = cuda_rt.dev->host_alloc(STAGING_BYTES);
        for (int i = 0; staging.buf && i < STAGING_COPIES; i++)
            if (cuda_rt.dev->event_new(&staging.q[i].ev)) {
                cuda_rt.dev->host_free(staging.buf);
                staging.buf = NULL;
            }
    }
    if (!staging.buf) { // no pinned memory: a synchronous copy
        cuda_rt.counters.syncs++;
        return cuda_rt.dev->copy_h2d(dst, src, n) || cuda_rt.dev->sync() ? -1 : 0;
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
        if (cuda_rt.dev->copy_h2d((char *)dst + done, staging.buf + off, len)) return -1;
        int i = (staging.first + staging.count++) % STAGING_COPIES;
        staging.q[i].off = off;
        staging.q[i].len = len;
        if (cuda_rt.dev->event_record(staging.q[i].ev)) return -1;
        staging.head = off + len;
        done += len;
    }
    return 0;
}

int cuda_copy_to_host(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    if (cuda_capture.g) return refuse_in_capture("a copy to the host");
    cuda_rt.counters.d2h_copies++;
    cuda_rt.counters.d2h_bytes += (int64_t)n;
    cuda_rt.counters.syncs++;
    return cuda_rt.dev->copy_d2h(dst, src, n);
}

int cuda_copy_device(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    return cuda_rt.dev->copy_d2d(dst, src, n);
}

int cuda_synchronize(void) {
    if (cuda_capture.g) return refuse_in_capture("a synchronisation");
    cuda_rt.counters.syncs++;
    return cuda_rt.dev->sync();
}
