// banis-train: trains BANIS on paired membrane/nuclei images (the built-in synthetic embryos
// by default), writing checkpoints, metrics (CSV + TensorBoard), sample grids and a GMI table.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tensor/clock.h"
#include "../tensor/files.h"
#include "../ops/backend.h"
#include "../ops/cuda/cuda.h"
#include "../tensor/error.h"
#include "../banis/model.h"
#include "../banis/presets.h"
#include "../banis/run.h"
#include "../nn/tensorboard.h"
#include "banis_train.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int s) {
    (void)s;
    interrupted = 1;
}

// checkpoint_latest holds everything a resume needs; periodic ones (`full` false) the weights
// and batch-norm statistics only, what banis-sample reads (a third of the bytes: no Adam moments).
static int save_checkpoint_as(banis_model *m, const config *c, int64_t step, const char *path,
                              bool full) {
    if (nn_check_finite(m->root)) { // never replace a good checkpoint with a poisoned one
        err_prefix("not writing %s: ", path);
        return -1;
    }
    nn_checkpoint ck = {0};
    if (full)
        banis_model_checkpoint(m, &ck);
    else
        nn_ckpt_add_module(&ck, "", m->root);
    banis_train_save_config(&ck, c);
    nn_ckpt_set_meta(&ck, "step", "%" PRId64, step);
    int rc = nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    return rc;
}

static int save_checkpoint(banis_model *m, const config *c, int64_t step, const char *path) {
    return save_checkpoint_as(m, c, step, path, true);
}

// A PNG file as a TensorBoard image (its size and colour type from the IHDR chunk).
static int tb_png_file(tb_writer *tb, const char *tag, const char *path, int64_t step) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *b = n > 33 ? malloc((size_t)n) : NULL;
    int rc = -1;
    if (b && fread(b, 1, (size_t)n, f) == (size_t)n && !memcmp(b + 12, "IHDR", 4)) {
        int w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19],
            h = (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23];
        int cs = b[25] == 2 ? 3 : b[25] == 6 ? 4 : b[25] == 4 ? 2 : 1;
        rc = tb_image(tb, tag, b, (size_t)n, w, h, cs, step);
    }
    free(b);
    fclose(f);
    return rc;
}

// Generated pairs from fixed z, and reconstructions of the first test pairs.
static int write_samples(banis_model *m, const banis_dataset *d, const banis_split *s, tensor *z,
                         const char *dir, int64_t step) {
    char path[4096];
    int rc = 0, n = (int)z->shape[0], k = s->n_test < 8 ? s->n_test : 8;
    float *ga = malloc(sizeof(float) * BANIS_PIXELS * (size_t)(n + 16)),
          *gb = malloc(sizeof(float) * BANIS_PIXELS * (size_t)(n + 16));
    nn_set_training(m->root, false);
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    tensor *A = banis_generate(m, DOMAIN_A, z), *B = banis_generate(m, DOMAIN_B, z);
    rc = !A || !B || tensor_to_host(tensor_cast(A, TENSOR_F32), ga) ||
         tensor_to_host(tensor_cast(B, TENSOR_F32), gb);
    snprintf(path, sizeof path, "%s/step_%06" PRId64 "_generated.png", dir, step);
    if (!rc) rc = banis_write_pairs_png(path, ga, gb, n, 4);
    if (!rc && k > 0) {
        tensor *a, *b;
        rc = banis_batch(d, s->test, k, m->ctx.dtype, m->ctx.device, &a, &b);
        tensor *ar = rc ? NULL : banis_successor(m, DOMAIN_A, b),
               *br = rc ? NULL : banis_successor(m, DOMAIN_B, a);
        rc = !ar || !br || tensor_to_host(tensor_cast(ar, TENSOR_F32), ga) ||
             tensor_to_host(tensor_cast(br, TENSOR_F32), gb);
        // rows: real pair, then its reconstruction A_rec = S_A(b) | B_rec = S_B(a)
        float *rows_a = malloc(sizeof(float) * BANIS_PIXELS * 16),
              *rows_b = malloc(sizeof(float) * BANIS_PIXELS * 16);
        for (int i = 0; i < k && !rc; i++) {
            memcpy(rows_a + (size_t)(2 * i) * BANIS_PIXELS,
                   d->a + (size_t)s->test[i] * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS);
            memcpy(rows_b + (size_t)(2 * i) * BANIS_PIXELS,
                   d->b + (size_t)s->test[i] * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS);
            memcpy(rows_a + (size_t)(2 * i + 1) * BANIS_PIXELS, ga + (size_t)i * BANIS_PIXELS,
                   sizeof(float) * BANIS_PIXELS);
            memcpy(rows_b + (size_t)(2 * i + 1) * BANIS_PIXELS, gb + (size_t)i * BANIS_PIXELS,
                   sizeof(float) * BANIS_PIXELS);
        }
        snprintf(path, sizeof path, "%s/step_%06" PRId64 "_reconstructed.png", dir, step);
        if (!rc) rc = banis_write_pairs_png(path, rows_a, rows_b, 2 * k, 2);
        free(rows_a);
        free(rows_b);
    }
    tensor_scope_end();
    ag_set_grad_enabled(prev);
    nn_set_training(m->root, true);
    free(ga);
    free(gb);
    return rc ? -1 : 0;
}

static const char *stage_name(const banis_schedule *s, int64_t step) {
    return step < s->warmup_steps                     ? "warm-up"
           : step < s->warmup_steps + s->stage2_steps ? "S+C"
                                                      : "S+C decayed";
}

// ---- data and run folder ---------------------------------------------------------------------
static banis_dataset *open_data(const config *c) {
    banis_dataset *d = NULL;
    struct stat st;
    char prepared[sizeof c->data + 32];
    snprintf(prepared, sizeof prepared, "%s/dataset.safetensors", c->data);
    if (!strcmp(c->data, "synthetic")) {
        synth_config sc = synth_defaults();
        d = banis_synthetic(&sc, c->n_synthetic, c->seed);
    } else if (stat(c->data, &st)) {
        err_set("--data %s: %s", c->data, strerror(errno));
    } else if (S_ISDIR(st.st_mode) && !access(prepared, R_OK)) {
        d = banis_dataset_load(prepared); // the folder `banis-data prepare` wrote
    } else if (S_ISDIR(st.st_mode)) {
        prepare_options po = prepare_defaults();
        d = banis_prepare(c->data, &po);
    } else {
        d = banis_dataset_load(c->data);
    }
    if (!d)
        fprintf(stderr, "banis-train: %s\n", err_message());
    else if (d->n < 2 * c->sched.batch && d->n < 20) {
        fprintf(stderr, "banis-train: %s has %d pairs; too few to train and test\n", d->source,
                d->n);
        banis_dataset_free(d);
        d = NULL;
    }
    return d;
}

// The run folder, locked for this process (banis/run.h): a fresh run never writes into a folder
// that holds one: refused when --out named it; the default folder moves on to runs/banis-2, -3,
// ... and says so. 0, or -1 (said).
static int open_run_folder(config *c, const invocation *inv, banis_run_folder *f, char *samples,
                           size_t size) {
    if (banis_run_open(f, c->out, inv->resume, inv->out_given)) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return -1;
    }
    if (f->moved) printf("%s holds an earlier run: this run goes to %s\n", c->out, f->dir);
    snprintf(c->out, sizeof c->out, "%s", f->dir);
    if (f->stale_removed)
        printf("removed %d temporary checkpoint file%s left by a run that was killed\n",
               f->stale_removed, f->stale_removed > 1 ? "s" : "");
    snprintf(samples, size, "%s/samples", c->out);
    return 0;
}

// ---- the run ---------------------------------------------------------------------------------
typedef struct {
    config c;
    invocation inv;
    banis_dataset *d;
    banis_split split;
    banis_sampler sampler;
    banis_model *m;
    int *idx;        // the batch's pair indices
    tensor *z_fixed; // the latent vectors of every sample grid
    int64_t step, total;
    char samples[2048], ckpt_path[2048];
    // logging
    FILE *csv;
    tb_writer *tb;
    bool tty; // the progress line updates in place on a terminal
    double t_last;
    int64_t last_logged;
    double kind_time[2]; // seconds spent in warm-up steps and in full steps
    int64_t kind_steps[2];
    banis_watch watch;
} run;

// A resumed run: the checkpoint's state, the data order up to its step, metrics.csv cut there.
static int resume_run(run *r) {
    nn_checkpoint ck = {0};
    banis_model_checkpoint(r->m, &ck);
    st_file *f = NULL;
    if (nn_ckpt_load(&ck, r->inv.ckpt_path, &f)) {
        fprintf(stderr, "banis-train: cannot resume: %s\n", err_message());
        nn_ckpt_free(&ck);
        return -1;
    }
    r->step = strtoll(st_meta_get(f, "step") ? st_meta_get(f, "step") : "0", NULL, 10);
    st_close(f);
    nn_ckpt_free(&ck);
    for (int64_t s = 0; s < r->step; s++)
        banis_sampler_next(&r->sampler, r->c.sched.batch, r->idx); // same data order
    printf("resumed %s at step %" PRId64 " of %" PRId64 "\n", r->c.out, r->step, r->total);
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.csv", r->c.out);
    int dropped = banis_run_truncate_metrics(path, r->step);
    if (dropped < 0) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return -1;
    }
    if (dropped) printf("metrics.csv: dropped %d rows written after the checkpoint\n", dropped);
    return 0;
}

static int open_logs(run *r) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.csv", r->c.out);
    bool fresh_csv = access(path, F_OK) != 0;
    r->csv = fopen(path, "a");
    r->tb = tb_open(r->c.out);
    if (!r->csv || !r->tb) {
        if (r->csv)
            fprintf(stderr, "banis-train: %s\n", err_message());
        else
            fprintf(stderr, "banis-train: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (r->inv.resume && tb_session_start(r->tb, r->step)) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return -1;
    }
    if (fresh_csv)
        fprintf(
            r->csv,
            "step,stage,d_loss_a,d_loss_b,g_loss_a,g_loss_b,id_gen_a,id_gen_b,id_real_a,id_real_b,"
            "pm_a,pm_b,steps_per_s\n");
    r->tty = isatty(STDOUT_FILENO);
    r->t_last = now_seconds();
    r->last_logged = r->step;
    banis_watch_init(&r->watch);
    return 0;
}

static void print_header(const run *r) {
    const config *c = &r->c;
    printf("BANIS: %s preset on %s; data: %s (%d train / %d test pairs, split %s)\n", c->preset,
           backend_device_description(r->inv.dev), r->d->source, r->split.n_train, r->split.n_test,
           r->split.how);
    printf("networks: width %.3g, %lld parameters; batch %d; stages %" PRId64 " + %" PRId64
           " + %" PRId64 " steps; G's batch-norm statistics %s\n",
           c->arch.width, (long long)nn_count_parameters(r->m->root), c->sched.batch,
           c->sched.warmup_steps, c->sched.stage2_steps, c->sched.stage3_steps,
           c->arch.g_bn_sets > 1 ? "per input (z, codes)" : "shared");
    printf("rates: Adam D %g %g, G %g %g; %s %g for S and C (x%g in the last stage)\n",
           c->sched.lr_d[0], c->sched.lr_d[1], c->sched.lr_g[0], c->sched.lr_g[1],
           c->sched.sc_adam ? "Adam" : "SGD", c->sched.lr_sc, c->sched.sc_decay);
    if (!c->sched.identical_gen) printf("%s\n", ABLATION_IDENTICAL_GEN);
}

// ETA from the measured time per warm-up step and per full step (a full step runs six more
// forward/backward passes; about 5x a warm-up step until one is measured).
static double eta_seconds(const run *r) {
    double per[2] = {r->kind_steps[0] ? r->kind_time[0] / (double)r->kind_steps[0] : 0,
                     r->kind_steps[1] ? r->kind_time[1] / (double)r->kind_steps[1] : 0};
    if (!r->kind_steps[1]) per[1] = 5 * per[0];
    if (!r->kind_steps[0]) per[0] = per[1] / 5;
    int64_t warm = r->c.sched.warmup_steps, left_warm = r->step < warm ? warm - r->step : 0;
    return (double)left_warm * per[0] + (double)(r->total - r->step - left_warm) * per[1];
}

// One row of metrics.csv and TensorBoard, and the progress line.
static void log_step(run *r, const banis_losses *l) {
    double t = now_seconds(), rate = (double)(r->step - r->last_logged) / (t - r->t_last);
    const char *stage = stage_name(&r->c.sched, r->step - 1);
    double vals[10] = {l->d_loss[0], l->d_loss[1],  l->g_loss[0],  l->g_loss[1], l->id_gen[0],
                       l->id_gen[1], l->id_real[0], l->id_real[1], l->pm[0],     l->pm[1]};
    static const char *const tags[10] = {"adversarial/d_loss_a", "adversarial/d_loss_b",
                                         "adversarial/g_loss_a", "adversarial/g_loss_b",
                                         "identical/gen_a",      "identical/gen_b",
                                         "identical/real_a",     "identical/real_b",
                                         "pair_matched/a",       "pair_matched/b"};
    fprintf(r->csv, "%" PRId64 ",%s", r->step, stage);
    for (int k = 0; k < 10; k++) fprintf(r->csv, ",%g", vals[k]);
    fprintf(r->csv, ",%.3f\n", rate);
    fflush(r->csv);
    for (int k = 0; k < 10; k++)
        if (!isnan(vals[k])) tb_scalar(r->tb, tags[k], (float)vals[k], r->step);
    tb_scalar(r->tb, "speed/steps_per_s", (float)rate, r->step);
    tb_flush(r->tb);
    printf("%sstep %6" PRId64 "/%" PRId64 " [%s] %.2f steps/s ETA %.0fs | D %.3f %.3f G %.3f %.3f",
           r->tty ? "\r" : "", r->step, r->total, stage, rate, eta_seconds(r), l->d_loss[0],
           l->d_loss[1], l->g_loss[0], l->g_loss[1]);
    if (!isnan(l->pm[0]))
        printf(" | id %.4f %.4f pm %.4f %.4f", l->id_real[0], l->id_real[1], l->pm[0], l->pm[1]);
    printf(r->tty ? "\x1b[K" : "\n"); // a terminal: one line, updated in place
    fflush(stdout);
    r->t_last = t;
    r->last_logged = r->step;
}

// Sample grids and checkpoints when their step comes. 0, or -1 (said) when a checkpoint failed.
static int periodic_outputs(run *r) {
    const config *c = &r->c;
    int64_t step = r->step;
    if (step % c->sample_every == 0 || step == r->total) {
        if (write_samples(r->m, r->d, &r->split, r->z_fixed, r->samples, step))
            fprintf(stderr, "banis-train: samples: %s\n", err_message());
        else { // the same pictures in TensorBoard's Images tab
            char png[4200];
            snprintf(png, sizeof png, "%s/step_%06" PRId64 "_generated.png", r->samples, step);
            tb_png_file(r->tb, "samples/generated", png, step);
            snprintf(png, sizeof png, "%s/step_%06" PRId64 "_reconstructed.png", r->samples, step);
            tb_png_file(r->tb, "samples/reconstructed", png, step);
            tb_flush(r->tb);
        }
    }
    if (step % c->ckpt_every == 0 || step == r->total) {
        char periodic[4096];
        snprintf(periodic, sizeof periodic, "%s/checkpoint_step_%06" PRId64 ".safetensors", c->out,
                 step);
        if (save_checkpoint(r->m, c, step, r->ckpt_path) ||
            (c->keep > 0 && save_checkpoint_as(r->m, c, step, periodic, false))) {
            fprintf(stderr, "%sbanis-train: checkpoint: %s\n", r->tty ? "\n" : "", err_message());
            return -1;
        }
        banis_run_prune_checkpoints(c->out, c->keep);
    }
    return 0;
}

// A fail point for the tests (tests/test_train_resume.sh): BANIS_FAILPOINT_NAN_STEP=N fills the
// first parameter with NaN before step N, as a run that diverges there would. The run must stop
// at that step, naming the loss, and point to the last checkpoint it wrote (which is finite).
static void failpoint_nan(const run *r) {
    const char *v = getenv("BANIS_FAILPOINT_NAN_STEP");
    if (!v || strtoll(v, NULL, 10) != r->step + 1) return; // steps count from 1, as logged
    nn_tensor_list l = {0};
    nn_collect(r->m->root, "", true, false, &l);
    if (l.n) tensor_fill_(l.items[0].t, NAN);
    nn_list_free(&l);
}

// Steps until the schedule ends, --max-steps, a signal or an error. Returns the exit code.
static int train(run *r) {
    const config *c = &r->c;
    int64_t step0 = r->step;
    while (r->step < r->total) {
        if (c->max_steps && r->step - step0 >= c->max_steps) {
            printf("stopping after %" PRId64 " steps (--max-steps): saving %s\n", c->max_steps,
                   r->ckpt_path);
            if (!save_checkpoint(r->m, c, r->step, r->ckpt_path)) return 0;
            fprintf(stderr, "banis-train: %s\n", err_message());
            return 1;
        }
        if (interrupted) {
            printf("\ninterrupted at step %" PRId64 ": saving %s\n", r->step, r->ckpt_path);
            if (!save_checkpoint(r->m, c, r->step, r->ckpt_path)) return 130;
            fprintf(stderr, "banis-train: %s\n", err_message());
            return 1;
        }
        banis_losses l;
        double t_step = now_seconds();
        failpoint_nan(r);
        tensor_scope_begin();
        banis_sampler_next(&r->sampler, c->sched.batch, r->idx);
        tensor *a, *b;
        int err = banis_batch(r->d, r->idx, c->sched.batch, TENSOR_F32, r->inv.dev, &a, &b) ||
                  banis_train_step(r->m, r->step, a, b, &l);
        tensor_scope_end();
        if (err) { // a checkpoint is only ever written finite (save_checkpoint_as), and read so
            fprintf(stderr, "\nbanis-train: step %" PRId64 ": %s\n", r->step + 1, err_message());
            if (!access(r->ckpt_path, F_OK))
                fprintf(stderr, "the last good checkpoint is %s\n", r->ckpt_path);
            else
                fprintf(stderr, "no checkpoint was written before this step\n");
            return 1;
        }
        static bool told; // a step that could not be captured runs as issued: say so once
        const char *why = nn_runner_fallback(r->m->runner);
        if (why[0] && !told) {
            fprintf(stderr, "\nbanis-train: CUDA graphs off (each launch issued instead): %s\n",
                    why);
            told = true;
        }
        bool full = r->step >= c->sched.warmup_steps;
        r->kind_time[full] += now_seconds() - t_step;
        r->kind_steps[full]++;
        int won = banis_watch_step(&r->watch, r->step, &l);
        for (int x = 0; x < 2; x++)
            if (won & (1 << x))
                printf("%swarning: D_%c has won outright (loss below %g for %d steps): G_%c learns "
                       "little now\n",
                       r->tty ? "\n" : "", "AB"[x], BANIS_D_WINS_LOSS, BANIS_D_WINS_STEPS, "AB"[x]);
        r->step++;
        if (r->step % c->log_every == 0 || r->step == r->total) log_step(r, &l);
        if (periodic_outputs(r)) return 1;
    }
    return 0;
}

// The GMI table and the ground-truth and health figures on the test split, in gmi.md.
static int final_evaluation(run *r) {
    banis_eval e;
    if (banis_evaluate(r->m, r->d, r->split.test, r->split.n_test, &e)) {
        fprintf(stderr, "banis-train: evaluation: %s\n", err_message());
        return 1;
    }
    // the generated pairs, beside those of the same networks untrained (the same seed)
    int gen = r->c.score_pairs;
    banis_model *untrained =
        gen ? banis_model_new(&r->c.arch, &r->c.sched, TENSOR_F32, r->inv.dev, r->c.seed) : NULL;
    int rc =
        gen && (!untrained || banis_score_generated(r->m, untrained, r->d, &r->split, gen, &e));
    banis_model_free(untrained);
    if (rc) {
        fprintf(stderr, "banis-train: scoring the generated pairs: %s\n", err_message());
        return 1;
    }
    // the segmentation drawn: 8 real test pairs, then the first 8 generated pairs scored
    enum { SHOWN = 8 };
    static float ga[2 * SHOWN * BANIS_PIXELS], gb[2 * SHOWN * BANIS_PIXELS];
    int shown = r->split.n_test < SHOWN ? r->split.n_test : SHOWN, shown_gen = gen ? SHOWN : 0;
    for (int i = 0; i < shown; i++) {
        memcpy(ga + (size_t)i * BANIS_PIXELS, r->d->a + (size_t)r->split.test[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
        memcpy(gb + (size_t)i * BANIS_PIXELS, r->d->b + (size_t)r->split.test[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
    }
    char geo[4096];
    snprintf(geo, sizeof geo, "%s/geometry.png", r->c.out);
    if ((shown_gen &&
         banis_generate_pairs(r->m, SHOWN, BANIS_GEN_SEED, ga + (size_t)shown * BANIS_PIXELS,
                              gb + (size_t)shown * BANIS_PIXELS)) ||
        geometry_write_png(geo, ga, gb, shown + shown_gen, 4)) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return 1;
    }
    banis_watch_describe(&r->watch, e.notes, sizeof e.notes);
    char title[512], path[4096];
    snprintf(title, sizeof title, "%s, %s preset, %" PRId64 " steps, %s",
             r->c.sched.identical_gen ? "BANIS" : ABLATION_IDENTICAL_GEN, r->c.preset, r->total,
             r->d->source);
    snprintf(path, sizeof path, "%s/gmi.md", r->c.out);
    if (banis_write_gmi_table(path, &e, title, r->split.how)) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return 1;
    }
    printf("GMI on %d test pairs: %.1f%% / %.1f%% / %.1f%% at TS 0.1 / 0.2 / 0.3 (mean DSC %.3f; "
           "%d pairs with "
           "an empty mask) -> %s\n",
           e.pairs, e.gmi[0], e.gmi[1], e.gmi[2], e.mean_dsc, e.empty_pairs, path);
    if (!isnan(e.membrane_dice))
        printf("ground truth: membrane Dice %.3f, nuclei Dice %.3f, %.1f%% of nucleus pixels "
               "inside cells\n",
               e.membrane_dice, e.nuclei_dice, e.nuclei_in_cells);
    const banis_gen_scores *g = &e.gen;
    if (g->pairs) {
        char per_cell[2][32], inside[2][32];
        const geometry_summary *gs[2] = {&g->geometry, &e.real_geometry};
        for (int i = 0; i < 2; i++) { // undefined where no cell or no nucleus was found
            snprintf(per_cell[i], sizeof per_cell[i], isnan(gs[i]->nuclei_per_cell) ? "-" : "%.2f",
                     gs[i]->nuclei_per_cell);
            snprintf(inside[i], sizeof inside[i], isnan(gs[i]->inside) ? "-" : "%.1f%%",
                     gs[i]->inside);
        }
        printf("generated pairs (%d, G_A(z) and G_B(z)): GMI %.1f%% / %.1f%% / %.1f%% (mean DSC "
               "%.3f); "
               "%.1f cells per embryo (real %.1f), %s nuclei per cell (real %s), %s of the "
               "nucleus signal inside cells (real %s)\n",
               g->pairs, g->gmi[0], g->gmi[1], g->gmi[2], g->mean_dsc, g->geometry.cells,
               e.real_geometry.cells, per_cell[0], per_cell[1], inside[0], inside[1]);
        printf("geometry distance to the real test pairs: generated %.2f, reconstructions %.2f, "
               "untrained %.2f, real against real %.2f (0 = alike)\n",
               g->distance, e.rec_distance, g->distance_untrained, e.real_distance);
        printf("memorisation: nearest training pair at median %.4f for the generated, %.4f for the "
               "real test pairs (ratio %.2f)%s\n",
               g->mem.median_gen, g->mem.median_test, g->mem.ratio,
               g->mem.flagged ? ": MEMORISED, the generated pairs copy training pairs" : "");
    }
    printf("segmentation of %d real test pairs and %d generated pairs -> %s\n", shown, shown_gen,
           geo);
    if (!isnan(e.diversity))
        printf("diversity of 16 generated membrane images: %.3f of the real images' (1 = as "
               "varied)%s\n",
               e.diversity,
               e.diversity < BANIS_DIVERSITY_COLLAPSED ? ": MODE COLLAPSE, one image whatever z"
                                                       : "");
    printf("saturated pixels: %.1f%% of the reconstructions, %.1f%% of the generated, %.1f%% of "
           "the real images%s\n",
           e.saturated_rec, e.saturated_gen, e.saturated_real,
           e.saturated_rec > e.saturated_real + BANIS_SATURATED_EXCESS ||
                   e.saturated_gen > e.saturated_real + BANIS_SATURATED_EXCESS
               ? ": SATURATED OUTPUTS"
               : "");
    if (e.notes[0]) printf("warning: %s\n", e.notes);
    return 0;
}

static void close_run(run *r) {
    tensor_release(r->z_fixed);
    if (r->csv) fclose(r->csv);
    tb_close(r->tb);
    free(r->idx);
    banis_sampler_free(&r->sampler);
    banis_split_free(&r->split);
    banis_model_free(r->m);
    banis_dataset_free(r->d);
}

int main(int argc, char **argv) {
    static run r; // large (paths); zeroed
    int rc = banis_train_parse_args(argc, argv, &r.c, &r.inv);
    if (rc >= 0) return rc;
    if (!(r.d = open_data(&r.c))) return 1;
    if (banis_split_data(r.d, 0.1, r.c.seed, &r.split)) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        banis_dataset_free(r.d);
        return 1;
    }
    banis_sampler_init(&r.sampler, r.split.train, r.split.n_train, r.c.seed + 7);
    r.m = banis_model_new(&r.c.arch, &r.c.sched, TENSOR_F32, r.inv.dev, r.c.seed);
    if (r.m) nn_runner_set_graphs(r.m->runner, !r.c.no_graphs);
    r.idx = malloc(sizeof(int) * (size_t)r.c.sched.batch);
    r.total = banis_schedule_steps(&r.c.sched);
    if (!r.m || !r.idx) {
        fprintf(stderr, "banis-train: %s\n", r.m ? "out of memory" : err_message());
        close_run(&r);
        return 1;
    }
    banis_run_folder folder;
    if (open_run_folder(&r.c, &r.inv, &folder, r.samples, sizeof r.samples) ||
        (r.inv.resume && resume_run(&r))) {
        banis_run_close(&folder);
        close_run(&r);
        return 1;
    }
    print_header(&r);
    snprintf(r.ckpt_path, sizeof r.ckpt_path, "%s/checkpoint_latest.safetensors", r.c.out);
    if (open_logs(&r)) {
        close_run(&r);
        return 1;
    }
    rng zr;
    rng_init(&zr, r.c.seed + 99);
    r.z_fixed =
        tensor_keep(op_rand_uniform(&zr, TENSOR_F32, SHAPE(16, r.c.arch.latent), -1, 1, r.inv.dev));
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    signal(SIGHUP, on_sigint); // a closed terminal or ssh session: save and stop like Ctrl-C
    rc = train(&r);
    if (r.tty) printf("\n");                                       // end the in-place progress line
    if (r.inv.dev == DEVICE_CUDA && nn_runner_graphs(r.m->runner)) // how the steps ran
        printf("CUDA graphs: %" PRId64 " warm-up and %" PRId64
               " full steps replayed (each kind's first step of this invocation captured)\n",
               nn_runner_replays(r.m->runner, 0), nn_runner_replays(r.m->runner, 1));
    if (rc == 0 && r.step == r.total) rc = final_evaluation(&r);
    close_run(&r);
    banis_run_close(&folder);
    return rc;
}
