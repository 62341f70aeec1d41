// CUDA graphs (ops/cuda/cuda.h): capture the backend's launches and device copies, replay
// them with one call, each replay's random numbers moved on by a device delta per generator.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../tensor/error.h"
#include "cuda_internal.h"
#include "kernels/abi.h"

cuda_capture_state cuda_capture;
// The graphs' random-stream deltas, CUDA_GRAPH_MAX_RNGS to a slice, in one block made at start:
// slice 0 stays zero (every launch outside a graph reads it), slices 1.. are live graphs'
// (taken and zeroed by a device copy of slice 0 at capture: capturing allocates nothing).
#define DELTA_SLICES 64
unsigned long long *cuda_zero_delta;
static uint64_t slices_used = 1;

int cuda_graph_init(void) {
    static const unsigned long long zeros[DELTA_SLICES * CUDA_GRAPH_MAX_RNGS];
    cuda_zero_delta = cuda_alloc(sizeof zeros);
    return !cuda_zero_delta || cuda_copy_from_host(cuda_zero_delta, zeros, sizeof zeros) ? -1 : 0;
}

void backend_graph_free(backend_graph *g) {
    if (!g) return;
    if (g->exec) cuda_rt.dev->graph_free(g->exec);
    cuda_alloc_graph_freed(g);
    free(g->blocks);
    if (g->deltas)
        slices_used &= ~((uint64_t)1 << ((g->deltas - cuda_zero_delta) / CUDA_GRAPH_MAX_RNGS));
    free(g);
}

int backend_cuda_capture_begin(int n_rngs, rng *const *rngs) {
    if (!backend_cuda()) return -1;
    if (cuda_capture.g) {
        err_set("CUDA graph capture: a capture is in progress already");
        return -1;
    }
    if (n_rngs > CUDA_GRAPH_MAX_RNGS) {
        err_set("CUDA graph capture: %d random generators named, at most %d", n_rngs,
                CUDA_GRAPH_MAX_RNGS);
        return -1;
    }
    int slice = 1;
    while (slice < DELTA_SLICES && (slices_used >> slice & 1)) slice++;
    if (slice == DELTA_SLICES) {
        err_set("CUDA graph capture: %d graphs exist already (free one first)", DELTA_SLICES - 1);
        return -1;
    }
    backend_graph *g = calloc(1, sizeof *g);
    if (!g) {
        err_set("CUDA graph capture: out of host memory");
        return -1;
    }
    g->deltas = cuda_zero_delta + slice * CUDA_GRAPH_MAX_RNGS;
    slices_used |= (uint64_t)1 << slice;
    if (cuda_copy_device(g->deltas, cuda_zero_delta,
                         CUDA_GRAPH_MAX_RNGS * sizeof *cuda_zero_delta)) {
        backend_graph_free(g);
        return -1;
    }
    g->n_rngs = n_rngs;
    for (int i = 0; i < n_rngs; i++) {
        g->rngs[i] = rngs[i];
        g->start[i] = rngs[i]->offset;
    }
    // the graph's last kernel, launched once now (advancing nothing), so that its module is
    // loaded before the capture: a capture loads nothing
    void *k = n_rngs ? cuda_fixed_kernel("advance_u64") : NULL;
    cuda_advance_args none = {.n = 0};
    void *args[] = {&g->deltas, &none};
    if (n_rngs && (!k || cuda_launch(k, "graph: advance random streams", d3(1, 1, 1),
                                     d3(CUDA_GRAPH_MAX_RNGS, 1, 1), args))) {
        backend_graph_free(g);
        return -1;
    }
    if (cuda_plan_start() || cuda_rt.dev->capture_begin()) {
        cuda_plan_abandon();
        backend_graph_free(g);
        return -1;
    }
    cuda_capture.g = g;
    cuda_capture.failed = false;
    cuda_capture.n_allocated = 0;
    return 0;
}

backend_graph *backend_cuda_capture_end(void) {
    backend_graph *g = cuda_capture.g;
    if (!g) {
        err_set("CUDA graph capture: no capture in progress");
        return NULL;
    }
    // last node: each generator's device delta moves by what one run of the step drew
    cuda_advance_args a = {.n = g->n_rngs};
    for (int i = 0; i < g->n_rngs; i++) a.by[i] = g->advance[i] = g->rngs[i]->offset - g->start[i];
    void *k = g->n_rngs ? cuda_fixed_kernel("advance_u64") : NULL;
    void *args[] = {&g->deltas, &a};
    if (g->n_rngs && (!k || cuda_launch(k, "graph: advance random streams", d3(1, 1, 1),
                                        d3(CUDA_GRAPH_MAX_RNGS, 1, 1), args)))
        cuda_capture.failed = true;
    char why[512] = "";
    if (cuda_capture.failed) snprintf(why, sizeof why, "%s", err_message());
    int rc = cuda_rt.dev->capture_end(&g->exec);
    cuda_capture.g = NULL;
    cuda_alloc_capture_done(g);
    if (rc || cuda_capture.failed) {
        if (why[0]) err_set("%s", why);
        err_prefix("CUDA graph capture: ");
        backend_graph_free(g);
        return NULL;
    }
    return g;
}

int backend_graph_launch(backend_graph *g) {
    // the device's deltas must be each generator's offset past the capture's start: they are,
    // unless something else drew from a generator since the last replay (then one upload)
    unsigned long long want[CUDA_GRAPH_MAX_RNGS] = {0};
    bool stale = false;
    for (int i = 0; i < g->n_rngs; i++) {
        want[i] = g->rngs[i]->offset - g->start[i];
        stale |= want[i] != g->dev_delta[i];
    }
    if (stale && cuda_copy_from_host(g->deltas, want, sizeof want)) return -1;
    for (size_t i = 0; i < g->n_blocks; i++) cuda_rt.dev->park(g->blocks[i].ptr, false);
    int rc = cuda_rt.dev->graph_launch(g->exec);
    for (size_t i = 0; i < g->n_blocks; i++) cuda_rt.dev->park(g->blocks[i].ptr, true);
    if (rc) return -1;
    cuda_rt.counters.graph_launches++;
    for (int i = 0; i < g->n_rngs; i++) {
        g->dev_delta[i] = want[i] + g->advance[i];
        g->rngs[i]->offset += g->advance[i];
    }
    g->replays++;
    return 0;
}
