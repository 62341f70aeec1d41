// Checkpoints in the safetensors format: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}},
// then the raw little-endian data. Writes are atomic (temporary file, fsync, rename); reads
// validate everything and refuse a file that fails, saying why.
#pragma once
#include "nn.h"

#define ST_MAX_HEADER (100u << 20) // a header over 100 MiB is refused

typedef struct {
    char key[64];
    char value[256];
} st_meta;

// Writes the tensors of `list` (names as given) and metadata pairs to `path`.
int st_save(const char *path, const nn_tensor_list *list, int n_meta, const st_meta *meta);

typedef struct st_entry {
    char *name;
    tensor_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    size_t begin, end; // byte offsets into the data section
} st_entry;

typedef struct st_file {
    char *path;
    unsigned char *bytes; // the whole file
    size_t size, data_start;
    st_entry *entries;
    int n_entries;
    st_meta *meta;
    int n_meta;
} st_file;

st_file *st_open(const char *path); // reads and validates
void st_close(st_file *f);
const st_entry *st_find(const st_file *f, const char *name);
const char *st_meta_get(const st_file *f, const char *key);
// Copies entry `name` into the existing tensor `dst` (same shape; dtype converted if needed).
int st_read_into(const st_file *f, const char *name, tensor *dst);
// Reads every tensor of `list` from `f` by its name; all must be present with their shapes.
int st_load_list(const st_file *f, const nn_tensor_list *list);
