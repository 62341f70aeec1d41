// What tensor/ needs from a device, and nothing more: its memory (allocate, free, copy to, from
// and within it), and the two kernels every tensor needs (a strided copy, which also converts
// dtypes, and a fill: the same dispatch for every device). The compute layer (ops/) implements
// a memory per device as the first member of its backend and tells tensor/ how to find it and
// how to copy and fill (tensor_memory_set_lookup), as a device registers its allocator with
// PyTorch's c10: tensor/ includes nothing above itself.
#pragma once
#include <stddef.h>

#include "tensor.h"

typedef struct tensor_memory {
    const char *name;
    tensor_device_type device;
    void *(*alloc)(size_t nbytes); // NULL and err_message() naming the size and device
    void (*free)(void *ptr);
    int (*copy_from_host)(void *dst, const void *src, size_t nbytes);
    int (*copy_to_host)(void *dst, const void *src, size_t nbytes);
    int (*copy_device)(void *dst, const void *src, size_t nbytes);
    int (*synchronize)(void);
} tensor_memory;

// The memory of `dev`, or NULL with err_message() saying why (no GPU, no backend linked).
const tensor_memory *tensor_memory_for(tensor_device_type dev);
// Set once by the compute layer, before the first tensor is made: the lookup, and the kernels
// dst[...] = src[...] (same shape and device; any strides; dtypes may differ) and t[...] = value.
void tensor_memory_set_lookup(const tensor_memory *(*lookup)(tensor_device_type dev),
                              int (*copy)(tensor *dst, const tensor *src),
                              int (*fill)(tensor *t, double value));
