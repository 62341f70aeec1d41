// The named settings banis-train and banis-eval share: whose numbers each preset is, the
// networks' sizes, BANIS's schedule, the data set's size and, for banis-eval, the baselines'
// budgets.
//   paper      the paper's sizes, rates and 17k + 13k + 10k steps (SGD 1e-4 for S and C,
//              halved for the last stage); baselines as long as BANIS
//   reference  the authors' code: SGD 5e-5, the halving never taking effect, G's batch-norm
//              statistics shared by z and codes
//   cpu        this project's schedule for minutes on 2 CPU cores: a quarter of the channels,
//              batch 16, 200 + 200 + 80 steps, Adam for S and C
//   cpu-long   the same for about 40 minutes: 600 + 4000 + 2000 steps, over 12,000 pairs (10
//              passes over the training split; over 1,200 the networks memorise them)
//   gpu-short  the paper's networks and batch for about 3 minutes of steps on an H200 (the
//              GPU check's training run): 800 + 600 + 200 steps at the cpu preset's rates,
//              over 24,000 pairs
//   tiny       the tests': seconds
#pragma once
#include <stdbool.h>

#include "model.h"

typedef struct {
    const char *name;
    banis_arch arch;
    banis_schedule sched;
    int n_synthetic; // pairs of synthetic embryos (the built-in data set)
    // banis-eval's baselines: steps of Cycle-GAN and of the Auto-Encoder (batch sched.batch),
    // their Adam rate (beta1 0.5), Cycle-GAN's width (the Auto-Encoder has BANIS's)
    int64_t cyclegan_steps, autoencoder_steps;
    double cyclegan_width;
    double baseline_lr;
} banis_preset;

#define BANIS_PRESETS 6
extern const char *const banis_preset_names[BANIS_PRESETS];

// The preset called `name`; false (and *p untouched) when there is none.
bool banis_preset_get(const char *name, banis_preset *p);
