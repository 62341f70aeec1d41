// A training step as a CUDA graph: issued once under capture, then replayed with one call per
// step, so the host no longer issues ~1,500 launches a step (PyTorch's torch.cuda.graphs).
// What the step may do: launch device work on tensors that stay allocated (parameters, the
// optimizers' state, inputs it is handed the same tensors for at every step: copy each new
// batch into them first), draw random numbers from the generators named here, and step the
// optimizers named here. What it may not: read anything back or upload anything (refused,
// naming the copy), or change its structure between steps (a different schedule stage is a
// different graph). Values that change every step already live on the device: the optimizers'
// step counts and rates (nn/optim.c) and each generator's offset (a device delta the graph
// advances), so a replay computes exactly what running the step again would.
#pragma once
#include "../tensor/rng.h"
#include "nn.h"

typedef struct nn_graph nn_graph;
typedef int (*nn_step_fn)(void *ctx);

// Runs step(ctx) once as it is: this is the step's run (every kernel it needs is loaded, the
// blocks of its temporaries are left in the cache). Then captures it as a graph for the runs
// after, twice: the first capture's allocations are recorded and that graph dropped, and the
// second's blocks are laid out from the record before it starts (blocks whose lifetimes do not
// overlap share memory), so the graph's private pool is near the step's peak of temporaries;
// the cache the runs before left is then given back to the device. A capture runs nothing on
// the device and allocates nothing, and the host side it moves (the named generators'
// offsets, the named optimizers' counts) is put back where the run left it. Returns the run's result: -1 with err_message() if the step failed (no graph then).
// 0 when it ran: *graph is the graph, or NULL when the step cannot be captured, with the reason
// in why[] (the step did something a graph cannot hold, or the device refused the capture);
// later steps can then run as they are.
int nn_graph_capture(nn_graph **graph, char *why, size_t why_size, nn_step_fn step, void *ctx,
                     int n_rngs, rng *const *rngs, int n_opts, nn_optimizer *const *opts);
// One more run of the step: the graph on the device, then the host's counts moved on.
int nn_graph_replay(nn_graph *g);
int64_t nn_graph_replays(const nn_graph *g); // runs after the captured one
void nn_graph_free(nn_graph *g);
