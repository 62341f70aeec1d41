#include "checkpoint.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"

void nn_ckpt_add_module(nn_checkpoint *c, const char *prefix, nn_module *m) {
    nn_collect(m, prefix, true, true, &c->tensors);
}

void nn_ckpt_add_optimizer(nn_checkpoint *c, nn_optimizer *o) {
    if (c->n_optimizers < NN_CKPT_MAX)
        c->optimizers[c->n_optimizers++] = o;
    else
        c->dropped++;
    nn_optimizer_state(o, &c->tensors);
}

void nn_ckpt_add_rng(nn_checkpoint *c, const char *name, rng *r) {
    if (c->n_rngs >= NN_CKPT_MAX) {
        c->dropped++;
        return;
    }
    snprintf(c->rng_names[c->n_rngs], sizeof c->rng_names[0], "%s", name);
    c->rngs[c->n_rngs++] = r;
}

void nn_ckpt_set_meta(nn_checkpoint *c, const char *key, const char *fmt, ...) {
    st_meta *m = NULL;
    for (int i = 0; i < c->n_meta; i++)
        if (!strcmp(c->meta[i].key, key)) m = &c->meta[i];
    if (!m) {
        if (c->n_meta >= (int)(sizeof c->meta / sizeof *c->meta)) {
            c->dropped++;
            return;
        }
        m = &c->meta[c->n_meta++];
        snprintf(m->key, sizeof m->key, "%s", key);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->value, sizeof m->value, fmt, ap);
    va_end(ap);
}

// An add that failed (no memory; more than NN_CKPT_MAX optimizers, streams or metadata keys)
// would save or load part of the state: refused.
static int incomplete(const nn_checkpoint *c, const char *path) {
    int n = c->dropped + c->tensors.dropped;
    if (!n) return 0;
    err_set("%s: %d entr%s of the checkpoint could not be recorded (out of memory, or more than %d "
            "optimizers, random streams or metadata keys)",
            path, n, n > 1 ? "ies" : "y", NN_CKPT_MAX);
    return -1;
}

int nn_ckpt_save(nn_checkpoint *c, const char *path) {
    char key[64];
    for (int i = 0; i < c->n_optimizers; i++) {
        snprintf(key, sizeof key, "%s.steps", nn_optimizer_name(c->optimizers[i]));
        nn_ckpt_set_meta(c, key, "%" PRId64, nn_optimizer_steps(c->optimizers[i]));
    }
    for (int i = 0; i < c->n_rngs; i++) {
        snprintf(key, sizeof key, "rng.%s", c->rng_names[i]);
        nn_ckpt_set_meta(c, key, "%" PRIu64 " %" PRIu64, c->rngs[i]->seed, c->rngs[i]->offset);
    }
    return incomplete(c, path) ? -1 : st_save(path, &c->tensors, c->n_meta, c->meta);
}

// Every tensor the checkpoint would load is finite, checked in the file's bytes before any is
// loaded: a poisoned checkpoint (a run that diverged, a damaged file) is refused whole, naming
// the tensor and the element, and nothing it holds reaches the model.
static int check_finite(const st_file *f, const nn_tensor_list *l, const char *path) {
    for (int i = 0; i < l->n; i++) {
        const st_entry *e = st_find(f, l->items[i].name);
        if (!e) continue; // st_load_list names what is missing
        const unsigned char *p = f->bytes + f->data_start + e->begin;
        size_t es = (size_t)tensor_dtype_size(e->dtype), n = (e->end - e->begin) / es;
        for (size_t k = 0; k < n; k++) {
            double v;
            if (e->dtype == TENSOR_F32) {
                float x;
                memcpy(&x, p + k * es, sizeof x);
                v = x;
            } else
                memcpy(&v, p + k * es, sizeof v);
            if (!isfinite(v)) {
                err_set("%s: %s holds a NaN or an infinity (element %zu is %g): not loaded", path,
                        e->name, k, v);
                return -1;
            }
        }
    }
    return 0;
}

int nn_ckpt_load(nn_checkpoint *c, const char *path, st_file **out) {
    if (incomplete(c, path)) return -1;
    st_file *f = st_open(path);
    if (!f) return -1;
    if (check_finite(f, &c->tensors, path) || st_load_list(f, &c->tensors)) goto fail;
    char key[64];
    for (int i = 0; i < c->n_optimizers; i++) {
        snprintf(key, sizeof key, "%s.steps", nn_optimizer_name(c->optimizers[i]));
        const char *v = st_meta_get(f, key);
        char *end;
        long long s = v ? strtoll(v, &end, 10) : -1;
        if (!v || *end || s < 0) {
            err_set("%s: metadata '%s' is missing or not a step count", path, key);
            goto fail;
        }
        if (nn_optimizer_set_steps(c->optimizers[i], s)) goto fail;
    }
    for (int i = 0; i < c->n_rngs; i++) {
        snprintf(key, sizeof key, "rng.%s", c->rng_names[i]);
        const char *v = st_meta_get(f, key);
        unsigned long long seed, offset;
        if (!v || sscanf(v, "%llu %llu", &seed, &offset) != 2) {
            err_set("%s: metadata '%s' is missing or not an RNG state", path, key);
            goto fail;
        }
        c->rngs[i]->seed = seed;
        c->rngs[i]->offset = offset;
    }
    if (out)
        *out = f;
    else
        st_close(f);
    return 0;
fail:
    st_close(f);
    return -1;
}

void nn_ckpt_free(nn_checkpoint *c) { nn_list_free(&c->tensors); }
