// The seam under the CUDA backend: the few things it needs of a device. Two implementations:
//   device_cuda.c  the CUDA runtime and NVRTC (a real GPU)
//   device_emu.c   the emulated CUDA device: the same kernel sources compiled as host C++ and
//                  run block by block, the threads of a block as fibers (real barriers), with
//                  guard pages, NaN-filled allocations and sm_90's launch limits checked
// Everything above (allocator, kernel table, renderer, launch configuration, argument packing)
// is shared, so both devices test it. BANIS_CUDA=emulated selects the emulated device; it is
// never picked otherwise. Every function returns 0, or -1 with err_set() naming what failed.
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *name; // "NVIDIA H100 80GB HBM3 (sm_90)", "emulated CUDA device (sm_90 rules)"
    int arch, sms;
    bool emulated;

    int (*malloc)(void **p, size_t n); // out of memory: -1 with the sizes in the message
    void (*free)(void *p);
    // The allocator above keeps freed blocks for reuse: parked (true) when it keeps one, false
    // when it hands it out again. The emulated device makes parked blocks inaccessible (a
    // kernel touching one is a use after free) and refills a block with NaN when it is reused.
    void (*park)(void *p, bool parked);
    void (*mem_info)(size_t *free_bytes, size_t *total_bytes);
    void *(*host_alloc)(size_t n); // page-locked where the device has it; NULL if not
    void (*host_free)(void *p);
    // Copies in stream order; copy_h2d returns at once (the source must stay valid until the
    // stream reaches it: callers stage), copy_d2h returns when the bytes are on the host.
    int (*copy_h2d)(void *dst, const void *src, size_t n);
    int (*copy_d2h)(void *dst, const void *src, size_t n);
    int (*copy_d2d)(void *dst, const void *src, size_t n);
    int (*sync)(void);
    // Compiles `src` (NVRTC, or the host compiler; both cached on disk) and loads it.
    int (*load)(const char *src, const char *what, void **module);
    int (*kernel)(void *module, const char *name, void **kernel);
    int (*compile_count)(void); // compilations run so far (disk-cache hits not counted)
    int (*launch)(void *kernel, const char *what, const unsigned grid[3], const unsigned block[3],
                  void **args);
    // Events in stream order (staging-buffer reuse, profiles).
    int (*event_new)(void **ev);
    int (*event_record)(void *ev);
    int (*event_query)(void *ev); // 1 reached, 0 not yet, -1 error
    int (*event_wait)(void *ev);
    int (*event_ms)(void *start, void *stop, float *ms);
    // Graphs: between capture_begin and capture_end, launches and device-to-device copies are
    // recorded in stream order, not run (host copies and synchronisations are refused above
    // this seam); graph_launch runs the recorded work again, in order, on the stream.
    int (*capture_begin)(void);
    int (*capture_end)(void **graph);
    int (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
} cudev;

// The CUDA runtime device, or NULL with `why` filled (not built with CUDA, no driver, no GPU).
const cudev *cudev_cuda(char *why, size_t n);
// The emulated device, or NULL with `why` filled (no host C++ compiler).
const cudev *cudev_emulated(char *why, size_t n);
