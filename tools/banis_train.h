// banis-train's configuration (what a checkpoint records, so --resume needs no flags) and its
// command line: banis_train.c runs the training, banis_train_flags.c reads the flags.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "../banis/model.h"
#include "../nn/checkpoint.h"

typedef struct {
    char preset[16];
    char data[1024]; // "synthetic", a folder of raw images, or a prepared .safetensors
    int n_synthetic;
    banis_arch arch;
    banis_schedule sched;
    uint64_t seed;
    char device[8];
    char out[1024];
    int log_every, sample_every, ckpt_every, keep;
    int64_t max_steps;
    int score_pairs; // generated pairs scored at the end (BANIS_GEN_PAIRS; 0: none)
    bool no_graphs;  // --cuda-graphs off
} config;

typedef struct {
    const char *resume; // the run folder to continue, or NULL
    bool out_given;
    tensor_device_type dev;
    char ckpt_path[2048]; // the run's checkpoint_latest.safetensors
} invocation;

// What a run with --identical-gen off is called wherever it reports (its log and its gmi.md).
extern const char ABLATION_IDENTICAL_GEN[];

// Reads the command line (a resumed run's configuration from its checkpoint first). -1: go on;
// otherwise the exit code (0 after --help, 2 for a bad flag, 1 for an unreadable checkpoint).
int banis_train_parse_args(int argc, char **argv, config *c, invocation *inv);
// Records c in a checkpoint's metadata.
void banis_train_save_config(nn_checkpoint *ck, const config *c);
