// N-dimensional tensors: shape, strides and offset over reference-counted storage that
// belongs to a device. Views (reshape, permute, slice, expand) share storage; `contiguous`
// copies only when it must.
//
// Ownership, in one rule: a function that returns a new tensor hands it to the innermost open
// scope (tensor_scope_begin/end), which releases it when it ends; with no scope open the
// caller owns it and calls tensor_release. tensor_retain keeps a tensor past its scope.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TENSOR_MAX_DIMS 6

typedef enum { TENSOR_F32 = 0, TENSOR_F64 = 1 } tensor_dtype;
typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } tensor_device_type;

struct tensor_memory;
struct ag_node;

// What made a storage, for the memory trace (tensor_trace_*): the op whose output it is (named
// when autograd records the op), or whose backward allocated it.
typedef struct {
    const char *op; // a static string; NULL: not known
    bool backward;
} tensor_tag;

typedef struct tensor_storage {
    int refcount;
    const struct tensor_memory *memory; // the device's memory `data` is in (tensor/memory.h)
    size_t nbytes;
    void *data;    // host or device pointer
    bool borrowed; // data not ours to free (a view into another allocation)
    tensor_tag tag;
    struct tensor_storage *trace_prev, *trace_next; // the live list while a trace runs
} tensor_storage;

typedef struct tensor {
    int refcount;
    tensor_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t strides[TENSOR_MAX_DIMS]; // in elements; 0 for a broadcast dimension
    int64_t offset;                   // in elements
    tensor_storage *storage;
    bool requires_grad;
    struct tensor *grad;  // accumulated gradient (leaves) or NULL
    struct ag_node *node; // the op that produced it; NULL for leaves
} tensor;

// SHAPE(2, 3) expands to the (ndim, shape) pair the constructors take.
#define SHAPE(...)                                                                                 \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) { __VA_ARGS__ }

size_t tensor_dtype_size(tensor_dtype dt);
const char *tensor_dtype_name(tensor_dtype dt);
const char *tensor_device_name(tensor_device_type d);
tensor_device_type tensor_device(const tensor *t);

// --- creation (NULL and err_message() on failure: bad shape, out of memory) ---
tensor *tensor_empty(tensor_dtype dt, int ndim, const int64_t *shape, tensor_device_type dev);
tensor *tensor_zeros(tensor_dtype dt, int ndim, const int64_t *shape, tensor_device_type dev);
tensor *tensor_ones(tensor_dtype dt, int ndim, const int64_t *shape, tensor_device_type dev);
tensor *tensor_full(tensor_dtype dt, int ndim, const int64_t *shape, double value,
                    tensor_device_type dev);
tensor *tensor_scalar(tensor_dtype dt, double value, tensor_device_type dev);
// `data` holds numel values of dtype `dt`, row-major.
tensor *tensor_from_host(tensor_dtype dt, int ndim, const int64_t *shape, const void *data,
                         tensor_device_type dev);
// Values given as doubles, converted to `dt`.
tensor *tensor_from_doubles(tensor_dtype dt, int ndim, const int64_t *shape, const double *values,
                            tensor_device_type dev);
// A tensor over existing storage (shares it).
tensor *tensor_over_storage(tensor_storage *st, tensor_dtype dt, int ndim, const int64_t *shape,
                            int64_t offset);

// --- reading back ---
// Copies the logical (row-major) contents to `dst` as dtype `t->dtype`.
int tensor_to_host(const tensor *t, void *dst);
// Same, converted to doubles. `dst` holds tensor_numel(t) values.
int tensor_to_doubles(const tensor *t, double *dst);
double tensor_item(const tensor *t); // a one-element tensor's value (NaN on error)
tensor *tensor_to_device(const tensor *t, tensor_device_type dev); // a copy (no gradient)
tensor *tensor_clone(const tensor *t);                             // contiguous copy, same device
tensor *tensor_contiguous(const tensor *t); // t itself as a new view if contiguous, else a copy
tensor *tensor_cast(const tensor *t, tensor_dtype dt); // contiguous copy in dtype
int tensor_copy_(tensor *dst, const tensor *src);      // dst[...] = src, same shape
int tensor_fill_(tensor *t, double value);

// --- shape queries ---
int64_t tensor_numel(const tensor *t);
bool tensor_is_contiguous(const tensor *t);
bool tensor_same_shape(const tensor *a, const tensor *b);
// "(2, 3, 4)" into buf.
const char *tensor_shape_str(const tensor *t, char *buf, size_t n);
void tensor_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);

// --- raw views (no autograd; ops/ has the differentiable versions) ---
tensor *tensor_view(const tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                    int64_t offset);
tensor *tensor_view_reshape(const tensor *t, int ndim,
                            const int64_t *shape); // NULL if not viewable
tensor *tensor_view_permute(const tensor *t, const int *perm);
tensor *tensor_view_slice(const tensor *t, int dim, int64_t start, int64_t stop, int64_t step);
tensor *tensor_view_expand(const tensor *t, int ndim, const int64_t *shape);
// Resolves a -1 in `shape` against numel; returns 0 or -1 with a message naming `who`.
int tensor_infer_shape(const char *who, int64_t numel, int ndim, int64_t *shape);

// --- lifetime ---
tensor *tensor_retain(tensor *t);
void tensor_release(tensor *t);
void tensor_scope_begin(void);
void tensor_scope_end(void);
// Takes a tensor out of the innermost scope: the caller owns it now.
tensor *tensor_keep(tensor *t);
// Ends the innermost scope but hands the n tensors of ts (NULL ones skipped) to the scope around
// it: what a training step's update leaves for a later one, everything else freed now.
void tensor_scope_end_keeping(int n, tensor *const *ts);
// Registers a new tensor with the innermost scope (used by constructors).
tensor *tensor_autorelease(tensor *t);
// How a tensor's graph node is freed with it: set by autograd/ when it records the first node
// (a tensor holds a node only after that), so tensor/ needs nothing from the layer above.
void tensor_set_node_release(void (*release)(struct ag_node *node));

tensor_storage *tensor_storage_new(const struct tensor_memory *mem, size_t nbytes);
void tensor_storage_release(tensor_storage *st);

// Live counts, for leak tests.
int64_t tensor_live_count(void);
int64_t tensor_storage_live_bytes(void);
int64_t tensor_storage_peak_bytes(void); // high-water mark since the last reset
void tensor_storage_reset_peak(void);

// --- the memory trace: what is live at a step's peak, by the op that made it ---
// New storages take the calling thread's tag (autograd sets it to an op while running that
// op's backward; a recorded op's output is tagged with the op). Returns the previous tag.
tensor_tag tensor_tag_set(tensor_tag tag);
// Starts a trace: storages allocated from now on are listed, and the first time the live bytes
// reach `at_bytes` what is live is summed by tag. Tracing is off until this is called.
void tensor_trace_start(int64_t at_bytes);
// Ends the trace and prints its summary (largest first; storages that were live when the trace
// started as one row) to `f`. Returns the bytes summed, or -1 if the threshold was never reached.
int64_t tensor_trace_report(FILE *f);
