// Backend dispatch: which backend serves a device, and the one entry point every elementwise
// call goes through (so an observer can see each program, as tools/nvrtc-check does).
#include "backend.h"
#include "cuda/cuda.h"

const backend *backend_for(tensor_device_type dev) {
    if (dev == DEVICE_CPU) return backend_cpu();
    return backend_cuda();
}

static const tensor_memory *memory_for(tensor_device_type dev) {
    const backend *be = backend_for(dev);
    return be ? &be->mem : NULL;
}

int backend_copy(tensor *dst, const tensor *src) {
    ew_program p;
    ew_init(&p, 1);
    ew_output(&p, ew_input(&p, 0));
    const tensor *ins[1] = {src};
    tensor *outs[1] = {dst};
    return backend_elementwise("copy", &p, outs, ins);
}

int backend_fill(tensor *t, double value) {
    ew_program p;
    ew_init(&p, 0);
    ew_output(&p, ew_const(&p, value));
    tensor *outs[1] = {t};
    return backend_elementwise("fill", &p, outs, NULL);
}

static ew_observer_fn ew_observer;
void backend_set_ew_observer(ew_observer_fn fn) { ew_observer = fn; }

int backend_elementwise(const char *op, const ew_program *p, tensor *const *outs,
                        const tensor *const *ins) {
    if (ew_observer) ew_observer(op, p, outs, ins);
    return tensor_backend(outs[0])->elementwise(op, p, outs, ins);
}

// tensor/ finds a device's memory through this layer, told before main runs (this file is in
// every program that computes: every op dispatches through it).
__attribute__((constructor)) static void register_memory(void) {
    tensor_memory_set_lookup(memory_for, backend_copy, backend_fill);
}

const char *backend_device_description(tensor_device_type dev) {
    return dev == DEVICE_CUDA ? backend_cuda_device_name() : "CPU";
}
