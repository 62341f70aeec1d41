// banis-train: trains BANIS on paired membrane/nuclei images (the built-in synthetic embryos
// by default), writing checkpoints, metrics (CSV + TensorBoard), sample grids and a GMI table.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
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
#include "../nn/tensorboard.h"

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
    bool no_graphs; // --cuda-graphs off
} config;

static volatile sig_atomic_t interrupted;
static void on_sigint(int s) {
    (void)s;
    interrupted = 1;
}

// The presets (banis/presets.h) say whose settings they are; here, what each logs and keeps.
static void preset(config *c, const char *name) {
    banis_preset p;
    if (!banis_preset_get(name, &p)) banis_preset_get("cpu", &p); // callers check the name
    snprintf(c->preset, sizeof c->preset, "%s", p.name);
    c->arch = p.arch;
    c->sched = p.sched;
    c->n_synthetic = p.n_synthetic;
    c->keep = 5;
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

// What a run with --identical-gen off is called wherever it reports (its log and its gmi.md).
static const char ABLATION_IDENTICAL_GEN[] =
    "ABLATION (not BANIS: --identical-gen off, the Successors are not trained towards G's images)";

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
static void save_config(nn_checkpoint *ck, const config *c) {
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
    save_config(&ck, c);
    nn_ckpt_set_meta(&ck, "step", "%" PRId64, step);
    int rc = nn_ckpt_save(&ck, path);
    nn_ckpt_free(&ck);
    return rc;
}

static int save_checkpoint(banis_model *m, const config *c, int64_t step, const char *path) {
    return save_checkpoint_as(m, c, step, path, true);
}

// Keeps the newest `keep` periodic checkpoints (checkpoint_step_NNNNNN: names sort by step).
static void prune_checkpoints(const char *dir, int keep) {
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), seen = 0;
    for (int i = n - 1; i >= 0; i--) {
        const char *name = list[i]->d_name;
        size_t len = strlen(name);
        if (!strncmp(name, "checkpoint_step_", 16) && len > 12 &&
            !strcmp(name + len - 12, ".safetensors") && ++seen > keep) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", dir, name);
            unlink(p);
        }
        free(list[i]);
    }
    if (n >= 0) free(list);
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

// A folder holds a run once it has a checkpoint or metrics.
static bool holds_run(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/checkpoint_latest.safetensors", dir);
    if (!access(p, F_OK)) return true;
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    return !access(p, F_OK);
}

// One banis-train per run folder: an exclusive lock on DIR/.lock, holding our pid. Returns the
// descriptor (kept open for the run), or -1 with a message naming the process that holds it.
static int lock_run(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "banis-train: cannot open %s: %s\n", p, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fprintf(
            stderr,
            "banis-train: %s is in use by another banis-train (process %s); wait for it or choose "
            "another --out\n",
            dir, *pid ? pid : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) ||
        pwrite(fd, pid, (size_t)n, 0) != n) { /* the lock holds without the pid */
    }
    return fd;
}

// Temporary checkpoint files left by a killed run (we hold the folder's lock: none is live).
static int remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".safetensors.tmp");
        if (strncmp(e->d_name, "checkpoint_", 11) || !t) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        n += unlink(p) == 0;
    }
    closedir(d);
    return n;
}

// A resumed run continues metrics.csv from the checkpoint's step: later rows (written after the
// checkpoint by the run that stopped) are dropped, so no step appears twice.
static int truncate_metrics(const char *path, int64_t step) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char tmp[4200], line[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return -1;
    }
    int dropped = 0;
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        if (!header && strtoll(line, NULL, 10) > step) {
            dropped++;
            continue;
        }
        header = false;
        fputs(line, o);
    }
    fclose(f);
    if (fclose(o) || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return dropped;
}

// ---- arguments -------------------------------------------------------------------------------
// What this invocation asked for beside the run's configuration.
typedef struct {
    const char *resume; // the run folder to continue, or NULL
    bool out_given;
    tensor_device_type dev;
    char ckpt_path[2048]; // the run's checkpoint_latest.safetensors
} invocation;

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
            strcmp(a, "--cuda-graphs")) {
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
static int parse_args(int argc, char **argv, config *c, invocation *inv) {
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
        fprintf(stderr,
                "banis-train: unknown preset '%s' (paper, reference, cpu, cpu-long or tiny)\n",
                preset_name);
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

// The run folder, locked for this process. A fresh run never writes into a folder that holds
// one: refused when --out named it; the default folder moves on to runs/banis-2, -3, ... and
// says so. Returns the lock's descriptor, or -1 (said).
static int open_run_folder(config *c, const invocation *inv, char *samples, size_t size) {
    if (!inv->resume && holds_run(c->out)) {
        if (inv->out_given) {
            fprintf(stderr,
                    "banis-train: %s holds a run already (checkpoint/metrics); continue it with "
                    "--resume %s, "
                    "or choose another --out\n",
                    c->out, c->out);
            return -1;
        }
        char base[sizeof c->out];
        snprintf(base, sizeof base, "%s", c->out);
        for (int k = 2; holds_run(c->out) && k < 10000; k++)
            snprintf(c->out, sizeof c->out, "%.1000s-%d", base, k);
        printf("%s holds an earlier run: this run goes to %s\n", base, c->out);
    }
    if (files_make_dirs(c->out)) {
        fprintf(stderr, "banis-train: cannot create %s: %s\n", c->out, strerror(errno));
        return -1;
    }
    int lock_fd = lock_run(c->out);
    if (lock_fd < 0) return -1;
    int stale = remove_stale_temporaries(c->out);
    if (stale)
        printf("removed %d temporary checkpoint file%s left by a run that was killed\n", stale,
               stale > 1 ? "s" : "");
    snprintf(samples, size, "%s/samples", c->out);
    mkdir(samples, 0755);
    return lock_fd;
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
    int dropped = truncate_metrics(path, r->step);
    if (dropped < 0) {
        fprintf(stderr, "banis-train: cannot rewrite %s: %s\n", path, strerror(errno));
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
    printf("BANIS: %s preset on %s; data: %s (%d train / %d test pairs)\n", c->preset,
           backend_device_description(r->inv.dev), r->d->source, r->split.n_train, r->split.n_test);
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
        prune_checkpoints(c->out, c->keep);
    }
    return 0;
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
        tensor_scope_begin();
        banis_sampler_next(&r->sampler, c->sched.batch, r->idx);
        tensor *a, *b;
        int err = banis_batch(r->d, r->idx, c->sched.batch, TENSOR_F32, r->inv.dev, &a, &b) ||
                  banis_train_step(r->m, r->step, a, b, &l);
        tensor_scope_end();
        if (err) {
            fprintf(stderr, "\nbanis-train: step %" PRId64 ": %s\nthe last good checkpoint is %s\n",
                    r->step, err_message(), r->ckpt_path);
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
    banis_watch_describe(&r->watch, e.notes, sizeof e.notes);
    char title[512], path[4096];
    snprintf(title, sizeof title, "%s, %s preset, %" PRId64 " steps, %s",
             r->c.sched.identical_gen ? "BANIS" : ABLATION_IDENTICAL_GEN, r->c.preset, r->total,
             r->d->source);
    snprintf(path, sizeof path, "%s/gmi.md", r->c.out);
    if (banis_write_gmi_table(path, &e, title)) {
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
    int rc = parse_args(argc, argv, &r.c, &r.inv);
    if (rc >= 0) return rc;
    if (!(r.d = open_data(&r.c))) return 1;
    r.split = banis_split_make(r.d->n, 0.1, r.c.seed);
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
    int lock_fd = open_run_folder(&r.c, &r.inv, r.samples, sizeof r.samples);
    if (lock_fd < 0 || (r.inv.resume && resume_run(&r))) {
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
    close(lock_fd);
    return rc;
}
