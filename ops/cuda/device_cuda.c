// The CUDA runtime + NVRTC implementation of the device seam (device.h): one device, one
// stream; kernels compiled by NVRTC (disk-cached, cuda_nvrtc.c) and loaded as libraries.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cuda_nvrtc.h"
#include "device.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            err_set("CUDA: %s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__,        \
                    __LINE__);                                                                     \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static cudaStream_t stream; // non-blocking: no implicit synchronisation with the legacy stream
static cudev dev;
static char dev_name[300];

static int d_malloc(void **p, size_t n) {
    cudaError_t e = cudaMalloc(p, n);
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    err_set("CUDA: out of memory: asked for %zu bytes, %zu free of %zu on the device (%s)", n,
            free_b, total_b, cudaGetErrorString(e));
    return -1;
}
static void d_free(void *p) { cudaFree(p); }
static void d_park(void *p, bool parked) {
    (void)p;
    (void)parked;
}
static void d_mem_info(size_t *f, size_t *t) {
    if (cudaMemGetInfo(f, t) != cudaSuccess) *f = *t = 0;
}
static void *d_host_alloc(size_t n) {
    void *p = NULL;
    if (cudaMallocHost(&p, n) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}
static void d_host_free(void *p) { cudaFreeHost(p); }
static int d_h2d(void *dst, const void *src, size_t n) {
    CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream));
    return 0;
}
static int d_d2h(void *dst, const void *src, size_t n) {
    CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream));
    CHECK(cudaStreamSynchronize(stream));
    return 0;
}
static int d_d2d(void *dst, const void *src, size_t n) {
    CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream));
    return 0;
}
static int d_sync(void) {
    CHECK(cudaStreamSynchronize(stream));
    return 0;
}

static int d_load(const char *src, const char *what, void **module) {
    void *image;
    size_t size;
    bool cached;
    if (cuda_kernel_image(src, what, dev.arch, &image, &size, &cached)) return -1;
    cudaLibrary_t lib;
    cudaError_t e = cudaLibraryLoadData(&lib, image, NULL, NULL, 0, NULL, NULL, 0);
    free(image);
    if (e != cudaSuccess) {
        err_set("CUDA: loading kernel %s: %s", what, cudaGetErrorString(e));
        return -1;
    }
    *module = lib;
    return 0;
}
static int d_kernel(void *module, const char *name, void **kernel) {
    cudaKernel_t k;
    cudaError_t e = cudaLibraryGetKernel(&k, (cudaLibrary_t)module, name);
    if (e != cudaSuccess) {
        err_set("CUDA: kernel %s not found in its module: %s", name, cudaGetErrorString(e));
        return -1;
    }
    *kernel = (void *)k;
    return 0;
}
static int d_compile_count(void) {
    int compiled = 0, hits = 0;
    cuda_nvrtc_stats(&compiled, &hits);
    return compiled;
}
static int d_launch(void *kernel, const char *what, const unsigned grid[3], const unsigned block[3],
                    void **args) {
    dim3 g, b;
    g.x = grid[0], g.y = grid[1], g.z = grid[2];
    b.x = block[0], b.y = block[1], b.z = block[2];
    cudaError_t e = cudaLaunchKernel((const void *)kernel, g, b, args, 0, stream);
    if (e != cudaSuccess) {
        cudaGetLastError();
        err_set("CUDA: launching %s (grid %u x %u x %u, block %u x %u x %u): %s", what, grid[0],
                grid[1], grid[2], block[0], block[1], block[2], cudaGetErrorString(e));
        return -1;
    }
    return 0;
}
static int d_event_new(void **ev) {
    cudaEvent_t e;
    CHECK(cudaEventCreate(&e));
    *ev = e;
    return 0;
}
static int d_event_record(void *ev) {
    CHECK(cudaEventRecord((cudaEvent_t)ev, stream));
    return 0;
}
static int d_event_query(void *ev) {
    cudaError_t e = cudaEventQuery((cudaEvent_t)ev);
    if (e == cudaSuccess) return 1;
    if (e == cudaErrorNotReady) {
        cudaGetLastError();
        return 0;
    }
    err_set("CUDA: event query: %s", cudaGetErrorString(e));
    return -1;
}
static int d_event_wait(void *ev) {
    CHECK(cudaEventSynchronize((cudaEvent_t)ev));
    return 0;
}
static int d_event_ms(void *a, void *b, float *ms) {
    CHECK(cudaEventElapsedTime(ms, (cudaEvent_t)a, (cudaEvent_t)b));
    return 0;
}

// Graphs through stream capture, on the backend's non-blocking stream (capture on the legacy
// stream is refused, and a blocking stream's capture would stall work issued to the legacy one).
// Thread-local mode: a capture-unsafe call from this thread (cudaMalloc, cudaFree, a module
// loaded, a synchronisation) invalidates the capture. None is made: the backend refuses an
// allocation or a host copy while capturing, and every kernel a step launches was launched
// (its module loaded) when the step ran before its capture (nn/graph.c).
static int d_capture_begin(void) {
    CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    return 0;
}
static int d_capture_end(void **graph) {
    cudaGraph_t g;
    CHECK(cudaStreamEndCapture(stream, &g));
    cudaGraphExec_t exec;
    cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        err_set("CUDA: instantiating a captured graph: %s", cudaGetErrorString(e));
        return -1;
    }
    *graph = exec;
    return 0;
}
static int d_graph_launch(void *graph) {
    CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, stream));
    return 0;
}
static void d_graph_free(void *graph) {
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

const cudev *cudev_cuda(char *why, size_t n) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(why, n, "CUDA: no GPU available (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no device");
        return NULL;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess ||
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        snprintf(why, n, "CUDA: cannot initialise device 0");
        return NULL;
    }
    snprintf(dev_name, sizeof dev_name, "%s (sm_%d%d, %d SMs)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
    dev = (cudev){.name = dev_name,
                  .arch = prop.major * 10 + prop.minor,
                  .sms = prop.multiProcessorCount,
                  .malloc = d_malloc,
                  .free = d_free,
                  .park = d_park,
                  .mem_info = d_mem_info,
                  .host_alloc = d_host_alloc,
                  .host_free = d_host_free,
                  .copy_h2d = d_h2d,
                  .copy_d2h = d_d2h,
                  .copy_d2d = d_d2d,
                  .sync = d_sync,
                  .load = d_load,
                  .kernel = d_kernel,
                  .compile_count = d_compile_count,
                  .launch = d_launch,
                  .event_new = d_event_new,
                  .event_record = d_event_record,
                  .event_query = d_event_query,
                  .event_wait = d_event_wait,
                  .event_ms = d_event_ms,
                  .capture_begin = d_capture_begin,
                  .capture_end = d_capture_end,
                  .graph_launch = d_graph_launch,
                  .graph_free = d_graph_free};
    return &dev;
}
