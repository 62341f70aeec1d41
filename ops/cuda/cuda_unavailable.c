// Built when the CUDA toolkit is absent (-Dcuda=disabled or not found): the CUDA device
// exists as a name only, and asking for it says why it cannot be had.
#include "../../tensor/error.h"
#include "../backend.h"

const backend *backend_cuda(void) {
    err_set("CUDA: this build has no CUDA backend (configured without the CUDA toolkit; "
            "rebuild with -Dcuda=enabled)");
    return NULL;
}

void backend_cuda_allow_tf32(bool allow) { (void)allow; }
void backend_cuda_memory(size_t *in_use, size_t *cached) { *in_use = *cached = 0; }
backend_counters backend_cuda_counters(void) { return (backend_counters){0}; }
