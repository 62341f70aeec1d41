#include "tensor.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "memory.h"

static _Atomic int64_t live_tensors;
static _Atomic int64_t live_storage_bytes, peak_storage_bytes;

size_t tensor_dtype_size(tensor_dtype dt) { return dt == TENSOR_F64 ? 8 : 4; }
const char *tensor_dtype_name(tensor_dtype dt) { return dt == TENSOR_F64 ? "float64" : "float32"; }
const char *tensor_device_name(tensor_device_type d) { return d == DEVICE_CUDA ? "cuda" : "cpu"; }
tensor_device_type tensor_device(const tensor *t) { return t->storage->memory->device; }
int64_t tensor_live_count(void) { return live_tensors; }
int64_t tensor_storage_live_bytes(void) { return live_storage_bytes; }
int64_t tensor_storage_peak_bytes(void) { return peak_storage_bytes; }
void tensor_storage_reset_peak(void) { peak_storage_bytes = live_storage_bytes; }

// ---------------------------------------------------------------- scopes
typedef struct {
    tensor **items;
    size_t n, cap;
} scope;

static _Thread_local scope *scopes;
static _Thread_local int n_scopes, cap_scopes;

// The scopes' bookkeeping cannot report a failure to its callers (they return tensors, and a
// tensor left out of its scope would be freed twice or never): without memory for a few
// pointers, stop with a message.
static void *grow_or_abort(void *p, size_t bytes, const char *what) {
    void *q = realloc(p, bytes);
    if (!q) {
        fprintf(stderr, "out of memory growing %s to %zu bytes\n", what, bytes);
        abort();
    }
    return q;
}

void tensor_scope_begin(void) {
    if (n_scopes == cap_scopes) {
        cap_scopes = cap_scopes ? 2 * cap_scopes : 8;
        scopes =
            grow_or_abort(scopes, (size_t)cap_scopes * sizeof *scopes, "the tensor scope stack");
    }
    scopes[n_scopes++] = (scope){0};
}

void tensor_scope_end(void) {
    if (n_scopes == 0) return;
    scope s = scopes[--n_scopes];
    for (size_t i = s.n; i-- > 0;)
        if (s.items[i]) tensor_release(s.items[i]);
    free(s.items);
}

tensor *tensor_autorelease(tensor *t) {
    if (!t || n_scopes == 0) return t;
    scope *s = &scopes[n_scopes - 1];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->items = grow_or_abort(s->items, s->cap * sizeof *s->items, "a tensor scope");
    }
    s->items[s->n++] = t;
    return t;
}

tensor *tensor_keep(tensor *t) {
    if (!t || n_scopes == 0) return t;
    scope *s = &scopes[n_scopes - 1];
    for (size_t i = s->n; i-- > 0;)
        if (s->items[i] == t) {
            s->items[i] = NULL;
            return t;
        }
    return tensor_retain(t); // made in an outer scope: take a reference of our own
}

void tensor_scope_end_keeping(int n, tensor *const *ts) {
    for (int i = 0; i < n; i++) tensor_keep(ts[i]);
    tensor_scope_end();
    for (int i = 0; i < n; i++) tensor_autorelease(ts[i]);
}

tensor *tensor_retain(tensor *t) {
    if (t) t->refcount++;
    return t;
}

static void (*node_release)(struct ag_node *node);
void tensor_set_node_release(void (*release)(struct ag_node *node)) { node_release = release; }

void tensor_release(tensor *t) {
    if (!t || --t->refcount > 0) return;
    if (t->node) node_release(t->node);
    tensor_release(t->grad);
    tensor_storage_release(t->storage);
    free(t);
    live_tensors--;
}

// ---------------------------------------------------------------- storage
// ---------------------------------------------------------------- devices
static const tensor_memory *(*memory_lookup)(tensor_device_type dev);
static int (*device_copy)(tensor *dst, const tensor *src);
static int (*device_fill)(tensor *t, double value);
void tensor_memory_set_lookup(const tensor_memory *(*lookup)(tensor_device_type dev),
                              int (*copy)(tensor *dst, const tensor *src),
                              int (*fill)(tensor *t, double value)) {
    memory_lookup = lookup;
    device_copy = copy;
    device_fill = fill;
}

const tensor_memory *tensor_memory_for(tensor_device_type dev) {
    if (!memory_lookup) {
        err_set("no backend for %s tensors: nothing registered one (link the ops/ layer)",
                tensor_device_name(dev));
        return NULL;
    }
    return memory_lookup(dev);
}

// ---------------------------------------------------------------- the memory trace
// A developer's tool (banis-bench --memory-trace): a list of the storages allocated since the
// trace started, summed by tag the first time the live bytes reach the threshold. Off, it costs
// one branch per allocation. Storages are made and freed by the thread that runs the graph.
#define TRACE_ROWS 256
typedef struct {
    tensor_tag tag;
    int64_t count, bytes;
} trace_row;

static struct {
    bool on, taken;
    int64_t at_bytes, start_bytes, taken_bytes;
    tensor_storage *head;
    tensor_storage *pending; // the storage that crossed the threshold: its op is named later
    trace_row rows[TRACE_ROWS];
    int n_rows;
} trace;

static _Thread_local tensor_tag current_tag;

tensor_tag tensor_tag_set(tensor_tag tag) {
    tensor_tag prev = current_tag;
    current_tag = tag;
    return prev;
}

static void trace_count(const tensor_storage *st) {
    int r = 0;
    while (r < trace.n_rows &&
           (trace.rows[r].tag.op != st->tag.op || trace.rows[r].tag.backward != st->tag.backward))
        r++;
    if (r == trace.n_rows) {
        if (r == TRACE_ROWS - 1)
            r--; // the last row gathers the rest
        else
            trace.rows[trace.n_rows++] = (trace_row){st->tag, 0, 0};
    }
    trace.rows[r].count++;
    trace.rows[r].bytes += (int64_t)st->nbytes;
}

// The crossing storage is tagged when its op is recorded, after the allocation: it is counted
// at the next allocation or free, or at the report.
static void trace_resolve(void) {
    if (trace.pending) trace_count(trace.pending);
    trace.pending = NULL;
}

static void trace_take(tensor_storage *crossing, int64_t now) {
    trace.taken = true;
    trace.taken_bytes = now;
    trace.n_rows = 0;
    int64_t listed = 0;
    for (tensor_storage *st = trace.head; st; st = st->trace_next) {
        if (st->borrowed) continue;
        listed += (int64_t)st->nbytes;
        if (st != crossing) trace_count(st);
    }
    trace.pending = crossing;
    trace.start_bytes = now - listed;
}

static void trace_add(tensor_storage *st, int64_t now) {
    trace_resolve();
    st->trace_next = trace.head;
    if (trace.head) trace.head->trace_prev = st;
    trace.head = st;
    if (!trace.taken && now >= trace.at_bytes) trace_take(st, now);
}

static void trace_remove(tensor_storage *st) {
    trace_resolve();
    if (!st->trace_prev && trace.head != st) return; // made before the trace started
    if (st->trace_prev)
        st->trace_prev->trace_next = st->trace_next;
    else
        trace.head = st->trace_next;
    if (st->trace_next) st->trace_next->trace_prev = st->trace_prev;
}

void tensor_trace_start(int64_t at_bytes) {
    trace.on = true;
    trace.taken = false;
    trace.pending = NULL;
    trace.head = NULL;
    trace.at_bytes = at_bytes;
}

static int by_bytes(const void *a, const void *b) {
    int64_t x = ((const trace_row *)a)->bytes, y = ((const trace_row *)b)->bytes;
    return (x < y) - (x > y);
}

int64_t tensor_trace_report(FILE *f) {
    trace_resolve();
    for (tensor_storage *st = trace.head, *next; st; st = next) { // unlink what is still live
        next = st->trace_next;
        st->trace_prev = st->trace_next = NULL;
    }
    trace.head = NULL;
    trace.on = false;
    if (!trace.taken) {
        fprintf(f, "memory trace: the live bytes never reached %.1f MiB\n",
                (double)trace.at_bytes / (1 << 20));
        return -1;
    }
    qsort(trace.rows, (size_t)trace.n_rows, sizeof trace.rows[0], by_bytes);
    const double mib = 1 << 20;
    fprintf(f,
            "memory trace: %.1f MiB live at the point traced; %.1f MiB of it was live "
            "before the trace started\n",
            (double)trace.taken_bytes / mib, (double)trace.start_bytes / mib);
    fprintf(f, "  %10s %7s  made by\n", "MiB", "tensors");
    for (int r = 0; r < trace.n_rows; r++) {
        const trace_row *row = &trace.rows[r];
        fprintf(f, "  %10.1f %7lld  %s%s\n", (double)row->bytes / mib, (long long)row->count,
                row->tag.backward ? "backward of " : "",
                row->tag.op ? row->tag.op : "(no op recorded: a leaf, a batch or a temporary)");
    }
    return trace.taken_bytes;
}

tensor_storage *tensor_storage_new(const tensor_memory *mem, size_t nbytes) {
    tensor_storage *st = calloc(1, sizeof *st);
    if (!st) {
        err_set("out of host memory allocating a storage header");
        return NULL;
    }
    st->refcount = 1;
    st->memory = mem;
    st->nbytes = nbytes;
    st->data = mem->alloc(nbytes ? nbytes : 1);
    if (!st->data) {
        free(st);
        return NULL; // the backend named the size and the device
    }
    st->tag = current_tag;
    int64_t now = live_storage_bytes += (int64_t)nbytes;
    if (now > peak_storage_bytes) peak_storage_bytes = now;
    if (trace.on) trace_add(st, now);
    return st;
}

void tensor_storage_release(tensor_storage *st) {
    if (!st || --st->refcount > 0) return;
    if (!st->borrowed) {
        st->memory->free(st->data);
        live_storage_bytes -= (int64_t)st->nbytes;
    }
    if (trace.on) trace_remove(st);
    free(st);
}

// ---------------------------------------------------------------- shapes
int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

void tensor_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

bool tensor_is_contiguous(const tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

bool tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

const char *tensor_shape_str(const tensor *t, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < t->ndim && used < n; d++)
        used +=
            (size_t)snprintf(buf + used, n - used, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (used < n) snprintf(buf + used, n - used, ")");
    return buf;
}

static int check_shape(const char *who, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) {
        err_set("%s: %d dimensions (at most %d)", who, ndim, TENSOR_MAX_DIMS);
        return -1;
    }
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            err_set("%s: negative extent %lld in dimension %d", who, (long long)shape[d], d);
            return -1;
        }
        if (shape[d] && n > INT64_MAX / 16 / shape[d]) {
            err_set("%s: shape too large", who);
            return -1;
        }
        n *= shape[d];
    }
    return 0;
}

int tensor_infer_shape(const char *who, int64_t numel, int ndim, int64_t *shape) {
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1) {
            if (infer >= 0) {
                err_set("%s: more than one -1 in the shape", who);
                return -1;
            }
            infer = d;
        } else
            known *= shape[d];
    }
    if (infer >= 0) {
        if (known == 0 || numel % known) {
            err_set("%s: cannot infer a dimension: %lld elements into blocks of %lld", who,
                    (long long)numel, (long long)known);
            return -1;
        }
        shape[infer] = numel / known;
        known = numel;
    }
    if (known != numel) {
        err_set("%s: %lld elements cannot take a shape of %lld", who, (long long)numel,
                (long long)known);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- creation
static tensor *new_header(tensor_storage *st, tensor_dtype dt, int ndim, const int64_t *shape,
                          const int64_t *strides, int64_t offset) {
    tensor *t = calloc(1, sizeof *t);
    if (!t) {
        err_set("out of host memory allocating a tensor header");
        return NULL;
    }
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    if (strides && ndim)
        memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    else
        tensor_contiguous_strides(ndim, shape, t->strides);
    t->offset = offset;
    t->storage = st;
    st->refcount++;
    live_tensors++;
    return tensor_autorelease(t);
}

tensor *tensor_empty(tensor_dtype dt, int ndim, const int64_t *shape, tensor_device_type dev) {
    if (check_shape("tensor_empty", ndim, shape)) return NULL;
    const tensor_memory *mem = tensor_memory_for(dev);
    if (!mem) return NULL;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    tensor_storage *st = tensor_storage_new(mem, (size_t)n * tensor_dtype_size(dt));
    if (!st) return NULL;
    tensor *t = new_header(st, dt, ndim, shape, NULL, 0);
    tensor_storage_release(st);
    return t;
}

tensor *tensor_over_storage(tensor_storage *st, tensor_dtype dt, int ndim, const int64_t *shape,
                            int64_t offset) {
    if (check_shape("tensor_over_storage", ndim, shape)) return NULL;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    if ((size_t)(offset + n) * tensor_dtype_size(dt) > st->nbytes) {
        err_set("tensor_over_storage: %lld elements at offset %lld exceed a storage of %zu bytes",
                (long long)n, (long long)offset, st->nbytes);
        return NULL;
    }
    return new_header(st, dt, ndim, shape, NULL, offset);
}

tensor *tensor_full(tensor_dtype dt, int ndim, const int64_t *shape, double value,
                    tensor_device_type dev) {
    tensor *t = tensor_empty(dt, ndim, shape, dev);
    if (t && tensor_fill_(t, value)) return NULL;
    return t;
}

tensor *tensor_zeros(tensor_dtype dt, int ndim, const int64_t *shape, tensor_device_type dev) {
    return tensor_full(dt, ndim, shape, 0.0, dev);
}

tensor *tensor_ones(tensor_dtype dt, int ndim, const int64_t *shape, tensor_device_type dev) {
    return tensor_full(dt, ndim, shape, 1.0, dev);
}

tensor *tensor_scalar(tensor_dtype dt, double value, tensor_device_type dev) {
    return tensor_full(dt, 0, NULL, value, dev);
}

tensor *tensor_from_host(tensor_dtype dt, int ndim, const int64_t *shape, const void *data,
                         tensor_device_type dev) {
    tensor *t = tensor_empty(dt, ndim, shape, dev);
    if (!t) return NULL;
    if (t->storage->memory->copy_from_host(t->storage->data, data, t->storage->nbytes)) return NULL;
    return t;
}

tensor *tensor_from_doubles(tensor_dtype dt, int ndim, const int64_t *shape, const double *values,
                            tensor_device_type dev) {
    if (dt == TENSOR_F64) return tensor_from_host(dt, ndim, shape, values, dev);
    if (check_shape("tensor_from_doubles", ndim, shape)) return NULL;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) {
        err_set("tensor_from_doubles: out of host memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) tmp[i] = (float)values[i];
    tensor *t = tensor_from_host(dt, ndim, shape, tmp, dev);
    free(tmp);
    return t;
}

// ---------------------------------------------------------------- copies

int tensor_copy_(tensor *dst, const tensor *src) {
    if (!dst || !src) return -1;
    if (!tensor_same_shape(dst, src)) {
        char a[96], b[96];
        err_set("copy: shapes differ: %s into %s", tensor_shape_str(src, a, sizeof a),
                tensor_shape_str(dst, b, sizeof b));
        return -1;
    }
    if (tensor_device(dst) != tensor_device(src)) {
        err_set("copy: devices differ (%s into %s); use tensor_to_device",
                tensor_device_name(tensor_device(src)), tensor_device_name(tensor_device(dst)));
        return -1;
    }
    return device_copy(dst, src);
}

int tensor_fill_(tensor *t, double value) {
    if (!t) return -1;
    return device_fill(t, value);
}

tensor *tensor_clone(const tensor *t) {
    if (!t) return NULL;
    tensor *c = tensor_empty(t->dtype, t->ndim, t->shape, tensor_device(t));
    if (c && tensor_copy_(c, t)) return NULL;
    return c;
}

tensor *tensor_contiguous(const tensor *t) {
    if (!t) return NULL;
    if (tensor_is_contiguous(t)) return tensor_view(t, t->ndim, t->shape, NULL, t->offset);
    return tensor_clone(t);
}

tensor *tensor_cast(const tensor *t, tensor_dtype dt) {
    if (!t) return NULL;
    tensor *c = tensor_empty(dt, t->ndim, t->shape, tensor_device(t));
    if (!c) return NULL;
    // The device's copy converts between dtypes on load and store.
    if (device_copy(c, t)) return NULL;
    return c;
}

int tensor_to_host(const tensor *t, void *dst) {
    if (!t) return -1;
    size_t nbytes = (size_t)tensor_numel(t) * tensor_dtype_size(t->dtype);
    tensor_scope_begin();
    const tensor *src = t;
    if (!tensor_is_contiguous(t)) src = tensor_clone(t);
    int rc =
        src ? src->storage->memory->copy_to_host(dst,
                                                 (const char *)src->storage->data +
                                                     src->offset * tensor_dtype_size(src->dtype),
                                                 nbytes)
            : -1;
    tensor_scope_end();
    return rc;
}

int tensor_to_doubles(const tensor *t, double *dst) {
    if (!t) return -1;
    if (t->dtype == TENSOR_F64) return tensor_to_host(t, dst);
    int64_t n = tensor_numel(t);
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) {
        err_set("tensor_to_doubles: out of host memory");
        return -1;
    }
    int rc = tensor_to_host(t, tmp);
    for (int64_t i = 0; rc == 0 && i < n; i++) dst[i] = tmp[i];
    free(tmp);
    return rc;
}

double tensor_item(const tensor *t) {
    if (!t) return NAN;
    if (tensor_numel(t) != 1) {
        err_set("item: tensor has %lld elements, not 1", (long long)tensor_numel(t));
        return NAN;
    }
    double v;
    return tensor_to_doubles(t, &v) ? NAN : v;
}

tensor *tensor_to_device(const tensor *t, tensor_device_type dev) {
    if (!t) return NULL;
    if (tensor_device(t) == dev) return tensor_clone(t);
    tensor *out = tensor_empty(t->dtype, t->ndim, t->shape, dev);
    if (!out) return NULL;
    size_t nbytes = (size_t)tensor_numel(t) * tensor_dtype_size(t->dtype);
    void *tmp = malloc(nbytes ? nbytes : 1);
    if (!tmp) {
        err_set("to_device: out of host memory staging %zu bytes", nbytes);
        return NULL;
    }
    int rc = tensor_to_host(t, tmp);
    if (!rc) rc = out->storage->memory->copy_from_host(out->storage->data, tmp, nbytes);
    free(tmp);
    return rc ? NULL : out;
}

// ---------------------------------------------------------------- views
tensor *tensor_view(const tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                    int64_t offset) {
    if (!t) return NULL;
    if (check_shape("view", ndim, shape)) return NULL;
    return new_header(t->storage, t->dtype, ndim, shape, strides, offset);
}

tensor *tensor_view_reshape(const tensor *t, int ndim, const int64_t *shape_in) {
    if (!t) return NULL;
    int64_t shape[TENSOR_MAX_DIMS];
    if (ndim > TENSOR_MAX_DIMS) {
        err_set("reshape: %d dimensions (at most %d)", ndim, TENSOR_MAX_DIMS);
        return NULL;
    }
    if (ndim) memcpy(shape, shape_in, (size_t)ndim * sizeof *shape);
    if (tensor_infer_shape("reshape", tensor_numel(t), ndim, shape)) return NULL;
    // Groups of old dimensions map to groups of new ones; each old group must be one
    // contiguous run in memory for the view to exist without a copy (PyTorch's rule).
    int64_t strides[TENSOR_MAX_DIMS];
    int64_t numel = tensor_numel(t);
    if (numel == 0 || t->ndim == 0) {
        tensor_contiguous_strides(ndim, shape, strides);
        return tensor_view(t, ndim, shape, strides, t->offset);
    }
    int view_d = ndim - 1;
    int64_t chunk_stride = t->strides[t->ndim - 1], tensor_n = 1, view_n = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_n *= t->shape[d];
        if (d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tensor_n * chunk_stride)) {
            while (view_d >= 0 && (view_n < tensor_n || shape[view_d] == 1)) {
                strides[view_d] = view_n * chunk_stride;
                view_n *= shape[view_d];
                view_d--;
            }
            if (view_n != tensor_n) return NULL;
            if (d > 0) {
                chunk_stride = t->strides[d - 1];
                tensor_n = view_n = 1;
            }
        }
    }
    if (view_d != -1) return NULL;
    return tensor_view(t, ndim, shape, strides, t->offset);
}

tensor *tensor_view_permute(const tensor *t, const int *perm) {
    if (!t) return NULL;
    int64_t shape[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {0};
    for (int d = 0; d < t->ndim; d++) {
        if (perm[d] < 0 || perm[d] >= t->ndim || seen[perm[d]]) {
            err_set("permute: not a permutation of %d dimensions", t->ndim);
            return NULL;
        }
        seen[perm[d]] = true;
        shape[d] = t->shape[perm[d]];
        strides[d] = t->strides[perm[d]];
    }
    return tensor_view(t, t->ndim, shape, strides, t->offset);
}

tensor *tensor_view_slice(const tensor *t, int dim, int64_t start, int64_t stop, int64_t step) {
    if (!t) return NULL;
    if (dim < 0) dim += t->ndim;
    if (dim < 0 || dim >= t->ndim || step <= 0 || start < 0 || stop > t->shape[dim] ||
        start > stop) {
        err_set("slice: [%lld:%lld:%lld] on dimension %d of a %d-d tensor of extent %lld is out of "
                "range",
                (long long)start, (long long)stop, (long long)step, dim, t->ndim,
                dim >= 0 && dim < t->ndim ? (long long)t->shape[dim] : 0LL);
        return NULL;
    }
    int64_t shape[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    shape[dim] = (stop - start + step - 1) / step;
    strides[dim] = t->strides[dim] * step;
    return tensor_view(t, t->ndim, shape, strides, t->offset + start * t->strides[dim]);
}

tensor *tensor_view_expand(const tensor *t, int ndim, const int64_t *shape) {
    if (!t) return NULL;
    if (ndim < t->ndim || ndim > TENSOR_MAX_DIMS) {
        err_set("expand: cannot expand %d dimensions to %d", t->ndim, ndim);
        return NULL;
    }
    int64_t strides[TENSOR_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int64_t ext = d < lead ? 1 : t->shape[d - lead];
        if (ext == shape[d])
            strides[d] = d < lead ? 0 : t->strides[d - lead];
        else if (ext == 1)
            strides[d] = 0;
        else {
            char a[96];
            err_set("expand: dimension %d of extent %lld cannot broadcast to %lld (shape %s)", d,
                    (long long)ext, (long long)shape[d], tensor_shape_str(t, a, sizeof a));
            return NULL;
        }
    }
    return tensor_view(t, ndim, shape, strides, t->offset);
}
