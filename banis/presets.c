#include "presets.h"

#include <string.h>

const char *const banis_preset_names[BANIS_PRESETS] = {"paper",    "reference", "cpu",
                                                       "cpu-long", "gpu-short", "tiny"};

// The rates of the short schedules (hundreds or a few thousand steps, not 40,000): Adam 1e-4
// for D and 2e-4 for G (the paper's 2e-5, and 2e-5 / 1e-5), and Adam 1e-3 for S and C (the paper's SGD needs its
// 23,000 S+C steps: at any rate that does not diverge it leaves the reconstructions at the
// images' mean within these budgets; docs/results/experiments.md).
static void short_schedule_rates(banis_schedule *s) {
    s->lr_d[0] = s->lr_d[1] = 1e-4;
    s->lr_g[0] = s->lr_g[1] = 2e-4;
    s->sc_adam = true;
    s->lr_sc = 1e-3;
}

bool banis_preset_get(const char *name, banis_preset *p) {
    int k = 0;
    while (k < BANIS_PRESETS && strcmp(name, banis_preset_names[k])) k++;
    if (k == BANIS_PRESETS) return false;
    *p = (banis_preset){.name = banis_preset_names[k],
                        .arch = banis_arch_paper(),
                        .sched = banis_schedule_paper(),
                        .n_synthetic = 2250, // 50 stacks x 15 slices x 3 embryos, as the paper's
                        .baseline_lr = 2e-4};
    banis_schedule *s = &p->sched;
    if (!strcmp(name, "reference")) {
        s->lr_sc = 5e-5;
        s->sc_decay = 1;
        p->arch.g_bn_sets = 1;
    } else if (!strcmp(name, "cpu") || !strcmp(name, "cpu-long")) {
        // Minutes on 2 cores: a quarter of the channels, batch 16, the short schedules' rates
        p->arch.width = 0.25;
        s->batch = 16;
        short_schedule_rates(s);
        p->n_synthetic = 1200;
        s->warmup_steps = 200;
        s->stage2_steps = 200;
        s->stage3_steps = 80;
        if (!strcmp(name, "cpu-long")) { // about 40 minutes on 2 cores
            s->warmup_steps = 600;
            s->stage2_steps = 4000;
            s->stage3_steps = 2000;
            // 6,600 steps of 16 pairs are 98 passes over 1,080 training pairs: the Auto-Encoder
            // memorises them (its test reconstructions are training embryos' walls; membrane
            // Dice 0.25). Over 10,800 pairs, 10 passes: 0.43 (docs/results/experiments.md).
            p->n_synthetic = 12000;
        }
    } else if (!strcmp(name, "gpu-short")) {
        // The paper's networks and batch for about 3 minutes of steps on an H200: 800 warm-up
        // steps at 25.6 ms and 800 full ones at 165.4 ms (eager, docs/gpu-runs 2026-11-25) are
        // 2.6 min, at the short schedules' rates, not the paper's. 24,000 pairs: 1,600 steps of
        // 128 are 9.5 passes over the training split (the cpu presets' bound of 10; more and
        // the networks memorise).
        short_schedule_rates(s);
        s->warmup_steps = 800;
        s->stage2_steps = 600;
        s->stage3_steps = 200;
        p->n_synthetic = 24000;
    } else if (!strcmp(name, "tiny")) { // for tests: seconds
        p->arch.width = 0.0625;
        p->arch.latent = 16;
        s->batch = 4;
        s->warmup_steps = 3;
        s->stage2_steps = 3;
        s->stage3_steps = 2;
        s->sc_adam = true; // as the cpu preset
        s->lr_sc = 1e-3;
        p->n_synthetic = 80; // 8 test pairs: banis-eval's Fig. 3 shows 6
    }
    // the baselines: as many steps as BANIS in all (the paper trains them "to converge"), but
    // on the cpu preset, where each has what it needs to learn within minutes
    p->cyclegan_steps = p->autoencoder_steps = banis_schedule_steps(s);
    p->cyclegan_width = p->arch.width;
    if (!strcmp(name, "cpu")) {
        // Cycle-GAN's generator at BANIS's width costs 1.7 s a step here (six residual blocks of
        // 64 channels at 16x16), four times BANIS's; at 1/8 width, 1000 steps take 11 minutes.
        // The Auto-Encoder's nucleus images form by 1500 steps (at 480 only its membranes do).
        p->cyclegan_width = 0.125;
        p->cyclegan_steps = 1000;
        p->autoencoder_steps = 1500;
    }
    return true;
}
