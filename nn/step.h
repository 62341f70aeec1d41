// The training-step runner: a model's step, run eagerly or captured and replayed as a CUDA
// graph, its losses gathered on the device and read with one copy at its end.
//
// A step is a function (nn_step_body) that issues a model's updates on the inputs it is given:
// for each update, zero the gradients, forward, a loss, then nn_step_minimize, which
// backpropagates, steps the optimizer and keeps the loss on the device in a numbered slot;
// nn_step_report keeps any other scalar the same way. nn_runner_run runs it:
//   - on the CPU, or with graphs off, as it is;
//   - on CUDA, the first run of each kind of step (a caller's number: warm-up and full steps of
//     a schedule are two kinds) runs as it is and is captured (nn/graph.h); later runs of that
//     kind copy their inputs into the graph's and replay it with one call. A run whose inputs
//     have other shapes than its kind's graph (a smaller last batch) runs as it is.
// Either way the slots are read with one copy to the host after the step (one synchronisation)
// and a NaN or Inf one is an error naming it. What a step may do under a graph: see
// nn/graph.h (no reads back, the same structure every run, random numbers only from the
// generators named here, optimizers only those named here). A step that cannot be captured
// still runs, and the runner runs every later step as it is, with the reason kept
// (nn_runner_fallback) for the program to say.
#pragma once
#include <stdbool.h>

#include "../tensor/rng.h"
#include "nn.h"

#define NN_STEP_SLOTS 32 // scalars one step may keep
#define NN_STEP_KINDS 4  // kinds of step a runner captures

typedef struct nn_runner nn_runner;
// Issues one step on inputs[0 .. n) (the caller's tensors, or the graph's copies of them).
typedef int (*nn_step_body)(nn_runner *r, void *ctx, tensor *const *inputs);

typedef struct {
    tensor_dtype dtype;
    tensor_device_type device;
    bool graphs;            // on CUDA: capture each kind's first run and replay it
    int n_rngs, n_opts;     // what the step draws from and steps (at most 8 and 32)
    rng *rngs[8];           // generators the step draws from
    nn_optimizer *opts[32]; // optimizers it steps
} nn_runner_config;

nn_runner *nn_runner_new(const nn_runner_config *c); // NULL with err_message()
void nn_runner_free(nn_runner *r);
// Runs body(r, ctx, inputs) as kind `kind` (0 .. NN_STEP_KINDS - 1); then values[k] holds slot
// k for k < n_values (NaN where the step kept nothing). 0, or -1 with err_message().
int nn_runner_run(nn_runner *r, int kind, nn_step_body body, void *ctx, int n_inputs,
                  tensor *const *inputs, double *values, int n_values);
// Inside a body: one update on `loss` (zero the gradients first), the loss kept in `slot` and
// named `what` in messages. Outside a run (r NULL or not running) the loss is read at once.
int nn_step_minimize(nn_runner *r, nn_optimizer *o, tensor *loss, int slot, const char *what);
// Inside a body: a scalar kept in `slot` (a loss's parts, a metric), read with the others.
int nn_step_report(nn_runner *r, tensor *value, int slot, const char *what);
bool nn_runner_running(const nn_runner *r); // inside nn_runner_run's body

// Whether later CUDA steps replay graphs: false on the CPU, with graphs off, or after a
// capture failed; nn_runner_fallback then says why ("" when nothing failed).
bool nn_runner_graphs(const nn_runner *r);
const char *nn_runner_fallback(const nn_runner *r);
void nn_runner_set_graphs(nn_runner *r, bool on);      // turning them off frees the graphs
bool nn_runner_captured(const nn_runner *r, int kind); // kind has a graph
int64_t nn_runner_replays(const nn_runner *r, int kind);
