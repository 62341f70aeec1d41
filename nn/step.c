// The training-step runner (step.h): eager runs, captured graphs and their replays, the slots.
#include "step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"
#include "graph.h"

#define MAX_INPUTS 8

typedef struct {
    int n;                   // slots the step keeps, in the order gathered into slots_dev
    int slot[NN_STEP_SLOTS]; // which slot each is
    const char *what[NN_STEP_SLOTS];
} slot_list;

struct nn_runner {
    nn_runner_config c;
    bool graphs, running;
    char fallback[512];
    tensor *slots_dev; // (NN_STEP_SLOTS,) on the device: the step's kept scalars, gathered
    // the run in progress: its kept scalars by slot
    tensor *cur[NN_STEP_SLOTS];
    const char *cur_what[NN_STEP_SLOTS];
    slot_list issued; // what the last run left in slots_dev
    struct {
        nn_graph *g;
        int n_inputs;
        tensor *in[MAX_INPUTS]; // the graph's inputs (each run's copied into them)
        slot_list slots;        // what a replay leaves in slots_dev
    } kind[NN_STEP_KINDS];
};

nn_runner *nn_runner_new(const nn_runner_config *c) {
    if (c->n_rngs < 0 || c->n_rngs > 8 || c->n_opts < 0 || c->n_opts > 32) {
        err_set("step runner: %d generators and %d optimizers named, at most 8 and 32", c->n_rngs,
                c->n_opts);
        return NULL;
    }
    nn_runner *r = calloc(1, sizeof *r);
    if (!r) {
        err_set("step runner: out of host memory");
        return NULL;
    }
    r->c = *c;
    r->graphs = c->graphs && c->device == DEVICE_CUDA;
    return r;
}

static void free_graphs(nn_runner *r) {
    for (int k = 0; k < NN_STEP_KINDS; k++) {
        nn_graph_free(r->kind[k].g);
        r->kind[k].g = NULL;
        for (int i = 0; i < r->kind[k].n_inputs; i++) tensor_release(r->kind[k].in[i]);
        r->kind[k].n_inputs = 0;
    }
}

void nn_runner_free(nn_runner *r) {
    if (!r) return;
    free_graphs(r);
    tensor_release(r->slots_dev);
    free(r);
}

bool nn_runner_running(const nn_runner *r) { return r && r->running; }
bool nn_runner_graphs(const nn_runner *r) { return r->graphs; }
const char *nn_runner_fallback(const nn_runner *r) { return r->fallback; }
bool nn_runner_captured(const nn_runner *r, int kind) {
    return kind >= 0 && kind < NN_STEP_KINDS && r->kind[kind].g;
}
int64_t nn_runner_replays(const nn_runner *r, int kind) {
    return nn_runner_captured(r, kind) ? nn_graph_replays(r->kind[kind].g) : 0;
}
void nn_runner_set_graphs(nn_runner *r, bool on) {
    r->graphs = on && r->c.device == DEVICE_CUDA;
    if (!r->graphs) free_graphs(r);
}

static int keep(nn_runner *r, tensor *value, int slot, const char *what) {
    if (!r || !r->running) {
        err_set("%s: kept outside a step (nn_step_minimize and nn_step_report belong in a body "
                "that nn_runner_run runs; outside one, use nn_minimize)",
                what);
        return -1;
    }
    if (slot < 0 || slot >= NN_STEP_SLOTS || r->cur[slot]) {
        err_set("%s: slot %d is %s", what, slot,
                slot < 0 || slot >= NN_STEP_SLOTS ? "out of range" : "kept twice in one step");
        return -1;
    }
    // a detached view kept by the runner: the update's scope may end (and free its graph and
    // activations) long before the step's slots are gathered
    tensor *kept = value ? tensor_keep(op_detach(value)) : NULL;
    if (!kept) return -1;
    r->cur[slot] = kept;
    r->cur_what[slot] = what;
    return 0;
}

static void release_kept(nn_runner *r) {
    for (int k = 0; k < NN_STEP_SLOTS; k++) tensor_release(r->cur[k]);
    memset(r->cur, 0, sizeof r->cur);
}

int nn_step_minimize(nn_runner *r, nn_optimizer *o, tensor *loss, int slot, const char *what) {
    if (keep(r, loss, slot, what)) return -1;
    return nn_minimize_deferred(o, loss);
}

int nn_step_report(nn_runner *r, tensor *value, int slot, const char *what) {
    return keep(r, value, slot, what);
}

// One run of the body in a scope of its own: everything it issues stays on the device, its
// kept scalars gathered into slots_dev (what and where in r->issued).
typedef struct {
    nn_runner *r;
    nn_step_body body;
    void *ctx;
    tensor *const *inputs;
    int runs;
    slot_list first; // what the first run kept (a capture's run)
} issue_ctx;

static int issue(void *p) {
    issue_ctx *c = p;
    nn_runner *r = c->r;
    memset(r->cur, 0, sizeof r->cur);
    tensor_scope_begin();
    r->running = true;
    int rc = c->body(r, c->ctx, c->inputs);
    r->running = false;
    slot_list s = {0};
    tensor *kept[NN_STEP_SLOTS];
    for (int k = 0; k < NN_STEP_SLOTS; k++)
        if (r->cur[k]) {
            kept[s.n] = r->cur[k];
            s.what[s.n] = r->cur_what[k];
            s.slot[s.n++] = k;
        }
    if (!rc && s.n) rc = nn_gather_scalars(s.n, kept, r->slots_dev);
    release_kept(r);
    tensor_scope_end();
    r->issued = rc ? (slot_list){0} : s;
    if (!rc && c->runs++ == 0) c->first = s;
    return rc;
}

// Reads what the step left in slots_dev into values (one copy), refusing a non-finite one.
static int read_slots(nn_runner *r, double *values, int n_values) {
    for (int k = 0; k < n_values; k++) values[k] = NAN;
    const slot_list *s = &r->issued;
    if (!s->n) return 0;
    double v[NN_STEP_SLOTS];
    tensor_scope_begin();
    tensor *head = tensor_view_slice(r->slots_dev, 0, 0, s->n, 1);
    int rc = !head || tensor_to_doubles(head, v) ? -1 : 0;
    tensor_scope_end();
    for (int i = 0; i < s->n && !rc; i++) {
        if (s->slot[i] < n_values) values[s->slot[i]] = v[i];
        if (!isfinite(v[i])) {
            err_set("%s is %g", s->what[i], v[i]);
            rc = -1;
        }
    }
    return rc;
}

static bool inputs_fit(const nn_runner *r, int kind, int n, tensor *const *inputs) {
    if (r->kind[kind].n_inputs != n) return false;
    for (int i = 0; i < n; i++)
        if (!tensor_same_shape(r->kind[kind].in[i], inputs[i]) ||
            r->kind[kind].in[i]->dtype != inputs[i]->dtype)
            return false;
    return true;
}

// The kind's graph: the inputs copied into its own, then a replay, or (the kind's first
// graphed run) the step's run on them and its capture.
static int graphed(nn_runner *r, int kind, issue_ctx *c, int n, tensor *const *inputs) {
    for (int i = 0; i < n; i++)
        if (tensor_copy_(r->kind[kind].in[i], inputs[i])) return -1;
    c->inputs = r->kind[kind].in;
    if (r->kind[kind].g) {
        if (nn_graph_replay(r->kind[kind].g)) return -1;
        r->issued = r->kind[kind].slots;
        return 0;
    }
    if (nn_graph_capture(&r->kind[kind].g, r->fallback, sizeof r->fallback, issue, c, r->c.n_rngs,
                         r->c.rngs, r->c.n_opts, r->c.opts))
        return -1;
    r->issued = c->first; // what the step's run left (a capture that failed part way: not it)
    if (r->kind[kind].g)
        r->kind[kind].slots = c->first;
    else
        nn_runner_set_graphs(r, false); // later steps as they are; fallback says why
    return 0;
}

int nn_runner_run(nn_runner *r, int kind, nn_step_body body, void *ctx, int n_inputs,
                  tensor *const *inputs, double *values, int n_values) {
    if (kind < 0 || kind >= NN_STEP_KINDS || n_inputs < 0 || n_inputs > MAX_INPUTS) {
        err_set("step runner: kind %d (0 to %d), %d inputs (at most %d)", kind, NN_STEP_KINDS - 1,
                n_inputs, MAX_INPUTS);
        return -1;
    }
    if (!r->slots_dev &&
        !(r->slots_dev = tensor_keep(tensor_empty(r->c.dtype, SHAPE(NN_STEP_SLOTS), r->c.device))))
        return -1;
    issue_ctx c = {.r = r, .body = body, .ctx = ctx, .inputs = inputs};
    bool graphs = r->graphs;
    for (int i = 0; i < n_inputs; i++) graphs &= tensor_device(inputs[i]) == DEVICE_CUDA;
    if (graphs && !r->kind[kind].n_inputs) { // the graph's inputs, made at the kind's first run
        for (int i = 0; i < n_inputs; i++) {
            r->kind[kind].in[i] = tensor_keep(
                tensor_empty(inputs[i]->dtype, inputs[i]->ndim, inputs[i]->shape, DEVICE_CUDA));
            if (!r->kind[kind].in[i]) return -1;
            r->kind[kind].n_inputs = i + 1;
        }
    }
    int rc = graphs && inputs_fit(r, kind, n_inputs, inputs)
                 ? graphed(r, kind, &c, n_inputs, inputs)
                 : issue(&c);
    if (rc) {
        r->issued = (slot_list){0};
        for (int k = 0; k < n_values; k++) values[k] = NAN;
        return -1;
    }
    return read_slots(r, values, n_values);
}
