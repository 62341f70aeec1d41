// banis-eval: the paper's Table 1 on our data. Trains BANIS, Cycle-GAN and the Auto-Encoder
// for several seeds each, scores every run by the Geometric Matching Index on the test split
// and against the ground-truth geometry of the synthetic embryos, before training and after,
// and writes
//   DIR/table1.md   the settings of every row; GMI % at TS 0.1 / 0.2 / 0.3 and the ground-truth
//                   scores, mean +- std over the seeds, one row per model, and the same for the
//                   untrained networks (what "has learned" is measured against)
//   DIR/fig3.png    rows: real test pairs, then each model's translations of them (seed 1;
//                   A_rec = B->A, B_rec = A->B; A | B | overlay, membrane magenta, nuclei green)
// A fourth row, the Auto-Encoder with its dim nuclei dropped, is the GMI gaming the paper
// describes, made on purpose from the trained Auto-Encoder (no training of its own).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tensor/clock.h"
#include "../tensor/files.h"
#include "../banis/baselines.h"
#include "../banis/presets.h"
#include "../ops/backend.h"
#include "../tensor/error.h"

enum { M_BANIS, M_CYCLEGAN, M_AE, M_AE_DROP, ROWS };
#define TRAINED   3 // the models trained; M_AE_DROP comes from M_AE
#define FIG_PAIRS 6
#define MAX_SEEDS 100
static const char *const row_names[ROWS] = {"BANIS", "Cycle-GAN", "Auto-Encoder",
                                            "Auto-Encoder, nuclei dropped"};
static const char *const model_flags[TRAINED] = {"banis", "cyclegan", "ae"};

typedef struct {
    const char *out;
    banis_preset p;
    int seeds;
    bool run[TRAINED]; // --models
    tensor_device_type dev;
} eval_args;

static int usage(int rc) {
    fprintf(
        rc ? stderr : stdout,
        "usage: banis-eval [options]\n"
        "Trains BANIS, Cycle-GAN and the Auto-Encoder over seeds on the synthetic embryos and\n"
        "writes Table 1 (DIR/table1.md) and Fig. 3 (DIR/fig3.png).\n\n"
        "  --preset NAME        cpu (default), cpu-long, paper, reference or tiny (tests): the\n"
        "                       sizes and BANIS schedule of banis-train's preset of that name\n"
        "  --seeds N            runs of each model (default 5)\n"
        "  --models LIST        which to train, comma-separated: banis,cyclegan,ae (default\n"
        "                       all; ae also gives the nuclei-dropped row)\n"
        "  --cyclegan-steps N   Cycle-GAN's steps (default: the preset's)\n"
        "  --cyclegan-width W   Cycle-GAN's channel multiplier (default: the preset's)\n"
        "  --ae-steps N         the Auto-Encoder's steps (default: the preset's)\n"
        "  --n-synthetic N      synthetic pairs, 10%% of them the test split (default: the\n"
        "                       preset's)\n"
        "  --out DIR            where table1.md and fig3.png go (default runs/eval)\n"
        "  --device cpu|cuda    default cpu\n");
    return rc;
}

static int parse_models(const char *list, bool *run) {
    memset(run, 0, sizeof(bool) * TRAINED);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < TRAINED && strcmp(t, model_flags[k])) k++;
        if (k == TRAINED) return -1;
        run[k] = true;
    }
    return run[0] || run[1] || run[2] ? 0 : -1;
}

// -1: go on; otherwise the exit code.
static int parse_args(int argc, char **argv, eval_args *a) {
    *a = (eval_args){.out = "runs/eval", .seeds = 5, .run = {true, true, true}, .dev = DEVICE_CPU};
    banis_preset_get("cpu", &a->p);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(0);
    for (int i = 1; i < argc; i++) // the preset first: the other flags override it
        if (!strcmp(argv[i], "--preset") && i + 1 < argc && !banis_preset_get(argv[i + 1], &a->p)) {
            fprintf(stderr, "banis-eval: unknown preset '%s'\n", argv[i + 1]);
            return 2;
        }
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage(2);
        const char *flag = argv[i], *v = argv[++i];
        char *end;
        long long n = strtoll(v, &end, 10);
        bool number = *v && !*end && n >= 1;
        if (!strcmp(flag, "--preset"))
            continue;
        else if (!strcmp(flag, "--seeds") && number && n <= MAX_SEEDS)
            a->seeds = (int)n;
        else if (!strcmp(flag, "--cyclegan-steps") && number)
            a->p.cyclegan_steps = n;
        else if (!strcmp(flag, "--cyclegan-width") && atof(v) > 0 && atof(v) <= 4)
            a->p.cyclegan_width = atof(v);
        else if (!strcmp(flag, "--ae-steps") && number)
            a->p.autoencoder_steps = n;
        else if (!strcmp(flag, "--n-synthetic") && number && n >= 20 && n <= 1000000)
            a->p.n_synthetic = (int)n;
        else if (!strcmp(flag, "--models") && !parse_models(v, a->run))
            continue;
        else if (!strcmp(flag, "--out"))
            a->out = v;
        else if (!strcmp(flag, "--device") && (!strcmp(v, "cpu") || !strcmp(v, "cuda")))
            a->dev = !strcmp(v, "cuda") ? DEVICE_CUDA : DEVICE_CPU;
        else {
            fprintf(stderr, "banis-eval: bad option or value: %s %s\n", flag, v);
            return usage(2);
        }
    }
    if (a->dev == DEVICE_CUDA && !backend_for(DEVICE_CUDA)) {
        fprintf(stderr, "banis-eval: %s\n", err_message());
        return 1;
    }
    if (files_make_dirs(a->out)) {
        fprintf(stderr, "banis-eval: cannot create %s: %s\n", a->out, strerror(errno));
        return 1;
    }
    return -1;
}

// ---- one model, one seed ---------------------------------------------------------------------

typedef struct {
    banis_model *bm;
    baseline_model *bl;
    nn_module *root;
} model;

static void model_free(model *m) {
    banis_model_free(m->bm);
    baseline_free(m->bl);
}

static int model_new(const banis_preset *p, int k, uint64_t seed, tensor_device_type dev,
                     model *m) {
    *m = (model){0};
    if (k == M_BANIS) {
        m->bm = banis_model_new(&p->arch, &p->sched, TENSOR_F32, dev, seed);
        m->root = m->bm ? m->bm->root : NULL;
    } else {
        banis_arch arch = p->arch;
        if (k == M_CYCLEGAN) arch.width = p->cyclegan_width;
        m->bl = baseline_new(k == M_CYCLEGAN ? BASELINE_CYCLEGAN : BASELINE_AUTOENCODER, &arch,
                             p->baseline_lr, TENSOR_F32, dev, seed);
        m->root = m->bl ? m->bl->root : NULL;
    }
    return m->root ? 0 : -1;
}

static int64_t model_steps(const banis_preset *p, int k) {
    return k == M_BANIS      ? banis_schedule_steps(&p->sched)
           : k == M_CYCLEGAN ? p->cyclegan_steps
                             : p->autoencoder_steps;
}

static tensor *banis_tr(void *m, int to, tensor *src) { return banis_successor(m, to, src); }

// Row r's translator over model m (r = M_AE_DROP: the Auto-Encoder's, nuclei dropped).
static banis_translate_fn translator(int r, model *m, void **obj) {
    *obj = r == M_BANIS ? (void *)m->bm : (void *)m->bl;
    return r == M_BANIS     ? banis_tr
           : r == M_AE_DROP ? baseline_translate_nuclei_dropped
                            : baseline_translate;
}

// Scores of row r on the test split, the model in inference mode (BANIS: with its generated
// images' diversity).
static int score(int r, model *m, tensor_device_type dev, const banis_dataset *d,
                 const banis_split *split, banis_eval *e) {
    if (r == M_BANIS)
        return banis_evaluate(m->bm, d, split->test, split->n_test, e) ||
                       banis_score_generated(m->bm, NULL, d, split, BANIS_GEN_PAIRS, e)
                   ? -1
                   : 0;
    void *obj;
    banis_translate_fn tr = translator(r, m, &obj);
    nn_set_training(m->root, false);
    int rc = banis_evaluate_translator(tr, obj, TENSOR_F32, dev, d, split->test, split->n_test, e);
    nn_set_training(m->root, true);
    return rc;
}

// Translations of Fig. 3's pairs by row r.
static int fig_rows(int r, model *m, tensor_device_type dev, const banis_dataset *d, const int *idx,
                    float *a_out, float *b_out) {
    void *obj;
    banis_translate_fn tr = translator(r, m, &obj);
    nn_set_training(m->root, false);
    tensor_scope_begin();
    bool prev = ag_set_grad_enabled(false);
    tensor *a, *b;
    int rc = banis_batch(d, idx, FIG_PAIRS, TENSOR_F32, dev, &a, &b);
    tensor *ar = rc ? NULL : tr(obj, DOMAIN_A, b), *br = rc ? NULL : tr(obj, DOMAIN_B, a);
    rc = !ar || !br || tensor_to_host(ar, a_out) || tensor_to_host(br, b_out);
    ag_set_grad_enabled(prev);
    tensor_scope_end();
    nn_set_training(m->root, true);
    return rc ? -1 : 0;
}

static void fmt_duration(double s, char *out, size_t size) {
    if (s >= 3600)
        snprintf(out, size, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else
        snprintf(out, size, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

// Each model's own training objective, the one that says whether it learned what it was asked
// to: BANIS the identical loss on the real pairs (S_A(b) vs a plus S_B(a) vs b; from stage 2),
// Cycle-GAN the cycle loss (before lambda), the Auto-Encoder its two MSEs.
static const char *const objective_names[TRAINED] = {
    "identical loss on the real pairs", "cycle loss (L1, before lambda)", "MSE a->b + b->a"};

// Mean of the first and of the last tenth of the finite values of v[0..n).
static void tenths(const double *v, int64_t n, double out[2]) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += isfinite(v[i]);
    int64_t w = m >= 10 ? m / 10 : 1, seen = 0, c[2] = {0};
    out[0] = out[1] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        for (int e = 0; e < 2; e++)
            if (e ? seen >= m - w : seen < w) out[e] += v[i], c[e]++;
        seen++;
    }
    for (int e = 0; e < 2; e++) out[e] = c[e] ? out[e] / (double)c[e] : NAN;
}

// Trains model k for the preset's steps, printing progress (step, rate, ETA, losses) ten times;
// objective: its objective over the first and the last tenth of the steps.
static int train(const banis_preset *p, int k, int seed_no, uint64_t seed, tensor_device_type dev,
                 const banis_dataset *d, const banis_split *split, model *m, double objective[2]) {
    int64_t steps = model_steps(p, k), every = steps >= 10 ? steps / 10 : 1;
    int batch = p->sched.batch;
    banis_sampler sa, sb; // Cycle-GAN draws A and B independently (unpaired)
    banis_sampler_init(&sa, split->train, split->n_train, seed * 7);
    banis_sampler_init(&sb, split->train, split->n_train, seed * 7 + 1);
    int *idx = malloc(sizeof(int) * (size_t)batch), *idx2 = malloc(sizeof(int) * (size_t)batch);
    double *obj = malloc(sizeof(double) * (size_t)steps);
    int rc = idx && idx2 && obj ? 0 : -1;
    double t0 = now_seconds();
    for (int64_t step = 0; step < steps && !rc; step++) {
        tensor_scope_begin();
        tensor *a, *b, *a2, *b2;
        banis_losses l;
        double bl[4];
        banis_sampler_next(&sa, batch, idx);
        banis_sampler_next(&sb, batch, idx2);
        rc = banis_batch(d, idx, batch, TENSOR_F32, dev, &a, &b);
        if (!rc && k == M_BANIS) {
            rc = banis_train_step(m->bm, step, a, b, &l);
        } else if (!rc) {
            rc = banis_batch(d, idx2, batch, TENSOR_F32, dev, &a2, &b2);
            // Cycle-GAN: a and b from different pairs; the Auto-Encoder: matched pairs
            if (!rc) rc = baseline_step(m->bl, a, k == M_CYCLEGAN ? b2 : b, bl);
        }
        tensor_scope_end();
        if (!rc)
            obj[step] = k == M_BANIS      ? l.id_real[0] + l.id_real[1]
                        : k == M_CYCLEGAN ? bl[3]
                                          : bl[2];
        if (rc || ((step + 1) % every && step + 1 < steps)) continue;
        double el = now_seconds() - t0, rate = (double)(step + 1) / el;
        char eta[32], losses[160];
        fmt_duration((double)(steps - step - 1) / rate, eta, sizeof eta);
        if (k == M_BANIS)
            snprintf(losses, sizeof losses, "D %.3f %.3f  G %.3f %.3f  id %.4f %.4f  pm %.4f %.4f",
                     l.d_loss[0], l.d_loss[1], l.g_loss[0], l.g_loss[1], l.id_real[0], l.id_real[1],
                     l.pm[0], l.pm[1]);
        else if (k == M_CYCLEGAN)
            snprintf(losses, sizeof losses, "G %.3f  D %.3f %.3f  cycle %.4f", bl[0], bl[1], bl[2],
                     bl[3]);
        else
            snprintf(losses, sizeof losses, "a->b %.4f  b->a %.4f", bl[0], bl[1]);
        printf("  seed %d %-12s step %6lld/%lld  %5.2f steps/s  ETA %s  %s\n", seed_no,
               row_names[k], (long long)(step + 1), (long long)steps, rate, eta, losses);
        fflush(stdout);
    }
    if (!rc) tenths(obj, steps, objective);
    free(obj);
    free(idx);
    free(idx2);
    banis_sampler_free(&sa);
    banis_sampler_free(&sb);
    return rc;
}

// ---- Table 1 ---------------------------------------------------------------------------------

#define COLUMNS 7
static double column(const banis_eval *e, int c) {
    return c < 3    ? e->gmi[c]
           : c == 3 ? e->membrane_dice
           : c == 4 ? e->nuclei_dice
           : c == 5 ? e->nuclei_in_cells
                    : 100.0 * e->empty_pairs / (e->pairs ? e->pairs : 1);
}

// Mean and sample standard deviation of column c (c = -1: the diversity) over the seeds.
static void stats(const banis_eval *e, int seeds, int c, double *mean, double *sd) {
    double sum = 0, sq = 0;
    for (int s = 0; s < seeds; s++) {
        double v = c < 0 ? e[s].diversity : column(&e[s], c);
        sum += v;
        sq += v * v;
    }
    *mean = sum / seeds;
    *sd = seeds > 1 ? sqrt(fmax(0, (sq - seeds * *mean * *mean) / (seeds - 1))) : 0;
}

typedef struct {
    const eval_args *a;
    const banis_dataset *d;
    int n_test;
    const char *split_how;
    banis_eval (*after)[MAX_SEEDS], (*before)[MAX_SEEDS];
    int seeds_done;          // the seeds scored so far (the table is written after each)
    float *gen_a, *gen_b;    // FIG_PAIRS pairs generated by BANIS of seed 1 (geometry.png)
    double seconds[TRAINED]; // wall time of all runs so far, training and scoring
    double objective[TRAINED][MAX_SEEDS][2]; // train's objective, first and last tenth
} eval_run;

static bool row_ran(const eval_args *a, int r) { return a->run[r == M_AE_DROP ? M_AE : r]; }

static void write_settings(FILE *f, const eval_run *x) {
    const banis_preset *p = &x->a->p;
    const banis_schedule *s = &p->sched;
    fprintf(f, "| model | networks | optimizers and rates | steps | batch | time per run |\n"
               "|---|---|---|---|---|---|\n");
    if (x->a->run[M_BANIS])
        fprintf(f,
                "| BANIS | G, D, E of BANIS.md at width %.3g (latent %d); G's batch-norm "
                "statistics %s | Adam D %g %g, G_A %g, G_B %g (beta1 %g); %s %g for S and C, "
                "x%g for the last stage | %lld + %lld + %lld | %d pairs | %.0f s |\n",
                p->arch.width, p->arch.latent, p->arch.g_bn_sets > 1 ? "per input" : "shared",
                s->lr_d[0], s->lr_d[1], s->lr_g[0], s->lr_g[1], s->beta1,
                s->sc_adam ? "Adam" : "SGD", s->lr_sc, s->sc_decay, (long long)s->warmup_steps,
                (long long)s->stage2_steps, (long long)s->stage3_steps, s->batch,
                x->seconds[M_BANIS] / x->seeds_done);
    if (x->a->run[M_CYCLEGAN])
        fprintf(f,
                "| Cycle-GAN | ResNet generators (7x7 stem of %lld channels, 2 stride-2 "
                "convolutions, 6 residual blocks, instance norm), PatchGAN discriminators (34x34 "
                "patches) | Adam %g (beta1 0.5) for all four; least squares, L1 cycle loss with "
                "lambda 10, no identity loss, a pool of %d earlier fakes | %lld | %d unpaired | "
                "%.0f s |\n",
                (long long)banis_channels(p->cyclegan_width, 64), p->baseline_lr, CYCLEGAN_POOL,
                (long long)p->cyclegan_steps, s->batch, x->seconds[M_CYCLEGAN] / x->seeds_done);
    if (x->a->run[M_AE])
        fprintf(f,
                "| Auto-Encoder | two translators, each BANIS's E then G at width %.3g | Adam %g "
                "(beta1 0.5); MSE on the pairs | %lld | %d pairs | %.0f s |\n"
                "| Auto-Encoder, nuclei dropped | the Auto-Encoder above; of its nucleus images "
                "only the pixels at least %.0f%% of the way from the background to the image's "
                "brightest are kept | (none of its own) | | | |\n",
                p->arch.width, p->baseline_lr, (long long)p->autoencoder_steps, s->batch,
                x->seconds[M_AE] / x->seeds_done, 100 * BASELINE_NUCLEI_KEEP);
}

static void write_rows(FILE *f, const eval_run *x, banis_eval (*res)[MAX_SEEDS]) {
    fprintf(f, "| model | GMI TS 0.1 | 0.2 | 0.3 | membrane Dice (truth) | nuclei Dice (truth) | "
               "nuclei in cells %% | pairs with an empty mask %% |\n"
               "|---|---|---|---|---|---|---|---|\n");
    for (int r = 0; r < ROWS; r++) {
        if (!row_ran(x->a, r)) continue;
        fprintf(f, "| %s", row_names[r]);
        for (int c = 0; c < COLUMNS; c++) {
            double mean, sd;
            stats(res[r], x->seeds_done, c, &mean, &sd);
            fprintf(f, c == 3 || c == 4 ? " | %.3f +- %.3f" : " | %.1f +- %.1f", mean, sd);
        }
        fprintf(f, " |\n");
    }
}

// ---- what each model delivers: geometry of its pairs, without ground truth -----------------
// Columns: GMI of the pairs themselves at the three TS (generated pairs and the real ones only:
// a translator's are Table 1's), cells per embryo, nuclei per cell, % of the nucleus signal
// inside cells, the geometry distance to the real test pairs, trained and untrained, and the
// memorisation ratio (generated pairs only).
#define GCOLUMNS 9
static double gcolumn(const banis_eval *e, const banis_eval *untrained, bool generated, int c) {
    const geometry_summary *g = generated ? &e->gen.geometry : &e->rec_geometry;
    return c < 3    ? (generated ? e->gen.gmi[c] : NAN)
           : c == 3 ? g->cells
           : c == 4 ? g->nuclei_per_cell
           : c == 5 ? g->inside
           : c == 6 ? (generated ? e->gen.distance : e->rec_distance)
           : c == 7 ? (generated ? untrained->gen.distance : untrained->rec_distance)
                    : (generated ? e->gen.mem.ratio : NAN);
}

static void gstats(const eval_run *x, int r, bool generated, int c, double *mean, double *sd) {
    double sum = 0, sq = 0;
    int n = 0;
    for (int s = 0; s < x->seeds_done; s++) {
        double v = gcolumn(&x->after[r][s], &x->before[r][s], generated, c);
        if (isnan(v)) continue;
        sum += v;
        sq += v * v;
        n++;
    }
    *mean = n ? sum / n : NAN;
    *sd = n > 1 ? sqrt(fmax(0, (sq - n * *mean * *mean) / (n - 1))) : 0;
}

static void write_geometry_row(FILE *f, const eval_run *x, int r, bool generated,
                               const char *name) {
    fprintf(f, "| %s", name);
    for (int c = 0; c < GCOLUMNS; c++) {
        double mean, sd;
        gstats(x, r, generated, c, &mean, &sd);
        if (isnan(mean))
            fprintf(f, " | -");
        else
            fprintf(f, c == 4 || c == 8 ? " | %.2f +- %.2f" : " | %.1f +- %.1f", mean, sd);
    }
    fprintf(f, " |\n");
}

static void write_geometry(FILE *f, const eval_run *x) {
    int first = -1;
    for (int r = 0; r < ROWS && first < 0; r++)
        if (row_ran(x->a, r)) first = r;
    if (first < 0) return;
    const banis_eval *e0 = &x->after[first][0];
    fprintf(f,
            "\n## What each model delivers: the geometry of its pairs\n\nNo ground truth used "
            "(the segmentation of gmi.md's Geometry section, docs/results.md): BANIS's %d "
            "generated pairs G_A(z), G_B(z), and each model's translations of the test pairs "
            "taken as pairs (A_rec, B_rec), against the real test pairs. Geometry distance: the "
            "Frechet distance on the geometry features of sets of %d pairs against half of the "
            "real test pairs (0: alike); untrained: the same networks before training. "
            "Memorisation: the median distance of a generated pair to its nearest training "
            "pair over that of a real test pair (1: as near as new data; below %.1f: flagged).\n\n",
            e0->gen.pairs ? e0->gen.pairs : BANIS_GEN_PAIRS, x->n_test / 2, MEM_FLAG_RATIO);
    fprintf(f,
            "| pairs | GMI of the pairs TS 0.1 | 0.2 | 0.3 | cells per embryo | nuclei per cell | "
            "nucleus signal inside cells %% | geometry distance | untrained | memorisation "
            "|\n|---|---|---|---|---|---|---|---|---|---|\n");
    fprintf(
        f,
        "| real test pairs | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.2f (half against half) "
        "| | |\n",
        e0->real_gmi[0], e0->real_gmi[1], e0->real_gmi[2], e0->real_geometry.cells,
        e0->real_geometry.nuclei_per_cell, e0->real_geometry.inside, e0->real_distance);
    if (x->a->run[M_BANIS]) write_geometry_row(f, x, M_BANIS, true, "BANIS, generated pairs");
    char name[80];
    for (int r = 0; r < ROWS; r++) {
        if (!row_ran(x->a, r)) continue;
        snprintf(name, sizeof name, "%s, translations", row_names[r]);
        write_geometry_row(f, x, r, false, name);
    }
    fprintf(f,
            "\n![geometry](geometry.png)\n\ngeometry.png rows: real test pairs,%s then each "
            "model's translations of them as in Fig. 3 (seed 100); each pair: overlay | its "
            "segmentation (walls grey, cells coloured, nucleus pixels green in a cell, red "
            "elsewhere).\n",
            x->a->run[M_BANIS] ? " BANIS's first generated pairs," : "");
    int flagged = 0;
    for (int s = 0; s < x->seeds_done && x->a->run[M_BANIS]; s++)
        flagged += x->after[M_BANIS][s].gen.mem.flagged;
    if (flagged)
        fprintf(f,
                "\n**BANIS memorised in %d of %d seeds: its generated pairs are near copies of "
                "training pairs.**\n",
                flagged, x->seeds_done);
}

// Whether each trained model learned: its ground-truth Dice against its untrained networks'.
#define LEARNED_MARGIN 0.05 // Dice points above the untrained mean, at the least
static void write_learned(FILE *f, const eval_run *x) {
    fprintf(f,
            "Learned? Each model's ground-truth Dice after training against its untrained "
            "networks' (same seeds); a model is said to have learned a channel when the mean "
            "is at least %.2f above the untrained mean:\n\n",
            LEARNED_MARGIN);
    for (int k = 0; k < TRAINED; k++) {
        if (!x->a->run[k]) continue;
        fprintf(f, "- %s:", row_names[k]);
        for (int c = 3; c <= 4; c++) {
            double m1, s1, m0, s0;
            stats(x->after[k], x->seeds_done, c, &m1, &s1);
            stats(x->before[k], x->seeds_done, c, &m0, &s0);
            fprintf(f, "%s %s Dice %.3f (untrained %.3f): %s", c == 3 ? "" : ";",
                    c == 3 ? "membrane" : "nuclei", m1, m0,
                    m1 >= m0 + LEARNED_MARGIN ? "learned" : "**not learned**");
        }
        double first = 0, last = 0; // its own objective, the mean over seeds
        for (int s = 0; s < x->seeds_done; s++) {
            first += x->objective[k][s][0] / x->seeds_done;
            last += x->objective[k][s][1] / x->seeds_done;
        }
        fprintf(f, "; its %s %.4f over the first tenth of its steps, %.4f over the last\n",
                objective_names[k], first, last);
    }
}

// Which row leads on each score (GMI at TS 0.3, membrane Dice, nuclei Dice), among the trained
// models and the gamed row.
static void write_leaders(FILE *f, const eval_run *x) {
    const int cols[3] = {2, 3, 4};
    const char *names[3] = {"GMI at TS 0.3", "membrane Dice", "nuclei Dice"};
    fprintf(f, "\nHighest mean:");
    for (int i = 0; i < 3; i++) {
        int best = -1;
        double best_v = -INFINITY;
        for (int r = 0; r < ROWS; r++) {
            double m, sd;
            if (!row_ran(x->a, r)) continue;
            stats(x->after[r], x->seeds_done, cols[i], &m, &sd);
            if (m > best_v) best_v = m, best = r;
        }
        fprintf(f, "%s %s %s", i ? ";" : "", names[i], best >= 0 ? row_names[best] : "-");
    }
    fprintf(f, ".\n");
}

static int write_table(const char *path, const eval_run *x) {
    const eval_args *a = x->a;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        err_set("cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f, "# Table 1 on synthetic embryos (%s preset%s)\n\n", a->p.name,
            strcmp(a->p.name, "paper") ? ": a reduced schedule and network, not the paper's" : "");
    fprintf(f,
            "Written by `banis-eval --preset %s --seeds %d`%s; %s, %d test pairs (split %s); "
            "every model trained with seeds 100 to %d.\n\n",
            a->p.name, a->seeds,
            x->seeds_done < a->seeds ? " (written after each seed: not all done)" : "",
            x->d->source, x->n_test, x->split_how, 99 + x->seeds_done);
    write_settings(f, x);
    fprintf(f,
            "\nAfter training: mean +- std over %d seeds. GMI %% counts the test pairs whose "
            "reconstructions (A_rec = B->A of the pair's B, B_rec = A->B of its A) overlap with "
            "Dice < TS (higher is better; two empty masks are not a match). The ground-truth "
            "columns score the same reconstructions against the true membrane and nucleus "
            "masks.\n\n",
            x->seeds_done);
    write_rows(f, x, x->after);
    if (a->run[M_BANIS]) {
        double m, sd;
        stats(x->after[M_BANIS], x->seeds_done, -1, &m, &sd);
        fprintf(f,
                "\nBANIS's generated membrane images G_A(z): diversity %.3f +- %.3f (mean "
                "pairwise L1 of 16 over that of 16 real images; 1: as varied as the data).\n",
                m, sd);
    }
    fprintf(f, "\nBefore training (the same networks at their initial weights):\n\n");
    write_rows(f, x, x->before);
    fprintf(f, "\n");
    write_learned(f, x);
    write_leaders(f, x);
    write_geometry(f, x);
    fprintf(f,
            "\nThe paper's Table 1 (real C. elegans data, full schedule): BANIS 75.26 / 87.27 / "
            "95.39, Cycle-GAN 69.04 / 82.89 / 90.14, Auto-Encoder 71.48 / 83.86 / 90.91. As the "
            "paper notes, GMI rewards low overlap, so a model that draws fewer nuclei scores "
            "better; the nuclei-dropped row does that on purpose, and the ground-truth columns "
            "show what it costs.\n\n![Fig. 3](fig3.png)\n\nfig3.png rows: real test pairs, then");
    for (int r = 0; r < ROWS; r++)
        if (row_ran(a, r)) fprintf(f, " %s;", row_names[r]);
    fprintf(f, " each of seed 100. Each cell: A | B | overlay (membrane magenta, nuclei green); "
               "model rows show A_rec = B->A and B_rec = A->B of the real pair above.\n");
    if (fclose(f) || rename(tmp, path)) {
        err_set("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

// ---- the whole evaluation --------------------------------------------------------------------

// geometry.png: the segmentation of Fig. 3's real test pairs, of BANIS's first generated pairs
// (seed 1), then of each row's translations (Fig. 3's rows).
static int write_geometry_png(const char *path, const eval_run *x, const float *fig_a,
                              const float *fig_b, int fig_rows_done) {
    bool gen = x->a->run[M_BANIS];
    int rows = 1 + gen + fig_rows_done;
    size_t row = (size_t)FIG_PAIRS * BANIS_PIXELS;
    float *a = malloc(sizeof(float) * row * (size_t)rows),
          *b = malloc(sizeof(float) * row * (size_t)rows);
    int rc = a && b ? 0 : -1;
    if (!rc) {
        memcpy(a, fig_a, sizeof(float) * row);
        memcpy(b, fig_b, sizeof(float) * row);
        if (gen) {
            memcpy(a + row, x->gen_a, sizeof(float) * row);
            memcpy(b + row, x->gen_b, sizeof(float) * row);
        }
        memcpy(a + row * (1 + gen), fig_a + row, sizeof(float) * row * (size_t)fig_rows_done);
        memcpy(b + row * (1 + gen), fig_b + row, sizeof(float) * row * (size_t)fig_rows_done);
        rc = geometry_write_png(path, a, b, rows * FIG_PAIRS, FIG_PAIRS);
    } else
        err_set("%s: out of memory", path);
    free(a);
    free(b);
    return rc;
}

static void print_scores(int s, int r, const char *when, const banis_eval *e) {
    printf("seed %d %-28s %-9s GMI %5.1f %5.1f %5.1f  membrane Dice %.3f  nuclei Dice %.3f  "
           "empty %d\n",
           s + 1, row_names[r], when, e->gmi[0], e->gmi[1], e->gmi[2], e->membrane_dice,
           e->nuclei_dice, e->empty_pairs);
}

// Model k for seed s: scored untrained, trained, scored again (with the nuclei-dropped row for
// the Auto-Encoder); seed 1's translations go into Fig. 3 at row slot fig_at.
static int run_one(eval_run *x, int k, int s, const banis_split *split, float *fig_a, float *fig_b,
                   int *fig_at) {
    const eval_args *a = x->a;
    model m;
    int rc = model_new(&a->p, k, 100 + (uint64_t)s, a->dev, &m);
    int rows[2] = {k, k == M_AE ? M_AE_DROP : -1};
    for (int i = 0; i < 2 && !rc && rows[i] >= 0; i++) {
        rc = score(rows[i], &m, a->dev, x->d, split, &x->before[rows[i]][s]);
        if (!rc) print_scores(s, rows[i], "untrained", &x->before[rows[i]][s]);
    }
    if (!rc)
        rc = train(&a->p, k, s + 1, 100 + (uint64_t)s, a->dev, x->d, split, &m, x->objective[k][s]);
    for (int i = 0; i < 2 && !rc && rows[i] >= 0; i++) {
        rc = score(rows[i], &m, a->dev, x->d, split, &x->after[rows[i]][s]);
        if (!rc) print_scores(s, rows[i], "trained", &x->after[rows[i]][s]);
        if (!rc && s == 0) {
            size_t at = (size_t)++ * fig_at * FIG_PAIRS * BANIS_PIXELS;
            rc = fig_rows(rows[i], &m, a->dev, x->d, split->test, fig_a + at, fig_b + at);
        }
        if (!rc && s == 0 && k == M_BANIS) // the first of the generated pairs it scored
            rc = banis_generate_pairs(m.bm, FIG_PAIRS, BANIS_GEN_SEED, x->gen_a, x->gen_b);
    }
    if (rc) fprintf(stderr, "banis-eval: %s seed %d: %s\n", row_names[k], s + 1, err_message());
    model_free(&m);
    return rc;
}

int main(int argc, char **argv) {
    eval_args args;
    int rc = parse_args(argc, argv, &args);
    if (rc >= 0) return rc;
    rc = 0;
    const banis_preset *p = &args.p;
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, p->n_synthetic, 1);
    if (!d) {
        fprintf(stderr, "banis-eval: out of memory for %d synthetic pairs\n", p->n_synthetic);
        return 1;
    }
    banis_split split;
    if (banis_split_data(d, 0.1, 1, &split)) {
        fprintf(stderr, "banis-eval: %s\n", err_message());
        banis_dataset_free(d);
        return 1;
    }
    if (split.n_test < FIG_PAIRS) { // the preset's data set is too small for Fig. 3
        fprintf(stderr, "banis-eval: %d test pairs; Fig. 3 needs %d\n", split.n_test, FIG_PAIRS);
        banis_split_free(&split);
        banis_dataset_free(d);
        return 1;
    }
    printf("banis-eval, %s preset: %s, %d train / %d test pairs, %d seeds\n", p->name, d->source,
           split.n_train, split.n_test, args.seeds);
    for (int k = 0; k < TRAINED; k++)
        if (args.run[k])
            printf("  %-12s %lld steps, batch %d, width %.3g\n", row_names[k],
                   (long long)model_steps(p, k), p->sched.batch,
                   k == M_CYCLEGAN ? p->cyclegan_width : p->arch.width);
    static banis_eval after[ROWS][MAX_SEEDS], before[ROWS][MAX_SEEDS];
    eval_run x = {.a = &args,
                  .d = d,
                  .n_test = split.n_test,
                  .split_how = split.how,
                  .after = after,
                  .before = before};
    // Fig. 3's rows: the real test pairs, then each row's translations of them (seed 1)
    size_t fig_size = sizeof(float) * BANIS_PIXELS * FIG_PAIRS * (ROWS + 1);
    float *fig_a = malloc(fig_size), *fig_b = malloc(fig_size);
    for (int i = 0; i < FIG_PAIRS && fig_a && fig_b; i++) {
        memcpy(fig_a + (size_t)i * BANIS_PIXELS, d->a + (size_t)split.test[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
        memcpy(fig_b + (size_t)i * BANIS_PIXELS, d->b + (size_t)split.test[i] * BANIS_PIXELS,
               sizeof(float) * BANIS_PIXELS);
    }
    static float gen_a[FIG_PAIRS * BANIS_PIXELS], gen_b[FIG_PAIRS * BANIS_PIXELS];
    x.gen_a = gen_a;
    x.gen_b = gen_b;
    rc = fig_a && fig_b ? 0 : -1;
    int fig_at = 0, runs = 0, runs_done = 0;
    for (int k = 0; k < TRAINED; k++) runs += args.run[k] * args.seeds;
    char table[4096], fig[4096], geo[4096];
    snprintf(table, sizeof table, "%s/table1.md", args.out);
    snprintf(fig, sizeof fig, "%s/fig3.png", args.out);
    snprintf(geo, sizeof geo, "%s/geometry.png", args.out);
    double t_all = now_seconds();
    for (int s = 0; s < args.seeds && !rc; s++) {
        for (int k = 0; k < TRAINED && !rc; k++) {
            if (!args.run[k]) continue;
            double t0 = now_seconds();
            rc = run_one(&x, k, s, &split, fig_a, fig_b, &fig_at);
            double took = now_seconds() - t0;
            x.seconds[k] += took;
            // what is left: each model's runs to come at its mean so far
            double left = 0, done = now_seconds() - t_all;
            bool known = true;
            for (int j = 0; j < TRAINED; j++) {
                int done_j = s + (j <= k);
                if (!args.run[j]) continue;
                if (!done_j)
                    known = false; // not run once yet: no estimate
                else
                    left += x.seconds[j] / done_j * (args.seeds - done_j);
            }
            char t_done[32], t_left[32];
            fmt_duration(done, t_done, sizeof t_done);
            fmt_duration(left, t_left, sizeof t_left);
            printf("run %d/%d done (%s seed %d, %.0f s); %s so far, %s%s to go\n", ++runs_done,
                   runs, row_names[k], s + 1, took, t_done, known ? "about " : "more than ",
                   t_left);
            fflush(stdout);
        }
        // the table so far, after every seed: a run stopped part way keeps what it finished
        x.seeds_done = s + 1;
        if (!rc && (write_table(table, &x) ||
                    banis_write_pairs_png(fig, fig_a, fig_b, FIG_PAIRS * (fig_at + 1), FIG_PAIRS) ||
                    write_geometry_png(geo, &x, fig_a, fig_b, fig_at))) {
            fprintf(stderr, "banis-eval: %s\n", err_message());
            rc = -1;
        }
        if (!rc)
            printf("wrote %s, %s and %s: %d of %d seeds (%.0f s)\n", table, fig, geo, s + 1,
                   args.seeds, now_seconds() - t_all);
    }
    free(fig_a);
    free(fig_b);
    banis_split_free(&split);
    banis_dataset_free(d);
    return rc ? 1 : 0;
}
