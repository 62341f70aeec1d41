// banis-train's flags and configuration (banis_train.h).
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../banis/presets.h"
#include "../nn/safetensors.h"
#include "../ops/cuda/cuda.h"
#include "../tensor/error.h"
#include "banis_train.h"

const char ABLATION_IDENTICAL_GEN[] =
    "ABLATION (not BANIS: --identical-gen off, the Successors are not trained towards G's images)";

// The presets (banis/presets.h) say whose settings they are; here, what each logs and keeps.
static void preset(config *c, const char *name) {
    banis_preset p;
    if (!banis_preset_get(name, &p)) banis_preset_get("cpu", &p); // callers check the name
    snprintf(c->preset, sizeof c->preset, "%s", p.name);
    c->arch = p.arch;
    c->sched = p.sched;
    c->n_synthetic = p.n_synthetic;
    c->keep = 5;
    c->score_pairs = BANIS_GEN_PAIRS;
    c->log_every = 50;
    c->sample_every = c->ckpt_every = 1000;
    if (!strcmp(name, "cpu")) {
        c->log_every = 10;
        c->sample_every = 80;
        c->ckpt_every = 100;
    } else if (!strcmp(name, "cpu-long")) {
        c->sample_every = c->ckpt_every = 500;
    } else if (!strcmp(name, "gpu-short")) { // its grids and checkpoint at the end, 1,600
        c->log_every = 100;
        c->sample_every = c->ckpt_every = 800;
    } else if (!strcmp(name, "tiny")) {
        c->log_every = 1;
        c->sample_every = c->ckpt_every = 4;
    }
}

static int usage(int rc) {
    fprintf(
        rc ? stderr : stdout,
        "usage: banis-train [options]\n"
        "Trains BANIS on paired two-channel images (A = membrane, B = nuclei).\n\n"
        "  --preset NAME             paper: the paper's sizes, rates and 17k+13k+10k steps;\n"
        "                            reference: the authors' code (SGD 5e-5, no halving, G's\n"
        "                            batch-norm statistics shared); cpu: a reduced model and\n"
        "                            schedule for minutes on 2 cores; cpu-long: ~40 minutes\n"
        "                            over 12,000 pairs; gpu-short: the paper's networks and\n"
        "                            batch for ~3 minutes on an H200; tiny: seconds (tests).\n"
        "                            Default: paper on a GPU, cpu without one\n"
        "  --data SRC                'synthetic' (default), a folder of raw images (layout\n"
        "                            detected: see banis-data prepare), or a set made by\n"
        "                            banis-data (DIR/dataset.safetensors)\n"
        "  --n-synthetic N           pairs to generate for --data synthetic\n"
        "  --warmup N --stage2 N --stage3 N   stage lengths in steps (Pioneers only; S and C at\n"
        "                            the initial rate; S and C at the decayed rate)\n"
        "  --batch N                 pairs per step\n"
        "  --lr-d R --lr-g-a R --lr-g-b R --lr-sc R   Adam rates (D, G_A, G_B), rate of S and C\n"
        "  --sc-optim sgd|adam       optimizer of the Successors and Coordinators (paper: sgd)\n"
        "  --g-bn-stats per-input|shared   G's batch-norm running statistics: one set for z and\n"
        "                            one for encoder codes (default), or one shared set (the\n"
        "                            reference code; G then collapses in inference on z)\n"
        "  --identical-gen on|off    off: an ablation, not BANIS: the Successors are not\n"
        "                            trained towards G's images (the identical loss keeps\n"
        "                            its half on the real pairs). Default on\n"
        "  --width F                 channel multiplier (1 = the paper's network)\n"
        "  --seed N                  seeds weights, data, split, noise\n"
        "  --device auto|cuda|cpu    auto: CUDA when a GPU is there, else the CPU\n"
        "  --cuda-graphs on|off      on CUDA, capture each kind of step's first run as a CUDA\n"
        "                            graph and replay it after (default on; the same numbers)\n"
        "  --out DIR                 run folder (default runs/banis)\n"
        "  --resume DIR              continue the run in DIR where it stopped\n"
        "  --max-steps N             stop after N steps of this invocation (checkpoint saved;\n"
        "                            --resume continues)\n"
        "  --log-every N --sample-every N --ckpt-every N\n"
        "  --keep N                  periodic checkpoints kept (default 5; weights only: the\n"
        "                            optimizer state is in checkpoint_latest)\n"
        "  --score-pairs N           generated pairs scored at the end, in gmi.md (default 1000;\n"
        "                            0: none)\n"
        "Run folder: checkpoint_latest.safetensors (+ periodic), metrics.csv, TensorBoard events,\n"
        "samples/*.png, gmi.md. Ctrl-C saves a checkpoint and exits; --resume continues.\n");
    return rc;
}
static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "banis-train: %s takes an integer in [%ld, %ld]\n", flag, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_real(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "banis-train: %s takes a number in [%g, %g]\n", flag, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

// Metadata keys the run's configuration is saved under, so --resume needs no flags.
void banis_train_save_config(nn_checkpoint *ck, const config *c) {
    nn_ckpt_set_meta(ck, "config.preset", "%s", c->preset);
    nn_ckpt_set_meta(ck, "config.data", "%s", c->data);
    nn_ckpt_set_meta(ck, "config.n_synthetic", "%d", c->n_synthetic);
    nn_ckpt_set_meta(ck, "config.width", "%.17g", c->arch.width);
    nn_ckpt_set_meta(ck, "config.latent", "%d", c->arch.latent);
    nn_ckpt_set_meta(ck, "config.batch", "%d", c->sched.batch);
    nn_ckpt_set_meta(ck, "config.stages", "%" PRId64 " %" PRId64 " %" PRId64, c->sched.warmup_steps,
                     c->sched.stage2_steps, c->sched.stage3_steps);
    nn_ckpt_set_meta(ck, "config.rates", "%.17g %.17g %.17g %.17g %.17g", c->sched.lr_d[0],
                     c->sched.lr_d[1], c->sched.lr_g[0], c->sched.lr_g[1], c->sched.lr_sc);
    nn_ckpt_set_meta(ck, "config.sc_optim", "%s", c->sched.sc_adam ? "adam" : "sgd");
    nn_ckpt_set_meta(ck, "config.sc_decay", "%.17g", c->sched.sc_decay);
    nn_ckpt_set_meta(ck, "config.g_bn_sets", "%d", c->arch.g_bn_sets);
    nn_ckpt_set_meta(ck, "config.identical_gen", "%s", c->sched.identical_gen ? "on" : "off");
    nn_ckpt_set_meta(ck, "config.seed", "%" PRIu64, c->seed);
}

static int load_config(const char *path, config *c) {
    st_file *f = st_open(path);
    if (!f) return -1;
    const char *v;
    int ok = 1;
#define GET(key) ((v = st_meta_get(f, key)) ? v : (ok = 0, ""))
    preset(c, GET("config.preset"));
    snprintf(c->data, sizeof c->data, "%s", GET("config.data"));
    c->n_synthetic = atoi(GET("config.n_synthetic"));
    c->arch.width = atof(GET("config.width"));
    c->arch.latent = atoi(GET("config.latent"));
    c->sched.batch = atoi(GET("config.batch"));
    if (sscanf(GET("config.stages"), "%" SCNd64 " %" SCNd64 " %" SCNd64, &c->sched.warmup_steps,
               &c->sched.stage2_steps, &c->sched.stage3_steps) != 3)
        ok = 0;
    if (sscanf(GET("config.rates"), "%lf %lf %lf %lf %lf", &c->sched.lr_d[0], &c->sched.lr_d[1],
               &c->sched.lr_g[0], &c->sched.lr_g[1], &c->sched.lr_sc) != 5)
        ok = 0;
    // absent in checkpoints written before --sc-optim existed: those runs used SGD
    c->sched.sc_adam = (v = st_meta_get(f, "config.sc_optim")) && !strcmp(v, "adam");
    // absent before the reference preset and the per-input statistics: halving, one set
    c->sched.sc_decay = (v = st_meta_get(f, "config.sc_decay")) ? atof(v) : 0.5;
    c->arch.g_bn_sets = (v = st_meta_get(f, "config.g_bn_sets")) ? atoi(v) : 1;
    c->sched.identical_gen = !(v = st_meta_get(f, "config.identical_gen")) || strcmp(v, "off");
    c->seed = strtoull(GET("config.seed"), NULL, 10);
#undef GET
    st_close(f);
    if (!ok) {
        err_set("%s: not a banis-train checkpoint (its run configuration is missing)", path);
        return -1;
    }
    return 0;
}

// ---- arguments -------------------------------------------------------------------------------
// What this invocation asked for beside the run's configuration.

// --device: the preset's default depends on it. -1: go on; otherwise the exit code.
static int choose_device(int argc, char **argv, config *c, tensor_device_type *dev) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            snprintf(c->device, sizeof c->device, "%s", argv[i + 1]);
    if (strcmp(c->device, "cpu") && strcmp(c->device, "cuda") && strcmp(c->device, "auto")) {
        fprintf(stderr, "banis-train: --device must be auto, cuda or cpu\n");
        return 2;
    }
    const backend *cuda = NULL;
    if (strcmp(c->device, "cpu")) {
        cuda = backend_cuda();
        if (!cuda && !strcmp(c->device, "cuda")) {
            fprintf(stderr, "banis-train: --device cuda: %s\n", err_message());
            return 1;
        }
        if (!cuda)
            fprintf(stderr, "banis-train: no GPU (%s); training on the CPU\n", err_message());
        if (cuda && !strcmp(c->device, "auto") &&
            backend_cuda_is_emulated()) { // auto never picks the emulator
            fprintf(stderr, "banis-train: --device auto does not train on the emulated CUDA "
                            "device; training on the "
                            "CPU (--device cuda to use it)\n");
            cuda = NULL;
        }
    }
    *dev = cuda ? DEVICE_CUDA : DEVICE_CPU;
    return -1;
}

// The flags that override the preset (or, resuming, the few a resumed run may change).
static int apply_flags(int argc, char **argv, config *c, bool resume) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double r;
        if (!strcmp(a, "--preset") || !strcmp(a, "--resume") || !strcmp(a, "--device")) {
            i++;
            continue;
        }
        if (resume && strcmp(a, "--log-every") && strcmp(a, "--sample-every") &&
            strcmp(a, "--ckpt-every") && strcmp(a, "--keep") && strcmp(a, "--max-steps") &&
            strcmp(a, "--score-pairs") && strcmp(a, "--cuda-graphs")) {
            fprintf(stderr,
                    "banis-train: %s cannot change a resumed run (its configuration is in the "
                    "checkpoint)\n",
                    a);
            return 2;
        }
        i++;
#define INT(flag, lo, hi, dst)                                                                     \
    else if (!strcmp(a, flag)) {                                                                   \
        if (parse_int(a, v, lo, hi, &n)) return 2;                                                 \
        dst = n;                                                                                   \
    }
#define REAL(flag, lo, hi, dst)                                                                    \
    else if (!strcmp(a, flag)) {                                                                   \
        if (parse_real(a, v, lo, hi, &r)) return 2;                                                \
        dst = r;                                                                                   \
    }
        if (!strcmp(a, "--data"))
            snprintf(c->data, sizeof c->data, "%s", v ? v : "");
        else if (!strcmp(a, "--out"))
            snprintf(c->out, sizeof c->out, "%s", v ? v : "");
        INT("--n-synthetic", 10, 1000000, c->n_synthetic)
        INT("--warmup", 0, 100000000, c->sched.warmup_steps)
        INT("--stage2", 0, 100000000, c->sched.stage2_steps)
        INT("--stage3", 0, 100000000, c->sched.stage3_steps)
        INT("--batch", 2, 65536, c->sched.batch)
        INT("--seed", 0, 2147483647, c->seed)
        INT("--max-steps", 1, 100000000, c->max_steps)
        INT("--log-every", 1, 1000000, c->log_every)
        INT("--sample-every", 1, 100000000, c->sample_every)
        INT("--ckpt-every", 1, 100000000, c->ckpt_every)
        INT("--keep", 0, 100000000, c->keep)
        INT("--score-pairs", 0, 1000000, c->score_pairs)
        REAL("--width", 0.01, 4, c->arch.width)
        REAL("--lr-d", 0, 10, c->sched.lr_d[0] = c->sched.lr_d[1])
        REAL("--lr-g-a", 0, 10, c->sched.lr_g[0])
        REAL("--lr-g-b", 0, 10, c->sched.lr_g[1])
        REAL("--lr-sc", 0, 10, c->sched.lr_sc)
#undef INT
#undef REAL
        else if (!strcmp(a, "--sc-optim")) {
            if (!v || (strcmp(v, "sgd") && strcmp(v, "adam"))) {
                fprintf(stderr, "banis-train: --sc-optim takes sgd or adam\n");
                return 2;
            }
            c->sched.sc_adam = !strcmp(v, "adam");
        }
        else if (!strcmp(a, "--cuda-graphs")) {
            if (!v || (strcmp(v, "on") && strcmp(v, "off"))) {
                fprintf(stderr, "banis-train: --cuda-graphs takes on or off\n");
                return 2;
            }
            c->no_graphs = !strcmp(v, "off");
        }
        else if (!strcmp(a, "--g-bn-stats")) {
            if (!v || (strcmp(v, "per-input") && strcmp(v, "shared"))) {
                fprintf(stderr, "banis-train: --g-bn-stats takes per-input or shared\n");
                return 2;
            }
            c->arch.g_bn_sets = strcmp(v, "shared") ? 2 : 1;
        }
        else if (!strcmp(a, "--identical-gen")) {
            if (!v || (strcmp(v, "on") && strcmp(v, "off"))) {
                fprintf(stderr, "banis-train: --identical-gen takes on or off\n");
                return 2;
            }
            c->sched.identical_gen = !strcmp(v, "on");
        }
        else {
            fprintf(stderr, "banis-train: unknown option %s\n", a);
            return usage(2);
        }
    }
    return -1;
}

// -1: go on; otherwise the exit code.
int banis_train_parse_args(int argc, char **argv, config *c, invocation *inv) {
    const char *preset_name = NULL;
    // first pass: preset and resume decide the defaults the other flags override
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(0);
        if ((!strcmp(argv[i], "--preset") || !strcmp(argv[i], "--resume") ||
             !strcmp(argv[i], "--out")) &&
            (i + 1 >= argc || argv[i + 1][0] == '-')) {
            fprintf(stderr, "banis-train: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--preset"))
            preset_name = argv[++i];
        else if (!strcmp(argv[i], "--resume"))
            inv->resume = argv[++i];
        else if (!strcmp(argv[i], "--out"))
            inv->out_given = ++i > 0;
    }
    if (preset_name && !banis_preset_get(preset_name, &(banis_preset){0})) {
        fprintf(stderr, "banis-train: unknown preset '%s' (", preset_name);
        for (int k = 0; k < BANIS_PRESETS; k++)
            fprintf(stderr, "%s%s", k ? ", " : "", banis_preset_names[k]);
        fprintf(stderr, ")\n");
        return 2;
    }
    snprintf(c->device, sizeof c->device, "auto");
    snprintf(c->out, sizeof c->out, "%s", inv->resume ? inv->resume : "runs/banis");
    snprintf(c->data, sizeof c->data, "synthetic");
    c->seed = 1;
    if (inv->resume) {
        snprintf(inv->ckpt_path, sizeof inv->ckpt_path, "%s/checkpoint_latest.safetensors",
                 inv->resume);
        if (load_config(inv->ckpt_path, c)) {
            fprintf(stderr, "banis-train: cannot resume: %s\n", err_message());
            return 1;
        }
    }
    int rc = choose_device(argc, argv, c, &inv->dev);
    if (rc >= 0) return rc;
    if (!inv->resume)
        preset(c, preset_name ? preset_name : inv->dev == DEVICE_CUDA ? "paper" : "cpu");
    return apply_flags(argc, argv, c, inv->resume != NULL);
}
