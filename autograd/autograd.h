// Reverse-mode automatic differentiation. Ops record a node on their output as they run
// (when grad mode is on and an input requires a gradient); ag_backward walks the graph in
// reverse topological order, accumulates gradients into the leaves that require them, and
// frees the graph (nodes and what they saved), so building it every step leaks nothing.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "../tensor/tensor.h"

#define AG_MAX_INPUTS 8

typedef struct ag_node ag_node;

// Fills grad_in[k] (same shape as input k) for each input that requires a gradient; leaves
// the others NULL. Runs with grad mode off.
typedef int (*ag_backward_fn)(ag_node *node, tensor *grad_out, tensor **grad_in);

struct ag_node {
    const char *op; // for messages
    ag_backward_fn backward;
    int n_inputs;
    tensor *inputs[AG_MAX_INPUTS]; // retained
    void *ctx;                     // op parameters, owned (freed with the node)
    long mark;                     // scratch for the topological sort
};

// Records `op` on `out` if grad mode is on and any input requires a gradient. `ctx` (of
// `ctx_size` bytes) is copied. Returns 0, or -1 on allocation failure.
int ag_record(tensor *out, const char *op, ag_backward_fn backward, int n_inputs,
              tensor *const *inputs, const void *ctx, size_t ctx_size);
bool ag_any_requires_grad(int n, tensor *const *inputs);

// Backpropagates from `root`. `seed` is the gradient of root (NULL: ones, which requires root
// to have one element). Returns 0 or -1 (message names the op whose backward failed).
int ag_backward(tensor *root, tensor *seed);

// Grad mode (on by default, per thread). Returns the previous setting.
bool ag_set_grad_enabled(bool enabled);
bool ag_grad_enabled(void);

void ag_node_release(ag_node *node);
// Marks a leaf as requiring a gradient (or not). Returns t.
tensor *ag_requires_grad(tensor *t, bool requires);
// Zeroes t's accumulated gradient in place (the buffer stays where it is).
void ag_zero_grad(tensor *t);
