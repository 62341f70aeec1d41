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
    free(d);
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
    st_meta meta[1] = {{"source", ""}};
    snprintf(meta[0].value, sizeof meta[0].value, "%s", d->source);
    int rc = l.n == 2 && l.items[0].t && l.items[1].t ? st_save(path, &l, 1, meta) : -1;
    nn_list_free(&l);
    tensor_scope_end();
    return rc;
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
done:
    st_close(f);
    return d;
}

// ---- split and batches ------------------------------------------------------------------
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
