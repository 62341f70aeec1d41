// Where compiled kernels are kept on disk, for both devices (NVRTC cubins; the emulated device's
// shared objects in its "emu" subfolder), and the hash that names them.
// $BANIS_KERNEL_CACHE relocates the cache ("off" disables it); default
// $XDG_CACHE_HOME/banis/kernels or ~/.cache/banis/kernels.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KERNEL_HASH_SEED 1469598103934665603ull
// FNV-1a over n bytes, continuing from h (start with KERNEL_HASH_SEED).
uint64_t cuda_kernel_hash(uint64_t h, const void *p, size_t n);

// The cache folder SUB ("" for the top) in `out`, created with its parents. 0 when there is one;
// -1 when the cache is off or no folder can be made. With `required` (a device that cannot run
// without one), "off" and a missing home fall back to /tmp/banis-kernels-UID.
int cuda_kernel_cache_dir(char *out, size_t n, const char *sub, bool required);
