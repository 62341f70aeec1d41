// Reverse-mode automatic differentiation. Ops record a node on their output as they run
// (when grad mode is on and an input requires a gradient); the node retains the inputs its
// backward reads. ag_backward walks the graph in reverse topological order, accumulates
// gradients into the leaves that require them, and frees the graph as it goes: a node, and
// what it saved, is released as soon as its own backward has run, so a tensor that only the
// graph holds is freed then (building the graph every step leaks nothing, and the walk's peak
// is not the whole graph plus its gradients).
//
// Who holds an activation is the scope rule of tensor/: a tensor made inside a scope lives
// until the scope ends, whatever the graph does. A training step that wants each activation
// freed during the backward ends the forward's scope before it, keeping only the loss:
//     tensor_scope_begin();
//     tensor *loss = model_loss(...);
//     tensor_scope_end_keeping(1, &loss); // the graph now holds the activations alone
//     ag_backward(loss, NULL);             // and releases them node by node
// (nn_minimize's callers in banis/ do this.)
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "../tensor/tensor.h"

#define AG_MAX_INPUTS 8

typedef struct ag_node ag_node;

// Fills grad_in[k] (same shape as input k) for each input that requires a gradient; leaves
// the others NULL. Runs with grad mode off. A backward may instead add input k's gradient to
// ag_leaf_grad(input k) itself, in the kernel that computes it, and leave grad_in[k] NULL.
typedef int (*ag_backward_fn)(ag_node *node, tensor *grad_out, tensor **grad_in);

struct ag_node {
    const char *op; // for messages
    ag_backward_fn backward;
    int n_inputs;
    tensor *inputs[AG_MAX_INPUTS]; // retained: what the backward reads
    void *ctx;                     // op parameters, owned (freed with the node)
    long mark;                     // scratch for the topological sort
};

// Records `op` on `out` if grad mode is on and any input requires a gradient. `ctx` (of
// `ctx_size` bytes) is copied. Returns 0, or -1 on allocation failure.
int ag_record(tensor *out, const char *op, ag_backward_fn backward, int n_inputs,
              tensor *const *inputs, const void *ctx, size_t ctx_size);
bool ag_any_requires_grad(int n, tensor *const *inputs);

// Backpropagates from `root`. `seed` is the gradient of root (NULL: ones, which requires root
// to have one element). Returns 0 or -1 (message names the op whose backward failed); on
// failure the graph is freed too.
int ag_backward(tensor *root, tensor *seed);
// The same, keeping the graph (PyTorch's retain_graph=True): it can be walked again, and its
// saved tensors live until the tensors that hold its nodes are released.
int ag_backward_keeping_graph(tensor *root, tensor *seed);

// Grad mode (on by default, per thread). Returns the previous setting.
bool ag_set_grad_enabled(bool enabled);
bool ag_grad_enabled(void);

void ag_node_release(ag_node *node);
// Marks a leaf as requiring a gradient (or not). Returns t.
tensor *ag_requires_grad(tensor *t, bool requires);
// The gradient buffer a backward may accumulate t's gradient into by itself (saving the walk's
// separate `grad += g` pass): t's grad when t is a leaf that requires a gradient and has a
// contiguous buffer already (optimizers preallocate them); NULL otherwise.
tensor *ag_leaf_grad(const tensor *t);
// Zeroes t's accumulated gradient in place (the buffer stays where it is).
void ag_zero_grad(tensor *t);
