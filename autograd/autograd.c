#include "autograd.h"

#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "../tensor/error.h"

static _Thread_local bool grad_disabled;

bool ag_set_grad_enabled(bool enabled) {
    bool prev = !grad_disabled;
    grad_disabled = !enabled;
    return prev;
}
bool ag_grad_enabled(void) { return !grad_disabled; }

tensor *ag_requires_grad(tensor *t, bool requires) {
    if (t) t->requires_grad = requires;
    return t;
}

tensor *ag_leaf_grad(const tensor *t) {
    return t && !t->node && t->requires_grad && t->grad && tensor_is_contiguous(t->grad) &&
                   t->grad->dtype == t->dtype && tensor_same_shape(t->grad, t)
               ? t->grad
               : NULL;
}

void ag_zero_grad(tensor *t) {
    // in place: a placed parameter's gradient is a view of its module's flat buffer and must
    // stay one (the optimizer reads the buffer)
    if (t && t->grad) tensor_fill_(t->grad, 0);
}

bool ag_any_requires_grad(int n, tensor *const *inputs) {
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

int ag_record(tensor *out, const char *op, ag_backward_fn backward, int n_inputs,
              tensor *const *inputs, const void *ctx, size_t ctx_size) {
    if (!out || grad_disabled || !ag_any_requires_grad(n_inputs, inputs)) return 0;
    ag_node *n = calloc(1, sizeof *n);
    if (!n) {
        err_set("%s: out of host memory recording the graph", op);
        return -1;
    }
    n->op = op;
    n->backward = backward;
    n->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) n->inputs[i] = tensor_retain(inputs[i]);
    if (ctx_size) {
        n->ctx = malloc(ctx_size);
        if (!n->ctx) {
            ag_node_release(n);
            err_set("%s: out of host memory recording the graph", op);
            return -1;
        }
        memcpy(n->ctx, ctx, ctx_size);
    }
    tensor_set_node_release(ag_node_release); // before the first tensor holds a node
    if (out->storage && !out->storage->tag.op) out->storage->tag = (tensor_tag){op, false};
    out->node = n;
    out->requires_grad = true;
    return 0;
}

void ag_node_release(ag_node *node) {
    if (!node) return;
    for (int i = 0; i < node->n_inputs; i++) tensor_release(node->inputs[i]);
    free(node->ctx);
    free(node);
}

// Topological order of the tensors with nodes reachable from root: inputs before outputs.
typedef struct {
    tensor **items;
    size_t n, cap;
} tensor_list;

static int push(tensor_list *l, tensor *t) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        tensor **items = realloc(l->items, cap * sizeof *items);
        if (!items) return -1;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = t;
    return 0;
}

static int topo_sort(tensor *root, tensor_list *order) {
    static _Atomic long epoch_counter = 1;
    long epoch = ++epoch_counter;
    // Iterative post-order DFS: the stack holds (tensor, next input to visit).
    typedef struct {
        tensor *t;
        int next;
    } frame;
    size_t cap = 64, top = 0;
    frame *stack = malloc(cap * sizeof *stack);
    if (!stack) return -1;
    root->node->mark = epoch;
    stack[top++] = (frame){root, 0};
    while (top) {
        frame *f = &stack[top - 1];
        ag_node *n = f->t->node;
        if (f->next < n->n_inputs) {
            tensor *in = n->inputs[f->next++];
            if (in->node && in->node->mark != epoch) {
                in->node->mark = epoch;
                if (top == cap) {
                    cap *= 2;
                    frame *s = realloc(stack, cap * sizeof *stack);
                    if (!s) {
                        free(stack);
                        return -1;
                    }
                    stack = s;
                }
                stack[top++] = (frame){in, 0};
            }
        } else {
            if (push(order, f->t)) {
                free(stack);
                return -1;
            }
            top--;
        }
    }
    free(stack);
    return 0;
}

// leaf->grad += g, in place when a gradient buffer exists (optimizers preallocate them as
// views into one flat buffer), else a fresh copy owned by the leaf.
static int accumulate_leaf(tensor *leaf, tensor *g) {
    if (leaf->grad) { // one pass, in place: grad = grad + g
        ew_program p;
        ew_init(&p, 2);
        ew_output(&p, ew_add(&p, ew_input(&p, 0), ew_input(&p, 1)));
        return op_ew_into("gradient accumulation", &p, 1, &leaf->grad, 2,
                          (tensor *[]){leaf->grad, g});
    }
    tensor *copy = tensor_clone(g);
    if (!copy) return -1;
    leaf->grad = tensor_keep(copy);
    return 0;
}

// The walk. Every tensor of the order is retained while the walk needs it; after a node's
// backward has run, the node and what it saved are released (unless the graph is kept), then
// the walk's own reference to the tensor: what only the graph held is freed node by node, as
// PyTorch frees a graph's saved tensors without retain_graph.
static int walk(tensor *root, tensor *seed, bool keep_graph) {
    if (!root) return -1;
    if (!root->requires_grad) {
        err_set("backward: the tensor does not require a gradient (nothing it depends on does)");
        return -1;
    }
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    int rc = -1;
    tensor_list order = {0};
    tensor **grads = NULL;
    if (!seed) {
        if (tensor_numel(root) != 1) {
            err_set("backward: root has %lld elements; pass a seed gradient",
                    (long long)tensor_numel(root));
            goto done;
        }
        seed = tensor_ones(root->dtype, root->ndim, root->shape, tensor_device(root));
        if (!seed) goto done;
    } else if (!tensor_same_shape(seed, root)) {
        err_set("backward: seed gradient's shape differs from the root's");
        goto done;
    }
    if (!root->node) { // a leaf: its gradient is the seed
        rc = accumulate_leaf(root, seed);
        goto done;
    }
    if (topo_sort(root, &order)) {
        err_set("backward: out of host memory sorting the graph");
        goto done;
    }
    for (size_t i = 0; i < order.n; i++) tensor_retain(order.items[i]);
    grads = calloc(order.n, sizeof *grads);
    if (!grads) {
        err_set("backward: out of host memory");
        goto done;
    }
    for (size_t i = 0; i < order.n; i++) order.items[i]->node->mark = (long)i;
    grads[order.n - 1] = seed;
    for (size_t i = order.n; i-- > 0;) {
        tensor *t = order.items[i];
        ag_node *n = t->node;
        if (grads[i]) { // else it does not reach the root
            tensor *gin[AG_MAX_INPUTS] = {0};
            tensor_scope_begin();
            tensor_tag outer_tag = tensor_tag_set((tensor_tag){n->op, true});
            int failed = n->backward(n, grads[i], gin);
            for (int k = 0; k < n->n_inputs && !failed; k++) {
                tensor *in = n->inputs[k];
                if (!gin[k] || !in->requires_grad) continue;
                if (!in->node) {
                    failed = accumulate_leaf(in, gin[k]);
                    continue;
                }
                size_t j = (size_t)in->node->mark;
                if (grads[j]) {
                    tensor *sum = op_add(grads[j], gin[k]);
                    if (!sum) {
                        failed = -1;
                        break;
                    }
                    tensor_release(grads[j]);
                    grads[j] = tensor_retain(sum);
                } else
                    grads[j] = tensor_retain(gin[k]);
            }
            tensor_tag_set(outer_tag);
            tensor_scope_end();
            if (failed) {
                err_prefix("backward of %s: ", n->op);
                goto done;
            }
            if (i != order.n - 1) tensor_release(grads[i]);
            grads[i] = NULL;
        }
        if (!keep_graph) { // the node's saved tensors are not needed any more
            t->node = NULL;
            ag_node_release(n);
        }
        order.items[i] = NULL;
        tensor_release(t);
    }
    rc = 0;
done:
    if (grads)
        for (size_t i = 0; i + 1 < order.n; i++) tensor_release(grads[i]);
    // What the walk did not reach (it failed): the graph is freed unless kept. Every node is
    // detached first (releasing one may free tensors later in the list), then the walk's
    // references are dropped.
    ag_node **nodes = !keep_graph && order.n ? calloc(order.n, sizeof *nodes) : NULL;
    for (size_t i = 0; i < order.n; i++) {
        if (!order.items[i] || keep_graph) continue;
        ag_node *n = order.items[i]->node;
        order.items[i]->node = NULL;
        if (nodes) nodes[i] = n;
    }
    for (size_t i = 0; nodes && i < order.n; i++) ag_node_release(nodes[i]);
    free(nodes);
    for (size_t i = 0; i < order.n; i++) tensor_release(order.items[i]);
    free(grads);
    free(order.items);
    tensor_scope_end();
    ag_set_grad_enabled(prev);
    return rc;
}

int ag_backward(tensor *root, tensor *seed) { return walk(root, seed, false); }
int ag_backward_keeping_graph(tensor *root, tensor *seed) { return walk(root, seed, true); }
