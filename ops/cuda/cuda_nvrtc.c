#include "cuda_nvrtc.h"
#include "kernel_cache.h"

#include <errno.h>
#include <nvrtc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../tensor/error.h"

static int n_compiled, n_disk_hits;

void cuda_nvrtc_stats(int *compiled, int *disk_hits) {
    *compiled = n_compiled;
    *disk_hits = n_disk_hits;
}

// The compile itself; with `report`, ptxas's resource report (-v) goes into *report (NVRTC's
// log, malloc'd).
static int compile(const char *src, const char *what, int arch, void **cubin, size_t *size,
                   char **report) {
    nvrtcProgram prog;
    nvrtcResult r = nvrtcCreateProgram(&prog, src, what, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        err_set("NVRTC: creating %s: %s", what, nvrtcGetErrorString(r));
        return -1;
    }
    char arch_opt[64];
    snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=sm_%d", arch);
    const char *opts[] = {arch_opt, "--std=c++17", "-default-device", "--ptxas-options=-v"};
    r = nvrtcCompileProgram(prog, report ? 4 : 3, opts);
    n_compiled++;
    size_t log_size = 0;
    nvrtcGetProgramLogSize(prog, &log_size);
    char *log = malloc(log_size + 1);
    if (log) {
        nvrtcGetProgramLog(prog, log);
        log[log_size] = 0;
    }
    if (r != NVRTC_SUCCESS) {
        err_set("NVRTC: compiling kernel %s for sm_%d failed: %s\n%s", what, arch,
                nvrtcGetErrorString(r), log ? log : "");
        free(log);
        nvrtcDestroyProgram(&prog);
        return -1;
    }
    if (report)
        *report = log;
    else
        free(log);
    r = nvrtcGetCUBINSize(prog, size);
    *cubin = r == NVRTC_SUCCESS ? malloc(*size) : NULL;
    if (!*cubin || nvrtcGetCUBIN(prog, *cubin) != NVRTC_SUCCESS) {
        err_set("NVRTC: no cubin for %s (sm_%d)", what, arch);
        free(*cubin);
        *cubin = NULL;
        if (report) {
            free(*report);
            *report = NULL;
        }
        nvrtcDestroyProgram(&prog);
        return -1;
    }
    nvrtcDestroyProgram(&prog);
    return 0;
}

int cuda_nvrtc_compile(const char *src, const char *what, int arch, void **cubin, size_t *size) {
    return compile(src, what, arch, cubin, size, NULL);
}

int cuda_nvrtc_compile_report(const char *src, const char *what, int arch, void **cubin,
                              size_t *size, char **report) {
    *report = NULL;
    return compile(src, what, arch, cubin, size, report);
}

// The cache folder, made on first use; "" when the cache is off.
static const char *cache_dir(void) {
    static char dir[1024];
    static int state; // 0 unknown, 1 ready, -1 off
    if (!state) state = cuda_kernel_cache_dir(dir, sizeof dir, "", false) ? -1 : 1;
    return state > 0 ? dir : "";
}

int cuda_kernel_image(const char *src, const char *what, int arch, void **cubin, size_t *size,
                      bool *from_cache) {
    *from_cache = false;
    int major = 0, minor = 0;
    nvrtcVersion(&major, &minor);
    uint64_t h = cuda_kernel_hash(KERNEL_HASH_SEED, src, strlen(src));
    char meta[128];
    snprintf(meta, sizeof meta, "sm_%d|nvrtc %d.%d|--std=c++17 -default-device", arch, major,
             minor);
    h = cuda_kernel_hash(h, meta, strlen(meta));
    const char *dir = cache_dir();
    char path[1200];
    if (*dir) {
        snprintf(path, sizeof path, "%s/%016llx.cubin", dir, (unsigned long long)h);
        FILE *f = fopen(path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            rewind(f);
            void *buf = n > 0 ? malloc((size_t)n) : NULL;
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
                fclose(f);
                *cubin = buf;
                *size = (size_t)n;
                *from_cache = true;
                n_disk_hits++;
                return 0;
            }
            free(buf);
            fclose(f);
        }
    }
    if (cuda_nvrtc_compile(src, what, arch, cubin, size)) return -1;
    if (*dir) { // write atomically; a failure only costs a recompilation later
        char tmp[1300];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            bool ok = fwrite(*cubin, 1, *size, f) == *size;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, path)) unlink(tmp);
        }
    }
    return 0;
}
