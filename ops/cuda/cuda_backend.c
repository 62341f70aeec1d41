// The CUDA backend: device memory through a caching allocator, one stream, and kernels that
// NVRTC compiles at run time (the rendered elementwise ones and the fixed ones), cached in
// memory and on disk. Every CUDA and NVRTC call is checked and named in its error.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "cuda_nvrtc.h"
#include "cuda_render.h"

#define CHECK(call)                                                                           \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            err_set("CUDA: %s failed: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

static struct {
    int ready; // 0 not tried, 1 ready, -1 unavailable
    char why[512];
    int arch;
    cudaStream_t stream;
    bool allow_tf32;
    cudaLibrary_t fixed;
} dev;

// ---- the caching allocator: blocks are kept by rounded size and reused -----------------
typedef struct block {
    void *ptr;
    size_t size;
    struct block *next;
} block;

static block *free_blocks;
static size_t bytes_in_use, bytes_cached;

static size_t round_size(size_t n) {
    if (n < (1u << 20)) return (n + 511) & ~(size_t)511;
    return (n + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
}

static void release_cache(void) {
    while (free_blocks) {
        block *b = free_blocks;
        free_blocks = b->next;
        cudaFree(b->ptr);
        bytes_cached -= b->size;
        free(b);
    }
}

// Blocks in use, by pointer, to know their size at free time.
typedef struct {
    void *ptr;
    size_t size;
} live_block;
static live_block *live;
static size_t n_live, cap_live;

static void *cuda_alloc(size_t nbytes) {
    size_t size = round_size(nbytes);
    void *p = NULL;
    for (block **b = &free_blocks; *b; b = &(*b)->next)
        if ((*b)->size == size) {
            block *hit = *b;
            *b = hit->next;
            p = hit->ptr;
            bytes_cached -= size;
            free(hit);
            break;
        }
    if (!p) {
        cudaError_t e = cudaMalloc(&p, size);
        if (e == cudaErrorMemoryAllocation) { // give the cache back and try once more
            cudaGetLastError();
            release_cache();
            e = cudaMalloc(&p, size);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            err_set("CUDA: out of memory: asked for %zu bytes; %zu in use by tensors, %zu free of %zu on the device (%s)",
                    size, bytes_in_use, free_b, total_b, cudaGetErrorString(e));
            return NULL;
        }
    }
    if (n_live == cap_live) {
        cap_live = cap_live ? 2 * cap_live : 1024;
        live = realloc(live, cap_live * sizeof *live);
    }
    live[n_live++] = (live_block){p, size};
    bytes_in_use += size;
    return p;
}

static void cuda_free(void *p) {
    for (size_t i = n_live; i-- > 0;)
        if (live[i].ptr == p) {
            block *b = malloc(sizeof *b);
            size_t size = live[i].size;
            live[i] = live[--n_live];
            bytes_in_use -= size;
            if (!b) {
                cudaFree(p);
                return;
            }
            *b = (block){p, size, free_blocks};
            free_blocks = b;
            bytes_cached += size;
            return;
        }
}

static int copy_from_host(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, dev.stream));
    CHECK(cudaStreamSynchronize(dev.stream)); // the host buffer may be reused at once
    return 0;
}

static int copy_to_host(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, dev.stream));
    CHECK(cudaStreamSynchronize(dev.stream));
    return 0;
}

static int copy_device(void *dst, const void *src, size_t n) {
    if (!n) return 0;
    CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, dev.stream));
    return 0;
}

static int synchronize(void) {
    CHECK(cudaStreamSynchronize(dev.stream));
    return 0;
}

// ---- kernels ------------------------------------------------------------------------------
typedef struct {
    char name[64];
    cudaKernel_t kernel;
    cudaLibrary_t lib;
} kernel_entry;
static kernel_entry *kernels;
static size_t n_kernels, cap_kernels;

static int load_library(const char *src, const char *what, cudaLibrary_t *lib) {
    void *image;
    size_t size;
    bool cached;
    if (cuda_kernel_image(src, what, dev.arch, &image, &size, &cached)) return -1;
    cudaError_t e = cudaLibraryLoadData(lib, image, NULL, NULL, 0, NULL, NULL, 0);
    free(image);
    if (e != cudaSuccess) {
        err_set("CUDA: loading kernel %s: %s", what, cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

// The kernel `name`, from `src` (compiled on first use).
static cudaKernel_t get_kernel(const char *name, const char *src, cudaLibrary_t lib) {
    for (size_t i = 0; i < n_kernels; i++)
        if (!strcmp(kernels[i].name, name)) return kernels[i].kernel;
    if (!lib && load_library(src, name, &lib)) return NULL;
    cudaKernel_t k;
    cudaError_t e = cudaLibraryGetKernel(&k, lib, name);
    if (e != cudaSuccess) {
        err_set("CUDA: kernel %s not found in its module: %s", name, cudaGetErrorString(e));
        return NULL;
    }
    if (n_kernels == cap_kernels) {
        cap_kernels = cap_kernels ? 2 * cap_kernels : 256;
        kernels = realloc(kernels, cap_kernels * sizeof *kernels);
    }
    kernel_entry *ke = &kernels[n_kernels++];
    snprintf(ke->name, sizeof ke->name, "%s", name);
    ke->kernel = k;
    ke->lib = lib;
    return k;
}

static dim3 d3(unsigned x, unsigned y, unsigned z) {
    dim3 d;
    d.x = x;
    d.y = y;
    d.z = z;
    return d;
}

static int launch(cudaKernel_t k, const char *what, dim3 grid, dim3 block_dim, void **args) {
    cudaError_t e = cudaLaunchKernel((const void *)k, grid, block_dim, args, 0, dev.stream);
    if (e != cudaSuccess) {
        err_set("CUDA: launching %s: %s", what, cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

static void *data_ptr(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)tensor_dtype_size(t->dtype);
}

static int cuda_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    int64_t n = tensor_numel(outs[0]);
    if (n == 0) return 0;
    char name[64];
    char *src = cuda_render_elementwise(p, outs, ins, name);
    if (!src) {
        err_set("CUDA: out of host memory rendering a kernel");
        return -1;
    }
    cudaKernel_t k = get_kernel(name, src, NULL);
    free(src);
    if (!k) return -1;
    cuda_ew_args a = {.n = n};
    const tensor *o0 = outs[0];
    for (int d = 0; d < o0->ndim; d++) a.shape[d] = (int)o0->shape[d];
    for (int i = 0; i < p->n_outputs + p->n_inputs; i++) {
        const tensor *t = i < p->n_outputs ? outs[i] : ins[i - p->n_outputs];
        a.ptr[i] = data_ptr(t);
        for (int d = 0; d < t->ndim; d++) a.strides[i][d] = t->strides[d];
    }
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65535 * 8) blocks = 65535 * 8;
    void *args[] = {&a};
    return launch(k, name, d3((unsigned)blocks, 1, 1), d3(256, 1, 1), args);
}

typedef struct {
    long long n_out, n_red;
    int out_nd, red_nd;
    long long out_shape[6], out_in_stride[6], out_stride[6], red_shape[6], red_stride[6];
} red_args;

static int cuda_reduce(reduce_kind kind, const tensor *in, tensor *out) {
    red_args a = {.n_out = tensor_numel(out), .n_red = 1};
    for (int d = 0; d < in->ndim; d++) {
        if (out->shape[d] == 1 && in->shape[d] != 1) {
            a.red_shape[a.red_nd] = in->shape[d];
            a.red_stride[a.red_nd++] = in->strides[d];
            a.n_red *= in->shape[d];
        } else {
            a.out_shape[a.out_nd] = out->shape[d];
            a.out_in_stride[a.out_nd] = in->strides[d];
            a.out_stride[a.out_nd++] = out->strides[d];
        }
    }
    if (a.n_out == 0) return 0;
    char name[32];
    snprintf(name, sizeof name, "reduce_%s_%s", kind == REDUCE_MAX ? "max" : "sum", in->dtype == TENSOR_F64 ? "f64" : "f32");
    cudaKernel_t k = get_kernel(name, NULL, dev.fixed);
    if (!k) return -1;
    void *ip = data_ptr(in), *op = data_ptr(out);
    void *args[] = {&ip, &op, &a};
    return launch(k, name, d3((unsigned)a.n_out, 1, 1), d3(256, 1, 1), args);
}

typedef struct {
    int M, N, K;
    long long a_bs, a_rs, a_cs, b_bs, b_rs, b_cs;
    int n, c, h, w, k, r, s, oh, ow, sh, sw, pt, pl;
} gemm_args_dev;

static int run_igemm(const char *base, tensor_dtype dt, const void *a, const void *b, void *c,
                     gemm_args_dev *g, int batch) {
    char name[64];
    snprintf(name, sizeof name, "%s_%s", base, dt == TENSOR_F64 ? "f64" : dev.allow_tf32 ? "f32_tf32" : "f32_exact");
    cudaKernel_t k = get_kernel(name, NULL, dev.fixed);
    if (!k) return -1;
    void *args[] = {&a, &b, &c, g};
    return launch(k, name, d3((unsigned)((g->N + 63) / 64), (unsigned)((g->M + 63) / 64), (unsigned)batch), d3(256, 1, 1), args);
}

static int cuda_gemm(const gemm_args *g) {
    gemm_args_dev d = {.M = (int)g->M, .N = (int)g->N, .K = (int)g->K, .a_bs = g->a_batch_stride,
                       .a_rs = g->a_row_stride, .a_cs = g->a_col_stride, .b_bs = g->b_batch_stride,
                       .b_rs = g->b_row_stride, .b_cs = g->b_col_stride};
    return run_igemm("matmul", g->c->dtype, data_ptr(g->a), data_ptr(g->b), data_ptr(g->c), &d, (int)g->batch);
}

static gemm_args_dev conv_args(const conv_geometry *g) {
    return (gemm_args_dev){.n = (int)g->N, .c = (int)g->C, .h = (int)g->H, .w = (int)g->W, .k = (int)g->K,
                           .r = (int)g->R, .s = (int)g->S, .oh = (int)g->OH, .ow = (int)g->OW,
                           .sh = (int)g->stride_h, .sw = (int)g->stride_w, .pt = (int)g->pad_top,
                           .pl = (int)g->pad_left};
}

static int cuda_conv_forward(const conv_geometry *g, const tensor *x, const tensor *w, tensor *y) {
    gemm_args_dev d = conv_args(g);
    d.M = (int)g->K, d.N = (int)(g->N * g->OH * g->OW), d.K = (int)(g->C * g->R * g->S);
    return run_igemm("conv_forward", y->dtype, data_ptr(w), data_ptr(x), data_ptr(y), &d, 1);
}

static int cuda_conv_backward_input(const conv_geometry *g, const tensor *dy, const tensor *w, tensor *dx) {
    gemm_args_dev d = conv_args(g);
    d.M = (int)g->C, d.N = (int)(g->N * g->H * g->W), d.K = (int)(g->K * g->R * g->S);
    return run_igemm("conv_backward_input", dx->dtype, data_ptr(w), data_ptr(dy), data_ptr(dx), &d, 1);
}

static int cuda_conv_backward_weight(const conv_geometry *g, const tensor *x, const tensor *dy, tensor *dw) {
    gemm_args_dev d = conv_args(g);
    d.M = (int)g->K, d.N = (int)(g->C * g->R * g->S), d.K = (int)(g->N * g->OH * g->OW);
    return run_igemm("conv_backward_weight", dw->dtype, data_ptr(dy), data_ptr(x), data_ptr(dw), &d, 1);
}

static const backend cuda_backend = {
    .name = "cuda",
    .device = DEVICE_CUDA,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .copy_from_host = copy_from_host,
    .copy_to_host = copy_to_host,
    .copy_device = copy_device,
    .elementwise = cuda_elementwise,
    .reduce = cuda_reduce,
    .gemm = cuda_gemm,
    .conv2d_forward = cuda_conv_forward,
    .conv2d_backward_input = cuda_conv_backward_input,
    .conv2d_backward_weight = cuda_conv_backward_weight,
    .synchronize = synchronize,
};

static int init(void) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(dev.why, sizeof dev.why, "CUDA: no GPU available (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no device");
        return -1;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || cudaStreamCreate(&dev.stream) != cudaSuccess) {
        snprintf(dev.why, sizeof dev.why, "CUDA: cannot initialise device 0");
        return -1;
    }
    dev.arch = prop.major * 10 + prop.minor;
    const char *tf32 = getenv("BANIS_ALLOW_TF32");
    dev.allow_tf32 = !(tf32 && !strcmp(tf32, "0"));
    if (load_library(cuda_fixed_source(), "banis fixed kernels", &dev.fixed)) {
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
