// A run folder: what banis-train writes into (checkpoint_latest, periodic checkpoints,
// metrics.csv, TensorBoard events, samples/, gmi.md), and the rules that keep two runs from
// mixing in one: a fresh run never writes into a folder that holds one, one process at a time
// holds a folder (a lock), a killed run's temporaries are cleaned up, a resumed run's metrics
// continue from its checkpoint's step.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char dir[1024];    // the folder the run writes into
    int lock_fd;       // the lock's descriptor, held while the run lasts (-1: none)
    bool moved;        // the folder asked for held a run: dir is the first free "-N" beside it
    int stale_removed; // temporary checkpoint files a killed run left, removed
} banis_run_folder;

// Whether dir holds a run (a checkpoint_latest or a metrics.csv).
bool banis_run_holds(const char *dir);
// Opens `want` for this process: creates it (and its samples/ folder), takes its lock and
// removes the temporaries a killed run left. A fresh run (`resume` false) whose folder holds a
// run is refused when `exact` (the user named the folder), and otherwise goes to the first of
// want-2, want-3, ... that holds none. -1 with err_message() saying why (the folder that holds a
// run, the process that holds the lock, a folder that cannot be made).
int banis_run_open(banis_run_folder *f, const char *want, bool resume, bool exact);
void banis_run_close(banis_run_folder *f); // releases the lock
// Drops the rows of metrics.csv at `path` past `step` (a resumed run writes them again, so no
// step appears twice); the header stays. Returns the rows dropped (0 without the file), or -1.
int banis_run_truncate_metrics(const char *path, int64_t step);
// Keeps the newest `keep` periodic checkpoints in dir (checkpoint_step_NNNNNN.safetensors: the
// names sort by step); checkpoint_latest is never touched. Returns how many it removed.
int banis_run_prune_checkpoints(const char *dir, int keep);
