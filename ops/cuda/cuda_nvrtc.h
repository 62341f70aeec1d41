// NVRTC: compile kernel sources for an architecture, with a cache on disk (kernel_cache.h)
// keyed by a hash of everything that went into the binary (source, options, NVRTC version,
// architecture).
#pragma once
#include <stdbool.h>
#include <stddef.h>

// Compiles `src` for sm_<arch> (e.g. 80, 90) to a cubin. On failure: -1, err_message() names
// the kernel and holds NVRTC's log.
int cuda_nvrtc_compile(const char *src, const char *what, int arch, void **cubin, size_t *size);
// The same, with ptxas's resource report (registers, stack frame, spills, shared memory of
// every entry point: ptxas -v) in *report (malloc'd; NULL on failure).
int cuda_nvrtc_compile_report(const char *src, const char *what, int arch, void **cubin,
                              size_t *size, char **report);
// The same through the disk cache. *from_cache says whether it was found there.
int cuda_kernel_image(const char *src, const char *what, int arch, void **cubin, size_t *size,
                      bool *from_cache);
// Counters since start: compilations run, disk-cache hits.
void cuda_nvrtc_stats(int *compiled, int *disk_hits);
