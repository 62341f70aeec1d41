// CUDA graphs for training steps (graph.h): the step's run and its capture, then replays.
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/backend.h"
#include "../ops/cuda/cuda.h"
#include "../tensor/error.h"

#define MAX_OPTS 32

struct nn_graph {
    backend_graph *g;
    int n_opts;
    nn_optimizer *opts[MAX_OPTS];
    int64_t advance[MAX_OPTS]; // each optimizer's steps per run of the step
    int64_t replays;
};

static void put_back(int n_rngs, rng *const *rngs, const uint64_t *offsets, int n_opts,
                     nn_optimizer *const *opts, const int64_t *steps) {
    for (int i = 0; i < n_rngs; i++) rngs[i]->offset = offsets[i];
    for (int i = 0; i < n_opts; i++)
        nn_optimizer_advance_steps(opts[i], steps[i] - nn_optimizer_steps(opts[i]));
}

int nn_graph_capture(nn_graph **graph, char *why, size_t why_size, nn_step_fn step, void *ctx,
                     int n_rngs, rng *const *rngs, int n_opts, nn_optimizer *const *opts) {
    *graph = NULL;
    if (why_size) why[0] = 0;
    if (n_opts > MAX_OPTS || n_rngs > 8) {
        err_set("graph capture: %d optimizers and %d random generators named, at most %d and 8",
                n_opts, n_rngs, MAX_OPTS);
        return -1;
    }
    // the step's run, as it is
    if (step(ctx)) return -1;
    nn_graph *ng = calloc(1, sizeof *ng);
    if (!ng) {
        snprintf(why, why_size, "graph capture: out of host memory");
        return 0;
    }
    ng->n_opts = n_opts;
    uint64_t offsets[8];
    for (int i = 0; i < n_rngs; i++) offsets[i] = rngs[i]->offset;
    for (int i = 0; i < n_opts; i++) {
        ng->opts[i] = opts[i];
        ng->advance[i] = nn_optimizer_steps(opts[i]);
    }
    int64_t steps[MAX_OPTS];
    memcpy(steps, ng->advance, sizeof steps);
    // Captured twice: the first capture's allocations recorded, that graph dropped, and the
    // second capture's blocks laid out from the record (ops/cuda/cuda.h), so that the graph's
    // private pool is near the step's peak of temporaries. A capture runs nothing, so the
    // host's counts go back to where the step's run left them after each.
    char failed[1024] = "";
    for (int pass = 0; pass < 2; pass++) {
        backend_cuda_plan_record(pass == 0);
        if (backend_cuda_capture_begin(n_rngs, rngs)) {
            backend_cuda_plan_drop();
            snprintf(why, why_size, "%s", err_message());
            free(ng);
            return 0;
        }
        int rc = step(ctx);
        if (rc)
            snprintf(failed, sizeof failed, "the step failed while captured: %s", err_message());
        ng->g = backend_cuda_capture_end();
        backend_cuda_plan_record(false);
        if (!rc && !ng->g) snprintf(failed, sizeof failed, "%s", err_message());
        for (int i = 0; i < n_opts; i++) ng->advance[i] = nn_optimizer_steps(opts[i]) - steps[i];
        put_back(n_rngs, rngs, offsets, n_opts, opts, steps);
        if (rc || !ng->g) {
            backend_cuda_plan_drop();
            snprintf(why, why_size, "%s", failed);
            nn_graph_free(ng);
            return 0;
        }
        if (pass == 0) {
            backend_graph_free(ng->g);
            ng->g = NULL;
        }
    }
    *graph = ng;
    return 0;
}

int nn_graph_replay(nn_graph *ng) {
    if (backend_graph_launch(ng->g)) {
        err_prefix("graph replay: ");
        return -1;
    }
    for (int i = 0; i < ng->n_opts; i++) nn_optimizer_advance_steps(ng->opts[i], ng->advance[i]);
    ng->replays++;
    return 0;
}

int64_t nn_graph_replays(const nn_graph *ng) { return ng->replays; }

void nn_graph_free(nn_graph *ng) {
    if (!ng) return;
    backend_graph_free(ng->g);
    free(ng);
}
