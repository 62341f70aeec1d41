// Built when the CUDA toolkit is absent (-Dcuda=disabled or not found): no GPU device; the
// emulated CUDA device (BANIS_CUDA=emulated) is still there.
#include <stdio.h>

#include "device.h"

const cudev *cudev_cuda(char *why, size_t n) {
    snprintf(
        why, n,
        "CUDA: this build has no CUDA runtime (configured without the CUDA toolkit; rebuild with "
        "-Dcuda=enabled, or run on the emulated device with BANIS_CUDA=emulated)");
    return NULL;
}
