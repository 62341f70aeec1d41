#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tensor/error.h"
#include "json.h"

static const char *dtype_tag(tensor_dtype dt) { return dt == TENSOR_F64 ? "F64" : "F32"; }

// ---- writing ------------------------------------------------------------------------------
typedef struct {
    char *buf;
    size_t n, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return -1;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->n, s, n);
    b->n += n;
    b->buf[b->n] = 0;
    return 0;
}

static int sb_quoted(strbuf *b, const char *s) {
    size_t need = json_quote(s, NULL, 0);
    char *tmp = malloc(need + 1);
    if (!tmp) return -1;
    json_quote(s, tmp, need + 1);
    int rc = sb_add(b, tmp, need);
    free(tmp);
    return rc;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int st_save(const char *path, const nn_tensor_list *list, int n_meta, const st_meta *meta) {
    if (list->dropped) {
        err_set("%s: not written: %d tensor%s could not be added to the list (out of memory)", path,
                list->dropped, list->dropped > 1 ? "s" : "");
        return -1;
    }
    strbuf h = {0};
    size_t offset = 0;
    char num[128];
    int rc = sb_add(&h, "{", 1);
    if (n_meta) {
        rc |= sb_add(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < n_meta; i++) {
            if (i) rc |= sb_add(&h, ",", 1);
            rc |= sb_quoted(&h, meta[i].key);
            rc |= sb_add(&h, ":", 1);
            rc |= sb_quoted(&h, meta[i].value);
        }
        rc |= sb_add(&h, "}", 1);
    }
    for (int i = 0; i < list->n; i++) {
        const tensor *t = list->items[i].t;
        size_t nbytes = (size_t)tensor_numel(t) * tensor_dtype_size(t->dtype);
        if (n_meta || i) rc |= sb_add(&h, ",", 1);
        rc |= sb_quoted(&h, list->items[i].name);
        int w = snprintf(num, sizeof num, ":{\"dtype\":\"%s\",\"shape\":[", dtype_tag(t->dtype));
        rc |= sb_add(&h, num, (size_t)w);
        for (int d = 0; d < t->ndim; d++) {
            w = snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            rc |= sb_add(&h, num, (size_t)w);
        }
        w = snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nbytes);
        rc |= sb_add(&h, num, (size_t)w);
        offset += nbytes;
    }
    rc |= sb_add(&h, "}", 1);
    while (!rc && h.n % 8) rc |= sb_add(&h, " ", 1); // align the data section
    if (rc) {
        free(h.buf);
        err_set("saving %s: out of host memory building the header", path);
        return -1;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(h.buf);
        err_set("saving %s: out of host memory", path);
        return -1;
    }
    snprintf(tmp, plen + 16, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        err_set("saving %s: cannot create %s: %s", path, tmp, strerror(errno));
        free(h.buf);
        free(tmp);
        return -1;
    }
    unsigned char len8[8];
    uint64_t hl = h.n;
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
    rc = write_all(fd, len8, 8) || write_all(fd, h.buf, h.n);
    free(h.buf);
    for (int i = 0; i < list->n && !rc; i++) {
        const tensor *t = list->items[i].t;
        size_t nbytes = (size_t)tensor_numel(t) * tensor_dtype_size(t->dtype);
        void *host = malloc(nbytes ? nbytes : 1);
        if (!host) {
            err_set("saving %s: out of host memory for tensor %s", path, list->items[i].name);
            rc = -2;
            break;
        }
        if (tensor_to_host(t, host)) {
            err_prefix("saving %s: reading tensor %s: ", path, list->items[i].name);
            rc = -2;
        } else if (write_all(fd, host, nbytes))
            rc = -1;
        free(host);
    }
    if (rc == 0 && fsync(fd)) rc = -1;
    if (rc == -1 || rc == 1) err_set("saving %s: write failed: %s", path, strerror(errno));
    if (close(fd) && !rc) {
        err_set("saving %s: close failed: %s", path, strerror(errno));
        rc = -1;
    }
    if (!rc && rename(tmp, path)) {
        err_set("saving %s: rename from %s failed: %s", path, tmp, strerror(errno));
        rc = -1;
    }
    if (rc) unlink(tmp); // the previous file at `path`, if any, is untouched
    free(tmp);
    return rc ? -1 : 0;
}

// ---- reading ------------------------------------------------------------------------------
void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_entries; i++) free(f->entries[i].name);
    free(f->entries);
    free(f->meta);
    free(f->bytes);
    free(f->path);
    free(f);
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static bool is_uint(const json_value *v) {
    return v && v->type == JSON_NUMBER && v->number >= 0 && v->number <= 9007199254740992.0 &&
           v->number == (double)(uint64_t)v->number;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        err_set(__VA_ARGS__);                                                                      \
        return -1;                                                                                 \
    } while (0)

// The header's __metadata__: string values only.
static int parse_metadata(st_file *f, const json_value *v) {
    if (v->type != JSON_OBJECT) FAIL("__metadata__ is not an object");
    f->meta = calloc(v->n ? v->n : 1, sizeof *f->meta);
    if (!f->meta) FAIL("out of host memory");
    for (size_t k = 0; k < v->n; k++) {
        if (v->items[k].type != JSON_STRING)
            FAIL("__metadata__ value '%s' is not a string", v->keys[k]);
        snprintf(f->meta[k].key, sizeof f->meta[k].key, "%s", v->keys[k]);
        snprintf(f->meta[k].value, sizeof f->meta[k].value, "%s", v->items[k].string);
    }
    f->n_meta = (int)v->n;
    return 0;
}

static int parse_dtype(const char *key, const json_value *dt, tensor_dtype *out) {
    if (dt->type != JSON_STRING) FAIL("entry '%s': dtype is not a string", key);
    if (!strcmp(dt->string, "F32") || !strcmp(dt->string, "F64")) {
        *out = dt->string[1] == '3' ? TENSOR_F32 : TENSOR_F64;
        return 0;
    }
    static const char *const known[] = {"BOOL", "U8",   "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16",
                                        "F16",  "BF16", "I32", "U32",     "I64",     "U64"};
    bool is_known = false;
    for (size_t k = 0; k < sizeof known / sizeof *known; k++)
        is_known |= !strcmp(dt->string, known[k]);
    FAIL("entry '%s': dtype '%s' is %s", key, dt->string,
         is_known ? "valid safetensors but not supported here (F32 and F64 are)"
                  : "not a safetensors dtype");
}

// One tensor's entry: its dtype, shape and byte range within the data section.
static int parse_entry(const char *key, const json_value *v, size_t data_size, st_entry *e) {
    if (v->type != JSON_OBJECT) FAIL("entry '%s' is not an object", key);
    const json_value *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"),
                     *off = json_get(v, "data_offsets");
    if (!dt || !sh || !off || v->n != 3)
        FAIL("entry '%s' must have exactly dtype, shape and data_offsets", key);
    if (parse_dtype(key, dt, &e->dtype)) return -1;
    if (sh->type != JSON_ARRAY || sh->n > TENSOR_MAX_DIMS)
        FAIL("entry '%s': shape must be an array of at most %d integers", key, TENSOR_MAX_DIMS);
    uint64_t numel = 1;
    for (size_t d = 0; d < sh->n; d++) {
        if (!is_uint(&sh->items[d]))
            FAIL("entry '%s': shape[%zu] is not a non-negative integer", key, d);
        e->shape[d] = (int64_t)sh->items[d].number;
        if (e->shape[d] && numel > (UINT64_C(1) << 50) / (uint64_t)e->shape[d])
            FAIL("entry '%s': shape too large", key);
        numel *= (uint64_t)e->shape[d];
    }
    e->ndim = (int)sh->n;
    if (off->type != JSON_ARRAY || off->n != 2 || !is_uint(&off->items[0]) ||
        !is_uint(&off->items[1]))
        FAIL("entry '%s': data_offsets must be two non-negative integers", key);
    e->begin = (size_t)off->items[0].number;
    e->end = (size_t)off->items[1].number;
    if (e->begin > e->end)
        FAIL("entry '%s': data_offsets [%zu, %zu] are reversed", key, e->begin, e->end);
    if (e->end > data_size)
        FAIL("entry '%s': data_offsets [%zu, %zu] run past the data section (%zu bytes)", key,
             e->begin, e->end, data_size);
    if (e->end - e->begin != numel * tensor_dtype_size(e->dtype))
        FAIL("entry '%s': %zu bytes but shape and dtype need %llu", key, e->end - e->begin,
             (unsigned long long)(numel * tensor_dtype_size(e->dtype)));
    e->name = strdup(key);
    if (!e->name) FAIL("out of host memory");
    return 0;
}

// The entries cover the data section exactly: no overlaps, no holes.
static int check_coverage(st_file *f, size_t data_size) {
    st_entry **sorted = calloc(f->n_entries ? (size_t)f->n_entries : 1, sizeof *sorted);
    if (!sorted) FAIL("out of host memory");
    for (int i = 0; i < f->n_entries; i++) sorted[i] = &f->entries[i];
    qsort(sorted, (size_t)f->n_entries, sizeof *sorted, cmp_begin);
    size_t at = 0;
    int rc = 0;
    for (int i = 0; i < f->n_entries && !rc; i++) {
        if (sorted[i]->begin < at) {
            err_set("entries '%s' and '%s' overlap", sorted[i - 1]->name, sorted[i]->name);
            rc = -1;
        } else if (sorted[i]->begin > at) {
            err_set("a hole of %zu bytes before entry '%s'", sorted[i]->begin - at,
                    sorted[i]->name);
            rc = -1;
        }
        at = sorted[i]->end;
    }
    free(sorted);
    if (!rc && at != data_size) {
        err_set("%zu bytes after the last tensor are not described by the header", data_size - at);
        rc = -1;
    }
    return rc;
}

// The file's bytes and the header's length, checked against the file's size.
static int read_file(st_file *f, const char *path, uint64_t *header_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) FAIL("cannot open: %s", strerror(errno));
    struct stat stt;
    int rc = -1;
    if (fstat(fileno(fp), &stt) || !S_ISREG(stt.st_mode))
        err_set("not a regular file");
    else if ((f->size = (size_t)stt.st_size) < 8)
        err_set("truncated: %zu bytes, less than the 8-byte header length", f->size);
    else if (!(f->bytes = malloc(f->size)))
        err_set("out of host memory reading %zu bytes", f->size);
    else if (fread(f->bytes, 1, f->size, fp) != f->size)
        err_set("read failed");
    else
        rc = 0;
    fclose(fp);
    if (rc) return -1;
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)f->bytes[i] << (8 * i);
    if (hl > ST_MAX_HEADER)
        FAIL("header length %llu exceeds the %u-byte limit", (unsigned long long)hl, ST_MAX_HEADER);
    if (hl > f->size - 8)
        FAIL("header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)hl,
             f->size);
    if (hl < 2) FAIL("header of %llu bytes is too short for a JSON object", (unsigned long long)hl);
    *header_len = hl;
    return 0;
}

static int parse_header(st_file *f, const json_value *root) {
    if (root->type != JSON_OBJECT) FAIL("header is not a JSON object");
    f->entries = calloc(root->n ? root->n : 1, sizeof *f->entries);
    if (!f->entries) FAIL("out of host memory");
    size_t data_size = f->size - f->data_start;
    for (size_t i = 0; i < root->n; i++) {
        const char *key = root->keys[i];
        for (size_t j = 0; j < i; j++)
            if (!strcmp(root->keys[j], key)) FAIL("duplicate name '%s'", key);
        if (!strcmp(key, "__metadata__")) {
            if (parse_metadata(f, &root->items[i])) return -1;
            continue;
        }
        if (parse_entry(key, &root->items[i], data_size, &f->entries[f->n_entries])) return -1;
        f->n_entries++;
    }
    return check_coverage(f, data_size);
}
#undef FAIL

st_file *st_open(const char *path) {
    st_file *f = calloc(1, sizeof *f);
    if (!f) {
        err_set("%s: out of host memory", path);
        return NULL;
    }
    f->path = strdup(path);
    uint64_t hl;
    json_value *root = NULL;
    if (!read_file(f, path, &hl)) {
        f->data_start = 8 + hl;
        root = json_parse((const char *)f->bytes + 8, hl);
        if (!root) err_prefix("header is not valid JSON: ");
    }
    int rc = root ? parse_header(f, root) : -1;
    json_free(root);
    if (rc) {
        err_prefix("%s: ", path);
        st_close(f);
        return NULL;
    }
    return f;
}

const st_entry *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_entries; i++)
        if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

int st_read_into(const st_file *f, const char *name, tensor *dst) {
    const st_entry *e = st_find(f, name);
    if (!e) {
        err_set("%s: no tensor named '%s'", f->path, name);
        return -1;
    }
    bool same = e->ndim == dst->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == dst->shape[d];
    if (!same) {
        char s[96];
        err_set("%s: tensor '%s' has a different shape than the model's %s", f->path, name,
                tensor_shape_str(dst, s, sizeof s));
        return -1;
    }
    tensor_scope_begin();
    // copy out of the file buffer (it may not be aligned for the type)
    void *aligned = malloc(e->end - e->begin + 1);
    int rc = -1;
    if (aligned) {
        memcpy(aligned, f->bytes + f->data_start + e->begin, e->end - e->begin);
        tensor *src = tensor_from_host(e->dtype, e->ndim, e->shape, aligned, tensor_device(dst));
        if (src && src->dtype != dst->dtype) src = tensor_cast(src, dst->dtype);
        rc = src ? tensor_copy_(dst, src) : -1;
        free(aligned);
    } else
        err_set("%s: out of host memory", f->path);
    tensor_scope_end();
    return rc;
}

int st_load_list(const st_file *f, const nn_tensor_list *list) {
    for (int i = 0; i < list->n; i++)
        if (st_read_into(f, list->items[i].name, list->items[i].t)) return -1;
    return 0;
}
