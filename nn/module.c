// Modules: the tree, names, train/eval, freezing, parameter lists and packing.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/backend.h"
#include "../tensor/error.h"
#include "nn.h"

nn_module *nn_container(const char *type) {
    nn_module *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->type = type;
    m->training = true;
    return m;
}

int nn_add_child(nn_module *parent, const char *name, nn_module *child) {
    if (!parent || !child) {
        err_set("adding '%s' to a module: %s is missing", name,
                parent ? "the child" : "the parent");
        return -1;
    }
    nn_module **c = realloc(parent->children, (size_t)(parent->n_children + 1) * sizeof *c);
    if (!c) {
        err_set("adding '%s' to a %s: out of memory", name, parent->type);
        return -1;
    }
    parent->children = c;
    snprintf(child->name, sizeof child->name, "%s", name);
    parent->children[parent->n_children++] = child;
    return 0;
}

int nn_adopt(nn_module *parent, int n, const char *const *names, nn_module *const *children) {
    int i = 0;
    char index[16];
    for (; i < n; i++) {
        snprintf(index, sizeof index, "%d", parent ? parent->n_children : i);
        if (!children[i] || nn_add_child(parent, names ? names[i] : index, children[i])) break;
    }
    if (i == n) return 0;
    if (!children[i]) err_set("'%s' could not be built", names ? names[i] : index);
    for (int k = i; k < n; k++) nn_free(children[k]);
    return -1;
}

nn_module *nn_child(nn_module *m, const char *name) {
    for (int i = 0; m && i < m->n_children; i++)
        if (!strcmp(m->children[i]->name, name)) return m->children[i];
    return NULL;
}

tensor *nn_forward(nn_module *m, tensor *x) {
    if (!m || !x) return NULL;
    if (!m->forward) {
        err_set("%s '%s' has no forward of its own", m->type, m->name);
        return NULL;
    }
    tensor *y = m->forward(m, x);
    if (!y && !strstr(err_message(), m->type)) err_prefix("%s '%s': ", m->type, m->name);
    return y;
}

void nn_free(nn_module *m) {
    if (!m) return;
    for (int i = 0; i < m->n_children; i++) nn_free(m->children[i]);
    free(m->children);
    for (int i = 0; i < m->n_params; i++) tensor_release(m->params[i].t);
    for (int i = 0; i < m->n_buffers; i++) tensor_release(m->buffers[i].t);
    tensor_storage_release(m->flat_params);
    tensor_storage_release(m->flat_grads);
    free(m->config);
    free(m);
}

void nn_set_training(nn_module *m, bool training) {
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->n_children; i++) nn_set_training(m->children[i], training);
}

void nn_freeze(nn_module *m, bool frozen) {
    if (!m) return;
    m->frozen = frozen;
    for (int i = 0; i < m->n_params; i++) m->params[i].t->requires_grad = !frozen;
    for (int i = 0; i < m->n_children; i++) nn_freeze(m->children[i], frozen);
}

// ---- lists ----------------------------------------------------------------------------------
int nn_list_add(nn_tensor_list *l, const char *name, tensor *t) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        nn_named_tensor *items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) {
            l->dropped++;
            err_set("list of named tensors: out of memory adding '%s'", name);
            return -1;
        }
        l->items = items;
        l->cap = cap;
    }
    snprintf(l->items[l->n].name, NN_NAME_MAX, "%s", name);
    l->items[l->n++].t = tensor_retain(t);
    return 0;
}

void nn_list_free(nn_tensor_list *l) {
    for (int i = 0; i < l->n; i++) tensor_release(l->items[i].t);
    free(l->items);
    *l = (nn_tensor_list){0};
}

tensor *nn_list_find(const nn_tensor_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].name, name)) return l->items[i].t;
    return NULL;
}

void nn_collect(nn_module *m, const char *prefix, bool params, bool buffers, nn_tensor_list *out) {
    char name[2 * NN_NAME_MAX + 2];
    if (params)
        for (int i = 0; i < m->n_params; i++) {
            snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", m->params[i].name);
            nn_list_add(out, name, m->params[i].t);
        }
    if (buffers)
        for (int i = 0; i < m->n_buffers; i++) {
            snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", m->buffers[i].name);
            nn_list_add(out, name, m->buffers[i].t);
        }
    for (int i = 0; i < m->n_children; i++) {
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", m->children[i]->name);
        nn_collect(m->children[i], name, params, buffers, out);
    }
}

int64_t nn_count_parameters(nn_module *m) {
    nn_tensor_list l = {0};
    nn_collect(m, "", true, false, &l);
    int64_t n = 0;
    for (int i = 0; i < l.n; i++) n += tensor_numel(l.items[i].t);
    nn_list_free(&l);
    return n;
}

int nn_pack(nn_module *m) {
    nn_tensor_list l = {0};
    nn_collect(m, "", true, false, &l);
    int rc = -1;
    if (l.n == 0) {
        rc = 0;
        goto done;
    }
    tensor *t0 = l.items[0].t;
    int64_t total = 0;
    for (int i = 0; i < l.n; i++) {
        tensor *t = l.items[i].t;
        if (t->dtype != t0->dtype || tensor_device(t) != tensor_device(t0)) {
            err_set("pack: parameter %s differs in dtype or device from %s", l.items[i].name,
                    l.items[0].name);
            goto done;
        }
        total += tensor_numel(t);
    }
    size_t es = tensor_dtype_size(t0->dtype);
    const backend *be = tensor_backend(t0);
    tensor_storage *P = tensor_storage_new(be, (size_t)total * es);
    tensor_storage *G = P ? tensor_storage_new(be, (size_t)total * es) : NULL;
    if (!P || !G) {
        tensor_storage_release(P);
        err_prefix("pack: ");
        goto done;
    }
    tensor_scope_begin();
    int64_t off = 0;
    for (int i = 0; i < l.n; i++) {
        tensor *t = l.items[i].t;
        tensor *dst = tensor_over_storage(P, t->dtype, t->ndim, t->shape, off);
        if (!dst || tensor_copy_(dst, t)) {
            tensor_scope_end();
            tensor_storage_release(P);
            tensor_storage_release(G);
            goto done;
        }
        // the parameter now lives in the flat buffer
        P->refcount++;
        tensor_storage_release(t->storage);
        t->storage = P;
        t->offset = off;
        tensor_contiguous_strides(t->ndim, t->shape, t->strides);
        tensor_release(t->grad);
        t->grad = tensor_keep(tensor_over_storage(G, t->dtype, t->ndim, t->shape, off));
        if (t->grad) tensor_fill_(t->grad, 0);
        off += tensor_numel(t);
    }
    tensor_scope_end();
    tensor_storage_release(m->flat_params);
    tensor_storage_release(m->flat_grads);
    m->flat_params = P;
    m->flat_grads = G;
    rc = 0;
done:
    nn_list_free(&l);
    return rc;
}

int nn_check_finite(nn_module *m) {
    nn_tensor_list l = {0};
    nn_collect(m, "", true, true, &l);
    int rc = 0;
    tensor_scope_begin();
    for (int i = 0; i < l.n && !rc; i++) {
        tensor *s = op_sum(op_abs(op_detach(l.items[i].t)), ALL_AXES, false);
        double v = s ? tensor_item(s) : NAN;
        if (!s)
            rc = -1;
        else if (!isfinite(v)) {
            err_set("%s holds a NaN or an infinity", l.items[i].name);
            rc = -1;
        }
    }
    tensor_scope_end();
    nn_list_free(&l);
    return rc;
}
