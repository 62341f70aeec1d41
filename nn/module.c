// Modules: the tree, names, train/eval, freezing, parameter lists and placement.
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
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].t) {
            err_set("%s '%s': its parameters are not placed yet (nn_place the model first)",
                    m->type, m->name);
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
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].t) m->params[i].t->requires_grad = !frozen;
    for (int i = 0; i < m->n_children; i++) nn_freeze(m->children[i], frozen);
}

// ---- lists ----------------------------------------------------------------------------------
int nn_list_add(nn_tensor_list *l, const char *name, tensor *t) {
    if (!t) { // e.g. a parameter not placed yet
        l->dropped++;
        err_set("'%s' has no tensor (parameters exist once nn_place has placed them)", name);
        return -1;
    }
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

static int64_t decl_numel(const nn_named_tensor *d) {
    int64_t n = 1;
    for (int k = 0; k < d->ndim; k++) n *= d->shape[k];
    return n;
}

int64_t nn_count_parameters(nn_module *m) { // from the declarations: placed or not
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += decl_numel(&m->params[i]);
    for (int i = 0; i < m->n_children; i++) n += nn_count_parameters(m->children[i]);
    return n;
}

// The parameter declarations of m and its children, in nn_collect's order.
typedef struct {
    nn_module **owner;
    nn_named_tensor **decl;
    int n, cap;
} decl_list;

static int collect_decls(nn_module *m, decl_list *l) {
    for (int i = 0; i < m->n_params; i++) {
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 64;
            nn_module **o = realloc(l->owner, (size_t)cap * sizeof *o);
            if (o) l->owner = o;
            nn_named_tensor **d = o ? realloc(l->decl, (size_t)cap * sizeof *d) : NULL;
            if (!d) {
                err_set("out of host memory");
                return -1;
            }
            l->decl = d;
            l->cap = cap;
        }
        l->owner[l->n] = m;
        l->decl[l->n++] = &m->params[i];
    }
    for (int i = 0; i < m->n_children; i++)
        if (collect_decls(m->children[i], l)) return -1;
    return 0;
}

int nn_place(nn_module *m) {
    decl_list l = {0};
    int rc = collect_decls(m, &l);
    int64_t total = 0;
    for (int i = 0; i < l.n && !rc; i++) {
        const nn_named_tensor *d = l.decl[i], *d0 = l.decl[0];
        if (d->t) {
            err_set("'%s' of a %s is placed already", d->name, l.owner[i]->type);
            rc = -1;
        } else if (d->dtype != d0->dtype || d->device != d0->device) {
            err_set("'%s' of a %s differs in dtype or device from '%s'", d->name, l.owner[i]->type,
                    d0->name);
            rc = -1;
        }
        total += decl_numel(d);
    }
    tensor_storage *P = NULL, *G = NULL;
    if (!rc && l.n) {
        const tensor_memory *mem = tensor_memory_for(l.decl[0]->device);
        size_t bytes = (size_t)total * tensor_dtype_size(l.decl[0]->dtype);
        P = mem ? tensor_storage_new(mem, bytes) : NULL;
        G = P ? tensor_storage_new(mem, bytes) : NULL;
        if (!G) rc = -1;
    }
    tensor_scope_begin();
    int64_t off = 0;
    for (int i = 0; i < l.n && !rc; i++) { // each parameter born a view of the flat buffer
        nn_named_tensor *d = l.decl[i];
        tensor *t = tensor_keep(tensor_over_storage(P, d->dtype, d->ndim, d->shape, off));
        tensor *g = tensor_keep(tensor_over_storage(G, d->dtype, d->ndim, d->shape, off));
        if (!t || !g) {
            tensor_release(t);
            tensor_release(g);
            rc = -1;
            break;
        }
        t->requires_grad = !l.owner[i]->frozen;
        t->grad = g;
        d->t = t;
        off += decl_numel(d);
    }
    if (!rc && G) rc = tensor_fill_(tensor_over_storage(G, l.decl[0]->dtype, 1, &total, 0), 0);
    for (int i = 0; i < l.n && !rc; i++) { // then initialised in that order
        nn_named_tensor *d = l.decl[i];
        rc = nn_init_tensor(d->t, (nn_init)d->init, d->fan_in, d->fan_out, d->init_rng);
    }
    tensor_scope_end();
    if (!rc) {
        m->flat_params = P;
        m->flat_grads = G;
    } else {
        for (int i = 0; i < l.n; i++) // back to declarations: nothing half-placed
            if (l.decl[i]->t && l.decl[i]->t->storage == P) {
                tensor_release(l.decl[i]->t);
                l.decl[i]->t = NULL;
            }
        tensor_storage_release(P);
        tensor_storage_release(G);
        err_prefix("placing the parameters of a %s: ", m->type);
    }
    free(l.owner);
    free(l.decl);
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
