// Each update of a BANIS step frees what it made except what later updates read: the live
// bytes after it are what was held before plus exactly those (its loss, and for a Pioneer its
// z and generated images). Its forward's scope ends before the backward, so the walk frees the
// activations as it goes: an update peaks little above its forward's activations (the graph's,
// plus the backward's gradients in flight), where it peaked at all of them plus the backward's
// temporaries when the scope held them to the end. On any device.
// Shared by tests/test_banis.c (the CPU) and tests/test_cuda_emu.c (CUDA).
#pragma once
#include <check.h>
#include <stdio.h>

#include "../banis/model.h"
#include "../banis/data/dataset.h"

// The paper's networks at width 0.125 with an 8-value latent, batch 8, one warm-up step, and
// eight synthetic pairs to train on.
static banis_model *small_banis(tensor_device_type dev, banis_arch *a, banis_dataset **d) {
    *a = banis_arch_paper();
    a->width = 0.125;
    a->latent = 8;
    banis_schedule s = banis_schedule_paper();
    s.warmup_steps = 1;
    s.batch = 8;
    banis_model *m = banis_model_new(a, &s, TENSOR_F32, dev, 3);
    ck_assert_msg(m != NULL, "%s", err_message());
    synth_config sc = synth_defaults();
    *d = banis_synthetic(&sc, 8, 1);
    return m;
}

static void check_updates_free_what_they_made(tensor_device_type dev) {
    banis_arch a;
    banis_dataset *d;
    banis_model *m = small_banis(dev, &a, &d);
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    tensor_scope_begin();
    tensor *ta, *tb;
    ck_assert(!banis_batch(d, idx, 8, TENSOR_F32, dev, &ta, &tb));
    banis_losses l;
    ck_assert_msg(!banis_train_step(m, 1, ta, tb, &l), "%s", err_message()); // optimizer state
    const int64_t scalar = 4, images = 8 * BANIS_PIXELS * 4, z = 8 * a.latent * 4;
    for (int x = 0; x < 2; x++) {
        int64_t before = tensor_storage_live_bytes();
        tensor *gen;
        ck_assert_msg(!banis_pioneer_step(m, x, x ? tb : ta, &gen, &l), "%s", err_message());
        ck_assert_int_eq(tensor_storage_live_bytes() - before, z + images + 2 * scalar);
    }
    double loss;
    for (int x = 0; x < 2; x++) {
        int64_t before = tensor_storage_live_bytes();
        ck_assert_msg(!banis_successor_step(m, x, x ? ta : tb, x ? tb : ta, &loss), "%s",
                      err_message());
        ck_assert_int_eq(tensor_storage_live_bytes() - before, scalar);
    }
    // a Coordinator's forward alone (its activations, what the graph keeps), then its update
    int64_t before = tensor_storage_live_bytes();
    tensor_scope_begin();
    tensor *out = banis_coordinator(m, DOMAIN_A, tb);
    ck_assert_ptr_nonnull(out);
    int64_t forward = tensor_storage_live_bytes() - before;
    tensor_scope_end();
    ck_assert_int_eq(tensor_storage_live_bytes(), before);
    tensor_storage_reset_peak();
    ck_assert_msg(!banis_coordinator_step(m, DOMAIN_A, tb, &loss), "%s", err_message());
    int64_t peak = tensor_storage_peak_bytes() - before;
    ck_assert_int_eq(tensor_storage_live_bytes() - before, scalar);
    fprintf(stderr, "a Coordinator update: forward %.3f MiB, the update's peak %.3f MiB (%.2fx)\n",
            forward / 1048576.0, peak / 1048576.0, (double)peak / (double)forward);
    ck_assert_int_le(peak, forward + forward / 8);
    tensor_scope_end();
    banis_dataset_free(d);
    banis_model_free(m);
}
