// A checkpoint gathers what a training run must save to continue exactly: modules'
// parameters and buffers, optimizers' state and step counts, RNG states and any other
// metadata. The same description saves and loads, so both always agree.
#pragma once
#include "nn.h"
#include "safetensors.h"

#define NN_CKPT_MAX 32

typedef struct {
    nn_tensor_list tensors;
    st_meta meta[NN_CKPT_MAX * 2];
    int n_meta;
    nn_optimizer *optimizers[NN_CKPT_MAX];
    int n_optimizers;
    rng *rngs[NN_CKPT_MAX];
    char rng_names[NN_CKPT_MAX][32];
    int n_rngs;
    int dropped; // entries that could not be recorded (more than NN_CKPT_MAX): save and load refuse
} nn_checkpoint;

void nn_ckpt_add_module(nn_checkpoint *c, const char *prefix, nn_module *m);
void nn_ckpt_add_optimizer(nn_checkpoint *c, nn_optimizer *o);
void nn_ckpt_add_rng(nn_checkpoint *c, const char *name, rng *r);
void nn_ckpt_set_meta(nn_checkpoint *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int nn_ckpt_save(nn_checkpoint *c, const char *path);
// Loads into everything that was added; optimizer steps and RNG states come back too.
// `f` stays open for the caller to read further metadata (st_close it).
int nn_ckpt_load(nn_checkpoint *c, const char *path, st_file **f);
void nn_ckpt_free(nn_checkpoint *c);
