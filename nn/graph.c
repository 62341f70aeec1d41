// CUDA graphs for training steps (graph.h): capture, the first run, replays.
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/backend.h"
#include "../tensor/error.h"

#define MAX_OPTS 32

struct nn_graph {
    backend_graph *g;
    int n_opts;
    nn_optimizer *opts[MAX_OPTS];
    int64_t advance[MAX_OPTS]; // each optimizer's steps per run of the step
    int64_t replays;
};

nn_graph *nn_graph_capture(nn_step_fn step, void *ctx, int n_rngs, rng *const *rngs, int n_opts,
                           nn_optimizer *const *opts) {
    if (n_opts > MAX_OPTS) {
        err_set("graph capture: %d optimizers named, at most %d", n_opts, MAX_OPTS);
        return NULL;
    }
    nn_graph *ng = calloc(1, sizeof *ng);
    if (!ng) {
        err_set("graph capture: out of host memory");
        return NULL;
    }
    if (n_rngs > 8) {
        err_set("graph capture: %d random generators named, at most 8", n_rngs);
        free(ng);
        return NULL;
    }
    ng->n_opts = n_opts;
    uint64_t offsets[8];
    for (int i = 0; i < n_rngs; i++) offsets[i] = rngs[i]->offset;
    for (int i = 0; i < n_opts; i++) {
        ng->opts[i] = opts[i];
        ng->advance[i] = nn_optimizer_steps(opts[i]);
    }
    if (backend_cuda_capture_begin(n_rngs, rngs)) {
        free(ng);
        return NULL;
    }
    int rc = step(ctx);
    char why[1024] = "";
    if (rc) snprintf(why, sizeof why, "%s", err_message());
    ng->g = backend_cuda_capture_end();
    if (rc || !ng->g) {
        // nothing captured ran: the device is as it was; so is the host's side of the step
        snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s", rc ? "" : " ",
                 rc ? "" : err_message());
        for (int i = 0; i < n_rngs; i++) rngs[i]->offset = offsets[i];
        for (int i = 0; i < n_opts; i++)
            nn_optimizer_advance_steps(opts[i], ng->advance[i] - nn_optimizer_steps(opts[i]));
        err_set("graph capture: %s%s", rc ? "the step failed: " : "", why);
        nn_graph_free(ng);
        return NULL;
    }
    for (int i = 0; i < n_opts; i++) ng->advance[i] = nn_optimizer_steps(opts[i]) - ng->advance[i];
    if (backend_graph_launch(ng->g, false)) {
        err_prefix("graph: first run: ");
        nn_graph_free(ng);
        return NULL;
    }
    return ng;
}

int nn_graph_replay(nn_graph *ng) {
    if (backend_graph_launch(ng->g, true)) {
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
