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

// Runs step(ctx) under capture, then runs the captured graph once: this is the step's run
// (the host side of the step, its optimizers' counts and generators' offsets, moved during the
// capture). NULL with err_message() if the step failed or did something a graph cannot hold;
// then nothing of the step has run, and the generators' offsets and the optimizers' counts are
// put back as they were (the step can be run as it is instead).
nn_graph *nn_graph_capture(nn_step_fn step, void *ctx, int n_rngs, rng *const *rngs, int n_opts,
                           nn_optimizer *const *opts);
// One more run of the step: the graph on the device, then the host's counts moved on.
int nn_graph_replay(nn_graph *g);
int64_t nn_graph_replays(const nn_graph *g); // runs after the captured one
void nn_graph_free(nn_graph *g);
