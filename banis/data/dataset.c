// The paired data set: storage (safetensors), the train/test split, batches, pair sheets.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../nn/safetensors.h"
#include "../../tensor/error.h"
#include "dataset.h"

void banis_dataset_free(banis_dataset *d) {
    if (!d) return;
    free(d->a);
    free(d->b);
    free(d->labels);
    free(d->membrane);
    free(d->nuclei);
    free(d->origin);
    for (int i = 0; i < d->n_groups; i++) free(d->group_names[i]);
    free(d->group_names);
    image_free(d->tile_map);
    free(d);
}

int banis_dataset_append(banis_dataset *d, const float *a, const float *b, const int32_t *origin,
                         int k) {
    if (d->n + k > d->cap) {
        int c = 2 * (d->n > d->cap ? d->n : d->cap) + k + 64;
        float *na = realloc(d->a, sizeof(float) * BANIS_PIXELS * (size_t)c);
        if (na) d->a = na;
        float *nb = na ? realloc(d->b, sizeof(float) * BANIS_PIXELS * (size_t)c) : NULL;
        if (nb) d->b = nb;
        int32_t *no =
            nb && origin ? realloc(d->origin, sizeof(int32_t) * BANIS_ORIGIN * (size_t)c) : NULL;
        if (no) d->origin = no;
        if (!nb || (origin && !no)) {
            err_set("out of host memory for %d pairs", c);
            return -1;
        }
        d->cap = c;
    }
    memcpy(d->a + (size_t)d->n * BANIS_PIXELS, a, sizeof(float) * BANIS_PIXELS * (size_t)k);
    memcpy(d->b + (size_t)d->n * BANIS_PIXELS, b, sizeof(float) * BANIS_PIXELS * (size_t)k);
    if (origin)
        memcpy(d->origin + (size_t)d->n * BANIS_ORIGIN, origin,
               sizeof(int32_t) * BANIS_ORIGIN * (size_t)k);
    d->n += k;
    return 0;
}

// ---- storage ------------------------------------------------------------------------------
int banis_dataset_save(const banis_dataset *d, const char *path) {
    tensor_scope_begin();
    nn_tensor_list l = {0};
    nn_list_add(
        &l, "A",
        tensor_from_host(TENSOR_F32, SHAPE(d->n, 1, BANIS_SIDE, BANIS_SIDE), d->a, DEVICE_CPU));
    nn_list_add(
        &l, "B",
        tensor_from_host(TENSOR_F32, SHAPE(d->n, 1, BANIS_SIDE, BANIS_SIDE), d->b, DEVICE_CPU));
    int n_meta = 1 + (d->origin ? d->n_groups : 0), want = 2 + (d->origin != NULL);
    st_meta *meta = calloc((size_t)n_meta, sizeof *meta);
    if (d->origin && meta) { // exact in float32: every value is below 2^24
        size_t k = (size_t)d->n * BANIS_ORIGIN;
        double *o = malloc(sizeof(double) * (k ? k : 1));
        for (size_t i = 0; o && i < k; i++) o[i] = d->origin[i];
        nn_list_add(&l, "origin",
                    o ? tensor_from_doubles(TENSOR_F32, SHAPE(d->n, BANIS_ORIGIN), o, DEVICE_CPU)
                      : NULL);
        free(o);
        for (int g = 0; g < d->n_groups; g++) {
            snprintf(meta[1 + g].key, sizeof meta[1 + g].key, "group.%d", g);
            snprintf(meta[1 + g].value, sizeof meta[1 + g].value, "%s", d->group_names[g]);
        }
    }
    int rc = -1;
    if (meta) {
        snprintf(meta[0].key, sizeof meta[0].key, "source");
        snprintf(meta[0].value, sizeof meta[0].value, "%s", d->source);
        bool ok = l.n == want;
        for (int i = 0; i < l.n; i++) ok = ok && l.items[i].t;
        rc = ok ? st_save(path, &l, n_meta, meta) : -1;
        if (!ok) err_set("%s: out of host memory", path);
    } else
        err_set("%s: out of host memory", path);
    free(meta);
    nn_list_free(&l);
    tensor_scope_end();
    return rc;
}

// The pairs' origins and the groups' names, when the set has them (real images). 0, or -1.
static int load_origin(const st_file *f, const char *path, banis_dataset *d) {
    const st_entry *e = st_find(f, "origin");
    if (!e) return 0;
    if (e->dtype != TENSOR_F32 || e->ndim != 2 || e->shape[0] != d->n ||
        e->shape[1] != BANIS_ORIGIN) {
        err_set("%s: tensor origin must be float32 (%d, %d)", path, d->n, BANIS_ORIGIN);
        return -1;
    }
    const float *v = (const float *)(f->bytes + f->data_start + e->begin);
    size_t k = (size_t)d->n * BANIS_ORIGIN;
    d->origin = malloc(sizeof(int32_t) * (k ? k : 1));
    if (!d->origin) {
        err_set("%s: out of host memory", path);
        return -1;
    }
    int groups = 0;
    for (size_t i = 0; i < k; i++) {
        float x; // the data section need not be aligned for floats
        memcpy(&x, (const unsigned char *)v + i * sizeof x, sizeof x);
        if (!(x >= -1 && x < 16777216) || x != floorf(x)) {
            err_set("%s: origin of pair %zu is not a whole number >= -1 (%g)", path,
                    i / BANIS_ORIGIN, (double)x);
            return -1;
        }
        d->origin[i] = (int32_t)x;
        if (i % BANIS_ORIGIN == ORIGIN_GROUP && d->origin[i] + 1 > groups)
            groups = d->origin[i] + 1;
    }
    d->group_names = calloc((size_t)(groups ? groups : 1), sizeof *d->group_names);
    if (!d->group_names) {
        err_set("%s: out of host memory", path);
        return -1;
    }
    d->n_groups = groups;
    for (int g = 0; g < groups; g++) {
        char key[32];
        snprintf(key, sizeof key, "group.%d", g);
        const char *name = st_meta_get(f, key);
        char fallback[32];
        snprintf(fallback, sizeof fallback, "group %d", g);
        d->group_names[g] = strdup(name ? name : fallback);
        if (!d->group_names[g]) {
            err_set("%s: out of host memory", path);
            return -1;
        }
    }
    return 0;
}

banis_dataset *banis_dataset_load(const char *path) {
    st_file *f = st_open(path);
    if (!f) return NULL;
    const st_entry *ea = st_find(f, "A"), *eb = st_find(f, "B");
    banis_dataset *d = NULL;
    if (!ea || !eb || ea->dtype != TENSOR_F32 || eb->dtype != TENSOR_F32 || ea->ndim != 4 ||
        eb->ndim != 4 || ea->shape[0] != eb->shape[0] || ea->shape[1] != 1 ||
        ea->shape[2] != BANIS_SIDE || ea->shape[3] != BANIS_SIDE || eb->shape[1] != 1 ||
        eb->shape[2] != BANIS_SIDE || eb->shape[3] != BANIS_SIDE) {
        err_set("%s: not a BANIS data set (needs float32 tensors A and B of shape (N, 1, 64, 64))",
                path);
        goto done;
    }
    d = calloc(1, sizeof *d);
    if (!d) goto done;
    d->n = (int)ea->shape[0];
    d->a = malloc(ea->end - ea->begin + 1);
    d->b = malloc(eb->end - eb->begin + 1);
    if (!d->a || !d->b) {
        banis_dataset_free(d);
        d = NULL;
        err_set("%s: out of host memory", path);
        goto done;
    }
    memcpy(d->a, f->bytes + f->data_start + ea->begin, ea->end - ea->begin);
    memcpy(d->b, f->bytes + f->data_start + eb->begin, eb->end - eb->begin);
    for (size_t i = 0; i < (size_t)d->n * BANIS_PIXELS * 2;
         i++) { // NaN in data poisons every weight at once
        const float v =
            i < (size_t)d->n * BANIS_PIXELS ? d->a[i] : d->b[i - (size_t)d->n * BANIS_PIXELS];
        if (isfinite(v)) continue;
        size_t j = i % ((size_t)d->n * BANIS_PIXELS);
        err_set("%s: image %s of pair %zu has a non-finite value (%g) at pixel (%zu, %zu)", path,
                i < (size_t)d->n * BANIS_PIXELS ? "A" : "B", j / BANIS_PIXELS, (double)v,
                j % BANIS_PIXELS / BANIS_SIDE, j % BANIS_SIDE);
        banis_dataset_free(d);
        d = NULL;
        goto done;
    }
    const char *src = st_meta_get(f, "source");
    snprintf(d->source, sizeof d->source, "%s", src ? src : path);
    if (load_origin(f, path, d)) {
        banis_dataset_free(d);
        d = NULL;
    }
done:
    st_close(f);
    return d;
}

// ---- split and batches ------------------------------------------------------------------
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void shuffle(int *v, int n, rng *r) {
    for (int i = n - 1; i > 0; i--) {
        uint32_t w[4];
        rng_block(r, (uint64_t)i, 0, w);
        int j = (int)(((uint64_t)w[0] * (uint64_t)(i + 1)) >> 32);
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    r->offset += (uint64_t)n;
}

banis_split banis_split_make(int n, double test_fraction, uint64_t seed) {
    banis_split s = {0};
    int *all = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!all) return s;
    for (int i = 0; i < n; i++) all[i] = i;
    rng r;
    rng_init(&r, seed);
    shuffle(all, n, &r);
    s.n_test = (int)lround(n * test_fraction);
    if (n >= 2 && s.n_test < 1 && test_fraction > 0) s.n_test = 1;
    s.n_train = n - s.n_test;
    s.test = malloc(sizeof(int) * (size_t)(s.n_test ? s.n_test : 1));
    s.train = malloc(sizeof(int) * (size_t)(s.n_train ? s.n_train : 1));
    memcpy(s.test, all, sizeof(int) * (size_t)s.n_test);
    memcpy(s.train, all + s.n_test, sizeof(int) * (size_t)s.n_train);
    free(all);
    return s;
}

// The split's index lists from a side per pair: 1 test, 0 train, -1 left out.
static int split_from_sides(const signed char *side, int n, banis_split *s) {
    s->n_test = s->n_train = 0;
    for (int i = 0; i < n; i++) {
        s->n_test += side[i] == 1;
        s->n_train += side[i] == 0;
    }
    s->test = malloc(sizeof(int) * (size_t)(s->n_test ? s->n_test : 1));
    s->train = malloc(sizeof(int) * (size_t)(s->n_train ? s->n_train : 1));
    if (!s->test || !s->train) {
        err_set("split: out of host memory");
        return -1;
    }
    int t = 0, r = 0;
    for (int i = 0; i < n; i++)
        if (side[i] == 1)
            s->test[t++] = i;
        else if (!side[i])
            s->train[r++] = i;
    return 0;
}

// Whole groups to the test split, in a seeded random order, until it holds test_fraction of the
// pairs.
static void split_by_group(const banis_dataset *d, double test_fraction, uint64_t seed,
                           signed char *side, int *order, char *how, size_t size) {
    int g = d->n_groups, want = (int)lround(d->n * test_fraction), got = 0, groups = 0;
    for (int i = 0; i < g; i++) order[i] = i;
    rng r;
    rng_init(&r, seed);
    shuffle(order, g, &r);
    for (int i = 0; i < d->n; i++) side[i] = 0;
    for (int k = 0; k < g - 1 && (got < want || !groups); k++) {
        int n_in = 0;
        for (int i = 0; i < d->n; i++)
            if (d->origin[(size_t)i * BANIS_ORIGIN + ORIGIN_GROUP] == order[k]) {
                side[i] = 1;
                n_in++;
            }
        got += n_in;
        groups += n_in > 0;
    }
    snprintf(how, size,
             "by group: %d of %d groups (whole stacks, or series of files named alike) in the "
             "test split, none split between the two",
             groups, g);
}

// The distinct slices of group g, sorted, into order; their count.
static int group_slices(const banis_dataset *d, int g, int *order) {
    int k = 0;
    for (int i = 0; i < d->n; i++) {
        const int32_t *o = d->origin + (size_t)i * BANIS_ORIGIN;
        if (o[ORIGIN_GROUP] != g) continue;
        bool seen = false;
        for (int j = 0; j < k && !seen; j++) seen = order[j] == o[ORIGIN_SLICE];
        if (!seen) order[k++] = o[ORIGIN_SLICE];
    }
    qsort(order, (size_t)k, sizeof *order, cmp_int);
    return k;
}

// Within each group of at least 3 slices, its last slices to the test split and the slice
// before them left out; groups of fewer slices train whole.
static void split_by_slices(const banis_dataset *d, double test_fraction, signed char *side,
                            int *order, char *how, size_t size) {
    int tested = 0, groups = 0;
    for (int i = 0; i < d->n; i++) side[i] = -1;
    for (int g = 0; g < d->n_groups; g++) {
        int k = group_slices(d, g, order);
        if (!k) continue;
        int n_test = k >= 3 ? (int)lround(k * test_fraction) : 0;
        if (k >= 3 && n_test < 1) n_test = 1;
        if (n_test > k - 2) n_test = k - 2;
        // test: the last n_test slices; the one before them is left out (a near copy of both)
        int first_test = order[k - n_test > 0 ? k - n_test : 0],
            guard = k >= 3 ? order[k - n_test - 1] : INT32_MIN;
        for (int i = 0; i < d->n; i++) {
            const int32_t *o = d->origin + (size_t)i * BANIS_ORIGIN;
            if (o[ORIGIN_GROUP] != g) continue;
            side[i] = n_test && o[ORIGIN_SLICE] >= first_test ? 1
                      : o[ORIGIN_SLICE] == guard && n_test    ? -1
                                                              : 0;
        }
        tested += n_test;
        groups += n_test > 0;
    }
    int per = groups ? (tested + groups / 2) / groups : 0;
    snprintf(how, size,
             "by slices: the last %s%d slice%s of %d group%s in the test split, the slice before "
             "them left out",
             groups > 1 ? "~" : "", per, per == 1 ? "" : "s", groups, groups == 1 ? "" : "s");
}

// One field's tiles (groups of fewer than 3 slices): those of the last rows in the test split,
// the tiles overlapping them left out.
static void split_by_rows(const banis_dataset *d, double test_fraction, signed char *side,
                          int *order, char *how, size_t size) {
    int k = 0;
    for (int i = 0; i < d->n; i++) order[k++] = d->origin[(size_t)i * BANIS_ORIGIN + ORIGIN_Y];
    qsort(order, (size_t)k, sizeof *order, cmp_int);
    int want = (int)lround(d->n * test_fraction);
    int cut = order[k - (want > 0 ? want : 1)];
    for (int i = 0; i < d->n; i++) {
        int y = d->origin[(size_t)i * BANIS_ORIGIN + ORIGIN_Y];
        side[i] = y >= cut ? 1 : y + BANIS_SIDE <= cut ? 0 : -1;
    }
    snprintf(how, size,
             "by rows: tiles from row %d of each field down in the test split, the tiles "
             "overlapping them left out",
             cut);
}

int banis_split_data(const banis_dataset *d, double test_fraction, uint64_t seed, banis_split *s) {
    *s = (banis_split){0};
    if (!d->origin) {
        *s = banis_split_make(d->n, test_fraction, seed);
        snprintf(s->how, sizeof s->how, "random (the synthetic pairs are independent)");
        return s->test && s->train ? 0 : -1;
    }
    signed char *side = malloc((size_t)(d->n ? d->n : 1));
    int *order = malloc(sizeof(int) * (size_t)(d->n > d->n_groups ? d->n + 1 : d->n_groups + 1));
    if (!side || !order) {
        free(side);
        free(order);
        err_set("split: out of host memory");
        return -1;
    }
    bool tiled = d->n && d->origin[ORIGIN_Y] >= 0;
    int most_slices = 0;
    for (int g = 0; g < d->n_groups && d->n_groups < SPLIT_MIN_GROUPS; g++) {
        int k = group_slices(d, g, order);
        most_slices = k > most_slices ? k : most_slices;
    }
    if (d->n_groups >= SPLIT_MIN_GROUPS)
        split_by_group(d, test_fraction, seed, side, order, s->how, sizeof s->how);
    else if (most_slices >= 3)
        split_by_slices(d, test_fraction, side, order, s->how, sizeof s->how);
    else if (tiled)
        split_by_rows(d, test_fraction, side, order, s->how, sizeof s->how);
    else
        for (int i = 0; i < d->n; i++) side[i] = 0;
    int rc = split_from_sides(side, d->n, s);
    free(side);
    free(order);
    if (!rc && (!s->n_test || !s->n_train)) {
        err_set("%s: no test split without near copies of training images: %d group%s of at most "
                "%d slices%s; give more files, more slices, or tile a larger field",
                d->source, d->n_groups, d->n_groups == 1 ? "" : "s", most_slices,
                tiled ? "" : ", not tiled");
        rc = -1;
    }
    if (rc) banis_split_free(s);
    return rc;
}

void banis_split_free(banis_split *s) {
    free(s->train);
    free(s->test);
    *s = (banis_split){0};
}

void banis_sampler_init(banis_sampler *s, const int *pool, int n, uint64_t seed) {
    s->pool = pool;
    s->n_pool = n;
    s->order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) s->order[i] = pool[i];
    rng_init(&s->r, seed);
    s->at = n; // shuffle on first use
}

void banis_sampler_free(banis_sampler *s) { free(s->order); }

void banis_sampler_next(banis_sampler *s, int count, int *out) {
    for (int k = 0; k < count; k++) {
        if (s->at >= s->n_pool) {
            shuffle(s->order, s->n_pool, &s->r);
            s->at = 0;
        }
        out[k] = s->order[s->at++];
    }
}

int banis_batch(const banis_dataset *d, const int *idx, int count, tensor_dtype dt,
                tensor_device_type dev, tensor **a, tensor **b) {
    double *ha = malloc(sizeof(double) * BANIS_PIXELS * (size_t)count);
    double *hb = malloc(sizeof(double) * BANIS_PIXELS * (size_t)count);
    if (!ha || !hb) {
        free(ha);
        free(hb);
        err_set("batch: out of host memory");
        return -1;
    }
    for (int k = 0; k < count; k++)
        for (int i = 0; i < BANIS_PIXELS; i++) {
            ha[(size_t)k * BANIS_PIXELS + (size_t)i] =
                d->a[(size_t)idx[k] * BANIS_PIXELS + (size_t)i];
            hb[(size_t)k * BANIS_PIXELS + (size_t)i] =
                d->b[(size_t)idx[k] * BANIS_PIXELS + (size_t)i];
        }
    *a = tensor_from_doubles(dt, SHAPE(count, 1, BANIS_SIDE, BANIS_SIDE), ha, dev);
    *b = tensor_from_doubles(dt, SHAPE(count, 1, BANIS_SIDE, BANIS_SIDE), hb, dev);
    free(ha);
    free(hb);
    return *a && *b ? 0 : -1;
}

int banis_write_pairs_png(const char *path, const float *a, const float *b, int n, int per_row) {
    const int gap = 2, cell_w = 3 * BANIS_SIDE + 2 * gap, cell_h = BANIS_SIDE;
    int rows = (n + per_row - 1) / per_row;
    image *sheet = image_new(per_row * (cell_w + 2 * gap), rows * (cell_h + 2 * gap), 3);
    if (!sheet) return -1;
    for (size_t i = 0; i < (size_t)sheet->w * (size_t)sheet->h * 3; i++) sheet->data[i] = 0.25f;
    for (int k = 0; k < n; k++) {
        int x0 = (k % per_row) * (cell_w + 2 * gap) + gap,
            y0 = (k / per_row) * (cell_h + 2 * gap) + gap;
        for (int y = 0; y < BANIS_SIDE; y++)
            for (int x = 0; x < BANIS_SIDE; x++) {
                float va = (a[(size_t)k * BANIS_PIXELS + (size_t)(y * BANIS_SIDE + x)] + 1) / 2;
                float vb = (b[(size_t)k * BANIS_PIXELS + (size_t)(y * BANIS_SIDE + x)] + 1) / 2;
                float *pa = image_at(sheet, x0 + x, y0 + y),
                      *pb = image_at(sheet, x0 + BANIS_SIDE + gap + x, y0 + y);
                float *po = image_at(sheet, x0 + 2 * (BANIS_SIDE + gap) + x, y0 + y);
                pa[0] = pa[1] = pa[2] = va;
                pb[0] = pb[1] = pb[2] = vb;
                po[0] = va; // membrane magenta (red + blue), nuclei green
                po[1] = vb;
                po[2] = va;
            }
    }
    int rc = image_write_png(path, sheet, 0, 1);
    image_free(sheet);
    return rc;
}
