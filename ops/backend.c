// Backend dispatch: which backend serves a device, and the one entry point every elementwise
// call goes through (so an observer can see each program, as tools/nvrtc-check does).
#include "backend.h"

const backend *backend_for(tensor_device_type dev) {
    if (dev == DEVICE_CPU) return backend_cpu();
    return backend_cuda();
}

static ew_observer_fn ew_observer;
void backend_set_ew_observer(ew_observer_fn fn) { ew_observer = fn; }

const char *backend_op_name = "elementwise";

int backend_elementwise(const ew_program *p, tensor *const *outs, const tensor *const *ins) {
    if (ew_observer) ew_observer(p, outs, ins);
    return tensor_backend(outs[0])->elementwise(p, outs, ins);
}

const char *backend_device_description(tensor_device_type dev) {
    return dev == DEVICE_CUDA ? backend_cuda_device_name() : "CPU";
}
