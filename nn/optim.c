// The generic optimizer: SGD (with optional momentum) and Adam over any list of parameters.
// It is handed its runs: a module placed by nn_place is one run (its flat buffers), any other
// parameter its own. A run is updated by one fused elementwise pass that writes the parameters
// and the optimizer state together: one launch per placed module.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"
#include "nn.h"

typedef struct {
    int first, count; // parameters [first, first + count) of the list
    int64_t numel;
    tensor *param_view, *grad_view; // a placed module's flat buffers, 1-D (owned); else NULL
    tensor *state[2];               // Adam m, v / SGD velocity (owned), 1-D of numel
} run;

struct nn_optimizer {
    char name[NN_NAME_MAX];
    nn_optim_config cfg;
    nn_tensor_list params;
    run *runs;
    int n_runs;
    int64_t steps;
    // The step count and the rate on the device (0-d, float64): the rate
    // (schedule and Adam's bias correction) is computed from the count by a kernel that also
    // advances it, so no per-step value is a kernel argument and a captured step replays as it
    // is (PyTorch's capturable Adam). `steps` is the host's copy, kept equal.
    tensor *t_dev, *rate_dev;
};

nn_optim_config nn_sgd(double lr, double momentum) {
    return (nn_optim_config){.kind = NN_SGD, .lr = lr, .momentum = momentum, .factor = 1};
}

nn_optim_config nn_adam(double lr, double beta1, double beta2, double eps) {
    return (nn_optim_config){
        .kind = NN_ADAM, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps, .factor = 1};
}

// Appends a run over `count` parameters from `first` (with `numel` elements in all), over a
// placed module's flat buffers P and G when given.
static int add_run(nn_optimizer *o, int first, int count, int64_t numel, tensor_storage *P,
                   tensor_storage *G) {
    run *r = &o->runs[o->n_runs++];
    *r = (run){.first = first, .count = count, .numel = numel};
    const tensor *p0 = o->params.items[first].t;
    int n_state = o->cfg.kind == NN_ADAM ? 2 : o->cfg.momentum != 0 ? 1 : 0;
    tensor_scope_begin();
    if (P) {
        r->param_view = tensor_keep(tensor_over_storage(P, p0->dtype, 1, &numel, 0));
        r->grad_view = tensor_keep(tensor_over_storage(G, p0->dtype, 1, &numel, 0));
    }
    int rc = P && (!r->param_view || !r->grad_view) ? -1 : 0;
    for (int s = 0; s < n_state && !rc; s++) {
        r->state[s] = tensor_keep(tensor_zeros(p0->dtype, 1, &numel, tensor_device(p0)));
        if (!r->state[s]) rc = -1;
    }
    tensor_scope_end();
    return rc;
}

static nn_optimizer *optimizer_alloc(const char *name, nn_optim_config cfg) {
    nn_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        err_set("optimizer %s: out of host memory", name);
        return NULL;
    }
    snprintf(o->name, sizeof o->name, "%s", name);
    o->cfg = cfg;
    return o;
}

static nn_optimizer *optimizer_failed(nn_optimizer *o) {
    err_prefix("optimizer %s: ", o->name);
    nn_optimizer_free(o);
    return NULL;
}

// The runs over o->params: the parameters [first[i], first[i] + count[i]) of a placed module i
// (placed[i] non-NULL) are one run; every other parameter is its own.
static int make_runs(nn_optimizer *o, int n, const int *first, const int *count,
                     nn_module *const *placed) {
    int n_runs = 0;
    for (int i = 0; i < n; i++) n_runs += placed[i] ? 1 : count[i];
    o->runs = calloc((size_t)(n_runs ? n_runs : 1), sizeof *o->runs);
    if (!o->runs) {
        err_set("out of host memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        int64_t numel = 0;
        for (int k = first[i]; k < first[i] + count[i]; k++)
            numel += tensor_numel(o->params.items[k].t);
        if (placed[i] && count[i]) {
            if (add_run(o, first[i], count[i], numel, placed[i]->flat_params,
                        placed[i]->flat_grads))
                return -1;
            continue;
        }
        for (int k = first[i]; k < first[i] + count[i]; k++)
            if (add_run(o, k, 1, tensor_numel(o->params.items[k].t), NULL, NULL)) return -1;
    }
    return 0;
}

// The step count and rate on the parameters' device, made with the optimizer (not in its first
// step: a training step's allocations are the same from its first run on).
static int make_counters(nn_optimizer *o) {
    if (o->params.n == 0) return 0;
    tensor_device_type dev = tensor_device(o->params.items[0].t);
    tensor_scope_begin();
    o->t_dev = tensor_keep(tensor_zeros(TENSOR_F64, 0, NULL, dev));
    o->rate_dev = tensor_keep(tensor_empty(TENSOR_F64, 0, NULL, dev));
    tensor_scope_end();
    return o->t_dev && o->rate_dev ? 0 : -1;
}

nn_optimizer *nn_optimizer_new(const char *name, nn_optim_config cfg,
                               const nn_tensor_list *params) {
    nn_optimizer *o = optimizer_alloc(name, cfg);
    if (!o) return NULL;
    for (int i = 0; i < params->n; i++)
        if (nn_list_add(&o->params, params->items[i].name, params->items[i].t))
            return optimizer_failed(o);
    nn_module *none = NULL;
    if (make_runs(o, 1, (int[]){0}, (int[]){params->n}, &none) || make_counters(o))
        return optimizer_failed(o);
    return o;
}

nn_optimizer *nn_optimizer_for(const char *name, nn_optim_config cfg, int n_modules,
                               nn_module *const *modules) {
    nn_optimizer *o = optimizer_alloc(name, cfg);
    int *first = calloc((size_t)n_modules + 1, sizeof *first),
        *count = calloc((size_t)n_modules + 1, sizeof *count);
    nn_module **placed = calloc((size_t)n_modules + 1, sizeof *placed);
    int rc = o && first && count && placed ? 0 : -1;
    for (int i = 0; i < n_modules && !rc; i++) {
        first[i] = o->params.n;
        nn_collect(modules[i], modules[i]->name, true, false, &o->params);
        count[i] = o->params.n - first[i];
        placed[i] = modules[i]->flat_params ? modules[i] : NULL;
        if (o->params.dropped) rc = -1;
    }
    if (!rc) rc = make_runs(o, n_modules, first, count, placed);
    if (!rc) rc = make_counters(o);
    free(first);
    free(count);
    free(placed);
    if (!o) return NULL;
    return rc ? optimizer_failed(o) : o;
}

void nn_optimizer_free(nn_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n_runs; i++) {
        tensor_release(o->runs[i].param_view);
        tensor_release(o->runs[i].grad_view);
        tensor_release(o->runs[i].state[0]);
        tensor_release(o->runs[i].state[1]);
    }
    free(o->runs);
    nn_list_free(&o->params);
    tensor_release(o->t_dev);
    tensor_release(o->rate_dev);
    free(o);
}

double nn_optimizer_lr(const nn_optimizer *o) {
    double lr = o->cfg.lr;
    for (int i = 0; i < o->cfg.n_milestones; i++)
        if (o->steps >= o->cfg.milestones[i]) lr *= o->cfg.factor;
    return lr;
}

int64_t nn_optimizer_steps(const nn_optimizer *o) { return o->steps; }
int nn_optimizer_set_steps(nn_optimizer *o, int64_t steps) {
    o->steps = steps;
    return o->t_dev ? tensor_fill_(o->t_dev, (double)steps) : 0;
}
void nn_optimizer_advance_steps(nn_optimizer *o, int64_t by) { o->steps += by; }
int nn_optimizer_launches(const nn_optimizer *o) { return o->n_runs; }
const char *nn_optimizer_name(const nn_optimizer *o) { return o->name; }

// The rate program: from the steps taken so far t (input 0), the rate of step t + 1 (output 0)
// and t + 1 (output 1, written over t). The same arithmetic, in the same order, as
// nn_optimizer_lr and the bias correction on the host: lr * factor for each milestone reached,
// then Keras's lr_t = lr sqrt(1 - b2^(t+1)) / (1 - b1^(t+1)) for Adam.
static void rate_program(ew_program *p, const nn_optim_config *c) {
    ew_init(p, 1);
    int t = ew_input(p, 0), one = ew_const(p, 1);
    int lr = ew_const(p, c->lr);
    for (int i = 0; i < c->n_milestones; i++)
        lr = ew_where(p, ew_binary(p, EW_GE, t, ew_const(p, (double)c->milestones[i])),
                      ew_mul(p, lr, ew_const(p, c->factor)), lr);
    int t1 = ew_add(p, t, one);
    if (c->kind == NN_ADAM) {
        int bc2 = ew_sub(p, one, ew_binary(p, EW_POW, ew_const(p, c->beta2), t1));
        int bc1 = ew_sub(p, one, ew_binary(p, EW_POW, ew_const(p, c->beta1), t1));
        lr = ew_div(p, ew_mul(p, lr, ew_unary(p, EW_SQRT, bc2)), bc1);
    }
    ew_output(p, lr);
    ew_output(p, t1);
}

// The update programs. Inputs: param, grad, state..., rate (a 0-d tensor on the device, so the
// program, and on CUDA its compiled kernel and its arguments, are the same at every step).
static void adam_program(ew_program *p, const nn_optim_config *c) {
    // Keras: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr_t m / (sqrt(v) + eps),
    // lr_t = lr sqrt(1 - b2^t) / (1 - b1^t).
    ew_init(p, 5);
    int w = ew_input(p, 0), g = ew_input(p, 1), m = ew_input(p, 2), v = ew_input(p, 3),
        lr = ew_input(p, 4);
    int m2 =
        ew_add(p, ew_mul(p, ew_const(p, c->beta1), m), ew_mul(p, ew_const(p, 1 - c->beta1), g));
    int v2 = ew_add(p, ew_mul(p, ew_const(p, c->beta2), v),
                    ew_mul(p, ew_const(p, 1 - c->beta2), ew_mul(p, g, g)));
    int step =
        ew_div(p, ew_mul(p, lr, m2), ew_add(p, ew_unary(p, EW_SQRT, v2), ew_const(p, c->eps)));
    ew_output(p, ew_sub(p, w, step));
    ew_output(p, m2);
    ew_output(p, v2);
}

static void sgd_program(ew_program *p, const nn_optim_config *c) {
    if (c->momentum == 0) { // p -= lr g
        ew_init(p, 3);
        ew_output(p, ew_sub(p, ew_input(p, 0), ew_mul(p, ew_input(p, 2), ew_input(p, 1))));
        return;
    }
    // Keras: velocity = momentum velocity - lr g; p += velocity
    ew_init(p, 4);
    int vel = ew_sub(p, ew_mul(p, ew_const(p, c->momentum), ew_input(p, 2)),
                     ew_mul(p, ew_input(p, 3), ew_input(p, 1)));
    ew_output(p, ew_add(p, ew_input(p, 0), vel));
    ew_output(p, vel);
}

// Applies the update to params [first, first+count) whose elements are [at, at + n) of the run.
static int update(nn_optimizer *o, const ew_program *p, tensor *param, tensor *grad, run *r,
                  int64_t at, int64_t n, tensor *rate) {
    int n_state = p->n_outputs - 1;
    tensor *outs[3] = {param}, *ins[5] = {param, grad};
    for (int s = 0; s < n_state; s++) {
        tensor *st = tensor_view_slice(r->state[s], 0, at, at + n, 1);
        if (!st) return -1;
        outs[1 + s] = st;
        ins[2 + s] = st;
    }
    ins[2 + n_state] = rate;
    (void)o;
    return op_ew_into("optimizer update", p, p->n_outputs, outs, p->n_inputs, ins);
}

int nn_optimizer_step(nn_optimizer *o) {
    if (o->params.n == 0) return 0;
    ew_program p, rp;
    if (o->cfg.kind == NN_ADAM)
        adam_program(&p, &o->cfg);
    else
        sgd_program(&p, &o->cfg);
    rate_program(&rp, &o->cfg);
    tensor_scope_begin();
    bool prev = ag_set_grad_enabled(false);
    int rc = 0;
    tensor *rate_t = o->rate_dev;
    if (!rc)
        rc = op_ew_into("optimizer rate", &rp, 2, (tensor *[]){o->rate_dev, o->t_dev}, 1,
                        (tensor *[]){o->t_dev});
    for (int i = 0; i < o->n_runs && !rc; i++) {
        run *r = &o->runs[i];
        if (r->param_view) { // a placed module: one pass over its flat buffers
            rc = update(o, &p, r->param_view, r->grad_view, r, 0, r->numel, rate_t);
            continue;
        }
        int64_t at = 0;
        for (int k = r->first; k < r->first + r->count && !rc; k++) {
            tensor *w = o->params.items[k].t;
            int64_t n = tensor_numel(w);
            if (w->grad) {
                tensor *wv = tensor_view_reshape(w, 1, &n), *gv = tensor_contiguous(w->grad);
                gv = gv ? tensor_view_reshape(gv, 1, &n) : NULL;
                rc = wv && gv ? update(o, &p, wv, gv, r, at, n, rate_t) : -1;
                if (!wv && !rc) err_set("parameter %s is not contiguous", o->params.items[k].name);
            }
            at += n;
        }
    }
    ag_set_grad_enabled(prev);
    tensor_scope_end();
    if (rc) {
        err_prefix("optimizer %s step: ", o->name);
        return -1;
    }
    o->steps++;
    return 0;
}

int nn_minimize(nn_optimizer *o, tensor *loss, double *value) {
    if (!loss) return -1;
    *value = tensor_item(loss);
    if (!isfinite(*value)) {
        err_set("loss is %g", *value);
        return -1;
    }
    if (ag_backward(loss, NULL)) return -1;
    return nn_optimizer_step(o);
}

int nn_minimize_deferred(nn_optimizer *o, tensor *loss) {
    if (!loss) return -1;
    if (ag_backward(loss, NULL)) return -1;
    return nn_optimizer_step(o);
}

// The n one-element tensors as one (n,) tensor (in the current scope), or NULL.
static tensor *concat_scalars(const char *who, int n, tensor *const *scalars) {
    if (n > 64) {
        err_set("%s: at most 64 scalars at once (%d given)", who, n);
        return NULL;
    }
    tensor *flat[64];
    for (int i = 0; i < n; i++) {
        if (!scalars[i] || tensor_numel(scalars[i]) != 1) {
            err_set("%s: value %d is not a one-element tensor", who, i);
            return NULL;
        }
        flat[i] = op_reshape(op_detach(scalars[i]), 1, (int64_t[]){1});
        if (!flat[i]) return NULL;
    }
    // concat takes at most 8 at once: groups of 8, then the groups
    tensor *groups[8];
    int n_groups = 0;
    for (int i = 0; i < n; i += 8) {
        int k = n - i < 8 ? n - i : 8;
        groups[n_groups++] = k == 1 ? flat[i] : op_concat(k, flat + i, 0);
    }
    return n_groups == 1 ? groups[0] : op_concat(n_groups, groups, 0);
}

int nn_read_scalars(int n, tensor *const *scalars, double *values) {
    if (n <= 0) return 0;
    tensor_scope_begin();
    tensor *all = concat_scalars("nn_read_scalars", n, scalars);
    int rc = all && !tensor_to_doubles(all, values) ? 0 : -1;
    tensor_scope_end();
    return rc;
}

int nn_gather_scalars(int n, tensor *const *scalars, tensor *dst) {
    if (n <= 0) return 0;
    if (!dst || dst->ndim != 1 || dst->shape[0] < n) {
        err_set("nn_gather_scalars: the destination is not a vector of at least %d values", n);
        return -1;
    }
    tensor_scope_begin();
    bool prev = ag_set_grad_enabled(false);
    tensor *all = concat_scalars("nn_gather_scalars", n, scalars);
    tensor *head = tensor_view_slice(dst, 0, 0, n, 1);
    int rc = all && head && !tensor_copy_(head, all) ? 0 : -1;
    ag_set_grad_enabled(prev);
    tensor_scope_end();
    return rc;
}

int nn_optimizer_zero_grad(nn_optimizer *o) {
    // gradients stay allocated (a placed module's are views of its flat buffer): zero in
    // place, one fill per placed module
    int rc = 0;
    tensor_scope_begin();
    for (int i = 0; i < o->n_runs && !rc; i++) {
        const run *r = &o->runs[i];
        if (r->grad_view) {
            rc = tensor_fill_(r->grad_view, 0);
            continue;
        }
        for (int k = r->first; k < r->first + r->count && !rc; k++)
            if (o->params.items[k].t->grad) rc = tensor_fill_(o->params.items[k].t->grad, 0);
    }
    tensor_scope_end();
    return rc;
}

void nn_optimizer_state(nn_optimizer *o, nn_tensor_list *out) {
    static const char *const names[2][2] = {{"velocity", ""}, {"m", "v"}};
    int kind = o->cfg.kind == NN_ADAM;
    for (int i = 0; i < o->n_runs; i++)
        for (int s = 0; s < 2; s++) {
            if (!o->runs[i].state[s]) continue;
            char name[2 * NN_NAME_MAX];
            snprintf(name, sizeof name, "%s.%s.%d", o->name, names[kind][s], i);
            nn_list_add(out, name, o->runs[i].state[s]);
        }
}
