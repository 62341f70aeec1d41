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

#include "../ops/backend.h"
#include "../tensor/error.h"
#include "model.h"
#include "tensorboard.h"

typedef struct {
    char preset[16];
    char data[1024];   // "synthetic", a folder of raw images, or a prepared .safetensors
    int n_synthetic;
    banis_arch arch;
    banis_schedule sched;
    uint64_t seed;
    char device[8];
    char out[1024];
    int log_every, sample_every, ckpt_every, keep;
    int64_t max_steps;
} config;

static volatile sig_atomic_t interrupted;
static void on_sigint(int s) { (void)s; interrupted = 1; }

// mkdir -p
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void preset(config *c, const char *name) {
    snprintf(c->preset, sizeof c->preset, "%s", name);
    c->arch = banis_arch_paper();
    c->sched = banis_schedule_paper();
    c->keep = 5;
    if (!strcmp(name, "cpu")) {
        // Minutes on 2 cores: a quarter of the channels, batch 16, a short schedule with the
        // paper's stage proportions, and rates for a few hundred steps instead of 40,000. Plain
        // SGD at any rate leaves the Successors' tanh saturated at -1 for hundreds of steps
        // (their loss sits at the images' mean square); Adam moves them off it within tens.
        c->arch.width = 0.25;
        c->sched.batch = 16;
        c->sched.warmup_steps = 200;
        c->sched.stage2_steps = 200;
        c->sched.stage3_steps = 80;
        c->sched.lr_d[0] = c->sched.lr_d[1] = 1e-4;
        c->sched.lr_g[0] = c->sched.lr_g[1] = 2e-4;
        c->sched.sc_adam = true;
        c->sched.lr_sc = 1e-3;
        c->n_synthetic = 1200;
        c->log_every = 10;
        c->sample_every = 80;
        c->ckpt_every = 100;
    } else if (!strcmp(name, "tiny")) { // for tests: seconds
        c->arch.width = 0.0625;
        c->arch.latent = 16;
        c->sched.batch = 4;
        c->sched.warmup_steps = 3;
        c->sched.stage2_steps = 3;
        c->sched.stage3_steps = 2;
        c->sched.sc_adam = true; // as the cpu preset
        c->sched.lr_sc = 1e-3;
        c->n_synthetic = 40;
        c->log_every = 1;
        c->sample_every = 4;
        c->ckpt_every = 4;
    } else { // paper
        c->n_synthetic = 2250; // 50 stacks x 15 slices x 3 embryos, as the paper's data
        c->log_every = 50;
        c->sample_every = 1000;
        c->ckpt_every = 1000;
    }
}

static int usage(int rc) {
    fprintf(rc ? stderr : stdout,
        "usage: banis-train [options]\n"
        "Trains BANIS on paired two-channel images (A = membrane, B = nuclei).\n\n"
        "  --preset cpu|paper|tiny   cpu: a reduced model and schedule that finishes in minutes on\n"
        "                            2 cores; paper: the paper's sizes and 17k+13k+10k steps;\n"
        "                            default: paper on a GPU, cpu without one\n"
        "  --data SRC                'synthetic' (default), a folder of raw side-by-side slices\n"
        "                            (membrane left, nuclei right), or a set made by banis-data\n"
        "                            (DIR/dataset.safetensors)\n"
        "  --n-synthetic N           pairs to generate for --data synthetic\n"
        "  --warmup N --stage2 N --stage3 N   stage lengths in steps (Pioneers only; S and C at\n"
        "                            the initial rate; S and C at the decayed rate)\n"
        "  --batch N                 pairs per step\n"
        "  --lr-d R --lr-g-a R --lr-g-b R --lr-sc R   Adam rates (D, G_A, G_B), rate of S and C\n"
        "  --sc-optim sgd|adam       optimizer of the Successors and Coordinators (paper: sgd)\n"
        "  --width F                 channel multiplier (1 = the paper's network)\n"
        "  --seed N                  seeds weights, data, split, noise\n"
        "  --device auto|cuda|cpu    auto: CUDA when a GPU is there, else the CPU\n"
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
    nn_ckpt_set_meta(ck, "config.rates", "%.17g %.17g %.17g %.17g %.17g", c->sched.lr_d[0], c->sched.lr_d[1],
                     c->sched.lr_g[0], c->sched.lr_g[1], c->sched.lr_sc);
    nn_ckpt_set_meta(ck, "config.sc_optim", "%s", c->sched.sc_adam ? "adam" : "sgd");
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
               &c->sched.stage2_steps, &c->sched.stage3_steps) != 3) ok = 0;
    if (sscanf(GET("config.rates"), "%lf %lf %lf %lf %lf", &c->sched.lr_d[0], &c->sched.lr_d[1],
               &c->sched.lr_g[0], &c->sched.lr_g[1], &c->sched.lr_sc) != 5) ok = 0;
    // absent in checkpoints written before --sc-optim existed: those runs used SGD
    c->sched.sc_adam = (v = st_meta_get(f, "config.sc_optim")) && !strcmp(v, "adam");
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
static int save_checkpoint_as(banis_model *m, const config *c, int64_t step, const char *path, bool full) {
    if (nn_check_finite(m->root)) { // never replace a good checkpoint with a poisoned one
        err_prefix("not writing %s: ", path);
        return -1;
    }
    nn_checkpoint ck = {0};
    if (full) banis_model_checkpoint(m, &ck);
    else nn_ckpt_add_module(&ck, "", m->root);
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
        if (!strncmp(name, "checkpoint_step_", 16) && len > 12 && !strcmp(name + len - 12, ".safetensors") &&
            ++seen > keep) {
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
        int w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19], h = (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23];
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
    float *ga = malloc(sizeof(float) * BANIS_PIXELS * (size_t)(n + 16)), *gb = malloc(sizeof(float) * BANIS_PIXELS * (size_t)(n + 16));
    nn_set_training(m->root, false);
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    tensor *A = nn_forward(m->gen[DOMAIN_A], z), *B = nn_forward(m->gen[DOMAIN_B], z);
    rc = !A || !B || tensor_to_host(tensor_cast(A, TENSOR_F32), ga) || tensor_to_host(tensor_cast(B, TENSOR_F32), gb);
    snprintf(path, sizeof path, "%s/step_%06" PRId64 "_generated.png", dir, step);
    if (!rc) rc = banis_write_pairs_png(path, ga, gb, n, 4);
    if (!rc && k > 0) {
        tensor *a, *b;
        rc = banis_batch(d, s->test, k, m->ctx.dtype, m->ctx.device, &a, &b);
        tensor *ar = rc ? NULL : banis_successor(m, DOMAIN_A, b), *br = rc ? NULL : banis_successor(m, DOMAIN_B, a);
        rc = !ar || !br || tensor_to_host(tensor_cast(ar, TENSOR_F32), ga) || tensor_to_host(tensor_cast(br, TENSOR_F32), gb);
        // rows: real pair, then its reconstruction A_rec = S_A(b) | B_rec = S_B(a)
        float *rows_a = malloc(sizeof(float) * BANIS_PIXELS * 16), *rows_b = malloc(sizeof(float) * BANIS_PIXELS * 16);
        for (int i = 0; i < k && !rc; i++) {
            memcpy(rows_a + (size_t)(2 * i) * BANIS_PIXELS, d->a + (size_t)s->test[i] * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS);
            memcpy(rows_b + (size_t)(2 * i) * BANIS_PIXELS, d->b + (size_t)s->test[i] * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS);
            memcpy(rows_a + (size_t)(2 * i + 1) * BANIS_PIXELS, ga + (size_t)i * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS);
            memcpy(rows_b + (size_t)(2 * i + 1) * BANIS_PIXELS, gb + (size_t)i * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS);
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
    return step < s->warmup_steps ? "warm-up" : step < s->warmup_steps + s->stage2_steps ? "S+C" : "S+C decayed";
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
        fprintf(stderr, "banis-train: %s is in use by another banis-train (process %s); wait for it or choose "
                        "another --out\n", dir, *pid ? pid : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)n, 0) != n) { /* the lock holds without the pid */ }
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

static const char *const presets[] = {"paper", "cpu", "tiny"};

int main(int argc, char **argv) {
    config c = {0};
    const char *resume = NULL, *preset_name = NULL;
    bool out_given = false;
    // first pass: preset and resume decide the defaults the other flags override
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(0);
        if ((!strcmp(argv[i], "--preset") || !strcmp(argv[i], "--resume") || !strcmp(argv[i], "--out")) &&
            (i + 1 >= argc || argv[i + 1][0] == '-')) {
            fprintf(stderr, "banis-train: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--preset")) preset_name = argv[++i];
        else if (!strcmp(argv[i], "--resume")) resume = argv[++i];
        else if (!strcmp(argv[i], "--out")) out_given = ++i > 0;
    }
    if (preset_name) {
        bool known = false;
        for (size_t k = 0; k < sizeof presets / sizeof *presets; k++) known = known || !strcmp(preset_name, presets[k]);
        if (!known) {
            fprintf(stderr, "banis-train: unknown preset '%s' (paper, cpu or tiny)\n", preset_name);
            return 2;
        }
    }
    snprintf(c.device, sizeof c.device, "auto");
    snprintf(c.out, sizeof c.out, "%s", resume ? resume : "runs/banis");
    snprintf(c.data, sizeof c.data, "synthetic");
    c.seed = 1;
    char ckpt_path[2048];
    if (resume) {
        snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint_latest.safetensors", resume);
        if (load_config(ckpt_path, &c)) {
            fprintf(stderr, "banis-train: cannot resume: %s\n", err_message());
            return 1;
        }
    }
    // device: the preset's default depends on it
    const backend *cuda = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--device") && i + 1 < argc) snprintf(c.device, sizeof c.device, "%s", argv[i + 1]);
    if (strcmp(c.device, "cpu") && strcmp(c.device, "cuda") && strcmp(c.device, "auto")) {
        fprintf(stderr, "banis-train: --device must be auto, cuda or cpu\n");
        return 2;
    }
    if (strcmp(c.device, "cpu")) {
        cuda = backend_cuda();
        if (!cuda && !strcmp(c.device, "cuda")) {
            fprintf(stderr, "banis-train: --device cuda: %s\n", err_message());
            return 1;
        }
        if (!cuda) fprintf(stderr, "banis-train: no GPU (%s); training on the CPU\n", err_message());
        if (cuda && !strcmp(c.device, "auto") && backend_cuda_is_emulated()) { // auto never picks the emulator
            fprintf(stderr, "banis-train: --device auto does not train on the emulated CUDA device; training on the "
                            "CPU (--device cuda to use it)\n");
            cuda = NULL;
        }
    }
    device_type dev = cuda ? DEVICE_CUDA : DEVICE_CPU;
    if (!resume) preset(&c, preset_name ? preset_name : cuda ? "paper" : "cpu");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double r;
        if (!strcmp(a, "--preset") || !strcmp(a, "--resume") || !strcmp(a, "--device")) { i++; continue; }
        if (resume && strcmp(a, "--log-every") && strcmp(a, "--sample-every") && strcmp(a, "--ckpt-every") &&
            strcmp(a, "--keep") &&
            strcmp(a, "--max-steps")) {
            fprintf(stderr, "banis-train: %s cannot change a resumed run (its configuration is in the checkpoint)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--data")) snprintf(c.data, sizeof c.data, "%s", v ? v : "");
        else if (!strcmp(a, "--out")) snprintf(c.out, sizeof c.out, "%s", v ? v : "");
        else if (!strcmp(a, "--n-synthetic")) { if (parse_int(a, v, 10, 1000000, &n)) return 2; c.n_synthetic = (int)n; }
        else if (!strcmp(a, "--warmup")) { if (parse_int(a, v, 0, 100000000, &n)) return 2; c.sched.warmup_steps = n; }
        else if (!strcmp(a, "--stage2")) { if (parse_int(a, v, 0, 100000000, &n)) return 2; c.sched.stage2_steps = n; }
        else if (!strcmp(a, "--stage3")) { if (parse_int(a, v, 0, 100000000, &n)) return 2; c.sched.stage3_steps = n; }
        else if (!strcmp(a, "--batch")) { if (parse_int(a, v, 2, 65536, &n)) return 2; c.sched.batch = (int)n; }
        else if (!strcmp(a, "--seed")) { if (parse_int(a, v, 0, 2147483647, &n)) return 2; c.seed = (uint64_t)n; }
        else if (!strcmp(a, "--max-steps")) { if (parse_int(a, v, 1, 100000000, &n)) return 2; c.max_steps = n; }
        else if (!strcmp(a, "--log-every")) { if (parse_int(a, v, 1, 1000000, &n)) return 2; c.log_every = (int)n; }
        else if (!strcmp(a, "--sample-every")) { if (parse_int(a, v, 1, 100000000, &n)) return 2; c.sample_every = (int)n; }
        else if (!strcmp(a, "--ckpt-every")) { if (parse_int(a, v, 1, 100000000, &n)) return 2; c.ckpt_every = (int)n; }
        else if (!strcmp(a, "--keep")) { if (parse_int(a, v, 0, 100000000, &n)) return 2; c.keep = (int)n; }
        else if (!strcmp(a, "--width")) { if (parse_real(a, v, 0.01, 4, &r)) return 2; c.arch.width = r; }
        else if (!strcmp(a, "--lr-d")) { if (parse_real(a, v, 0, 10, &r)) return 2; c.sched.lr_d[0] = c.sched.lr_d[1] = r; }
        else if (!strcmp(a, "--lr-g-a")) { if (parse_real(a, v, 0, 10, &r)) return 2; c.sched.lr_g[0] = r; }
        else if (!strcmp(a, "--lr-g-b")) { if (parse_real(a, v, 0, 10, &r)) return 2; c.sched.lr_g[1] = r; }
        else if (!strcmp(a, "--lr-sc")) { if (parse_real(a, v, 0, 10, &r)) return 2; c.sched.lr_sc = r; }
        else if (!strcmp(a, "--sc-optim")) {
            if (!v || (strcmp(v, "sgd") && strcmp(v, "adam"))) {
                fprintf(stderr, "banis-train: --sc-optim takes sgd or adam\n");
                return 2;
            }
            c.sched.sc_adam = !strcmp(v, "adam");
        }
        else { fprintf(stderr, "banis-train: unknown option %s\n", a); return usage(2); }
    }
    // ---- data
    banis_dataset *d;
    if (!strcmp(c.data, "synthetic")) {
        synth_config sc = synth_defaults();
        d = banis_synthetic(&sc, c.n_synthetic, c.seed);
    } else {
        struct stat st;
        if (stat(c.data, &st)) {
            fprintf(stderr, "banis-train: --data %s: %s\n", c.data, strerror(errno));
            return 1;
        }
        char prepared[sizeof c.data + 32];
        snprintf(prepared, sizeof prepared, "%s/dataset.safetensors", c.data);
        if (S_ISDIR(st.st_mode) && !access(prepared, R_OK)) {
            d = banis_dataset_load(prepared); // the folder `banis-data prepare` wrote
        } else if (S_ISDIR(st.st_mode)) {
            prepare_options po = prepare_defaults();
            d = banis_prepare(c.data, &po);
        } else d = banis_dataset_load(c.data);
    }
    if (!d) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return 1;
    }
    if (d->n < 2 * c.sched.batch && d->n < 20) {
        fprintf(stderr, "banis-train: %s has %d pairs; too few to train and test\n", d->source, d->n);
        return 1;
    }
    banis_split split = banis_split_make(d->n, 0.1, c.seed);
    banis_sampler sampler;
    banis_sampler_init(&sampler, split.train, split.n_train, c.seed + 7);
    // ---- model
    banis_model *m = banis_model_new(&c.arch, &c.sched, TENSOR_F32, dev, c.seed);
    if (!m) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return 1;
    }
    char path[4096], samples[2048];
    // A fresh run never writes into a folder that holds one: refused when --out named it; the
    // default folder moves on to runs/banis-2, -3, ... and says so.
    if (!resume && holds_run(c.out)) {
        if (out_given) {
            fprintf(stderr, "banis-train: %s holds a run already (checkpoint/metrics); continue it with --resume %s, "
                            "or choose another --out\n", c.out, c.out);
            return 1;
        }
        char base[sizeof c.out];
        snprintf(base, sizeof base, "%s", c.out);
        for (int k = 2; holds_run(c.out) && k < 10000; k++) snprintf(c.out, sizeof c.out, "%.1000s-%d", base, k);
        printf("%s holds an earlier run: this run goes to %s\n", base, c.out);
    }
    if (banis_make_dirs(c.out)) {
        fprintf(stderr, "banis-train: cannot create %s: %s\n", c.out, strerror(errno));
        return 1;
    }
    int lock_fd = lock_run(c.out);
    if (lock_fd < 0) return 1;
    int stale = remove_stale_temporaries(c.out);
    if (stale) printf("removed %d temporary checkpoint file%s left by a run that was killed\n", stale, stale > 1 ? "s" : "");
    snprintf(samples, sizeof samples, "%s/samples", c.out);
    mkdir(samples, 0755);
    int64_t step = 0, total = c.sched.warmup_steps + c.sched.stage2_steps + c.sched.stage3_steps;
    int *idx = malloc(sizeof(int) * (size_t)c.sched.batch);
    if (resume) {
        nn_checkpoint ck = {0};
        banis_model_checkpoint(m, &ck);
        st_file *f = NULL;
        if (nn_ckpt_load(&ck, ckpt_path, &f)) {
            fprintf(stderr, "banis-train: cannot resume: %s\n", err_message());
            return 1;
        }
        step = strtoll(st_meta_get(f, "step") ? st_meta_get(f, "step") : "0", NULL, 10);
        st_close(f);
        nn_ckpt_free(&ck);
        for (int64_t s = 0; s < step; s++) banis_sampler_next(&sampler, c.sched.batch, idx); // same data order
        printf("resumed %s at step %" PRId64 " of %" PRId64 "\n", c.out, step, total);
        snprintf(path, sizeof path, "%s/metrics.csv", c.out);
        int dropped = truncate_metrics(path, step);
        if (dropped < 0) {
            fprintf(stderr, "banis-train: cannot rewrite %s: %s\n", path, strerror(errno));
            return 1;
        }
        if (dropped) printf("metrics.csv: dropped %d rows written after the checkpoint\n", dropped);
    }
    printf("BANIS: %s preset on %s; data: %s (%d train / %d test pairs)\n", c.preset, backend_device_description(dev), d->source,
           split.n_train, split.n_test);
    printf("networks: width %.3g, %lld parameters; batch %d; stages %" PRId64 " + %" PRId64 " + %" PRId64 " steps\n",
           c.arch.width, (long long)nn_count_parameters(m->root), c.sched.batch, c.sched.warmup_steps,
           c.sched.stage2_steps, c.sched.stage3_steps);
    printf("rates: Adam D %g %g, G %g %g; %s %g for S and C (x%g in the last stage)\n", c.sched.lr_d[0],
           c.sched.lr_d[1], c.sched.lr_g[0], c.sched.lr_g[1], c.sched.sc_adam ? "Adam" : "SGD", c.sched.lr_sc,
           c.sched.sc_decay);
    snprintf(path, sizeof path, "%s/metrics.csv", c.out);
    bool fresh_csv = access(path, F_OK) != 0;
    FILE *csv = fopen(path, "a");
    tb_writer *tb = tb_open(c.out);
    if (!csv || !tb) {
        if (csv) fprintf(stderr, "banis-train: %s\n", err_message());
        else fprintf(stderr, "banis-train: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (resume && tb_session_start(tb, step)) {
        fprintf(stderr, "banis-train: %s\n", err_message());
        return 1;
    }
    if (fresh_csv) fprintf(csv, "step,stage,d_loss_a,d_loss_b,g_loss_a,g_loss_b,id_gen_a,id_gen_b,id_real_a,id_real_b,pm_a,pm_b,steps_per_s\n");
    rng zr;
    rng_init(&zr, c.seed + 99);
    tensor *z_fixed = tensor_keep(op_rand_uniform(&zr, TENSOR_F32, SHAPE(16, c.arch.latent), -1, 1, dev));
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    signal(SIGHUP, on_sigint); // a closed terminal or ssh session: save and stop like Ctrl-C
    int rc = 0;
    bool tty = isatty(STDOUT_FILENO); // the progress line updates in place on a terminal
    double t0 = now(), t_last = t0;
    int64_t step0 = step, last_logged = step;
    double kind_time[2] = {0, 0}; // seconds spent in warm-up steps and in full steps
    int64_t kind_steps[2] = {0, 0};
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint_latest.safetensors", c.out);
    while (step < total) {
        if (c.max_steps && step - step0 >= c.max_steps) {
            printf("stopping after %" PRId64 " steps (--max-steps): saving %s\n", c.max_steps, ckpt_path);
            if (save_checkpoint(m, &c, step, ckpt_path)) {
                fprintf(stderr, "banis-train: %s\n", err_message());
                rc = 1;
            }
            break;
        }
        if (interrupted) {
            printf("\ninterrupted at step %" PRId64 ": saving %s\n", step, ckpt_path);
            rc = save_checkpoint(m, &c, step, ckpt_path) ? 1 : 130;
            if (rc == 1) fprintf(stderr, "banis-train: %s\n", err_message());
            break;
        }
        banis_losses l;
        double t_step = now();
        tensor_scope_begin();
        banis_sampler_next(&sampler, c.sched.batch, idx);
        tensor *a, *b;
        int err = banis_batch(d, idx, c.sched.batch, TENSOR_F32, dev, &a, &b) || banis_train_step(m, step, a, b, &l);
        tensor_scope_end();
        if (err) {
            fprintf(stderr, "\nbanis-train: step %" PRId64 ": %s\nthe last good checkpoint is %s\n", step, err_message(), ckpt_path);
            rc = 1;
            break;
        }
        bool full = step >= c.sched.warmup_steps;
        kind_time[full] += now() - t_step;
        kind_steps[full]++;
        step++;
        if (step % c.log_every == 0 || step == total) {
            double t = now(), rate = (double)(step - last_logged) / (t - t_last);
            // ETA from the measured time per warm-up step and per full step (a full step runs
            // six more forward/backward passes; about 5x a warm-up step until one is measured)
            double per[2] = {kind_steps[0] ? kind_time[0] / (double)kind_steps[0] : 0,
                             kind_steps[1] ? kind_time[1] / (double)kind_steps[1] : 0};
            if (!kind_steps[1]) per[1] = 5 * per[0];
            if (!kind_steps[0]) per[0] = per[1] / 5;
            int64_t left_warm = step < c.sched.warmup_steps ? c.sched.warmup_steps - step : 0;
            double eta = (double)left_warm * per[0] + (double)(total - step - left_warm) * per[1];
            fprintf(csv, "%" PRId64 ",%s,%g,%g,%g,%g,%g,%g,%g,%g,%g,%g,%.3f\n", step, stage_name(&c.sched, step - 1),
                    l.d_loss[0], l.d_loss[1], l.g_loss[0], l.g_loss[1], l.id_gen[0], l.id_gen[1], l.id_real[0],
                    l.id_real[1], l.pm[0], l.pm[1], rate);
            fflush(csv);
            const char *tags[10] = {"adversarial/d_loss_a", "adversarial/d_loss_b", "adversarial/g_loss_a",
                                    "adversarial/g_loss_b", "identical/gen_a", "identical/gen_b",
                                    "identical/real_a", "identical/real_b", "pair_matched/a", "pair_matched/b"};
            double vals[10] = {l.d_loss[0], l.d_loss[1], l.g_loss[0], l.g_loss[1], l.id_gen[0], l.id_gen[1],
                               l.id_real[0], l.id_real[1], l.pm[0], l.pm[1]};
            for (int k = 0; k < 10; k++)
                if (!isnan(vals[k])) tb_scalar(tb, tags[k], (float)vals[k], step);
            tb_scalar(tb, "speed/steps_per_s", (float)rate, step);
            tb_flush(tb);
            printf("%sstep %6" PRId64 "/%" PRId64 " [%s] %.2f steps/s ETA %.0fs | D %.3f %.3f G %.3f %.3f", tty ? "\r" : "",
                   step, total, stage_name(&c.sched, step - 1), rate, eta, l.d_loss[0], l.d_loss[1], l.g_loss[0], l.g_loss[1]);
            if (!isnan(l.pm[0])) printf(" | id %.4f %.4f pm %.4f %.4f", l.id_real[0], l.id_real[1], l.pm[0], l.pm[1]);
            printf(tty ? "\x1b[K" : "\n"); // a terminal: one line, updated in place
            fflush(stdout);
            t_last = t;
            last_logged = step;
        }
        if (step % c.sample_every == 0 || step == total) {
            if (write_samples(m, d, &split, z_fixed, samples, step))
                fprintf(stderr, "banis-train: samples: %s\n", err_message());
            else { // the same pictures in TensorBoard's Images tab
                char png[4200];
                snprintf(png, sizeof png, "%s/step_%06" PRId64 "_generated.png", samples, step);
                tb_png_file(tb, "samples/generated", png, step);
                snprintf(png, sizeof png, "%s/step_%06" PRId64 "_reconstructed.png", samples, step);
                tb_png_file(tb, "samples/reconstructed", png, step);
                tb_flush(tb);
            }
        }
        if (step % c.ckpt_every == 0 || step == total) {
            char periodic[4096];
            snprintf(periodic, sizeof periodic, "%s/checkpoint_step_%06" PRId64 ".safetensors", c.out, step);
            if (save_checkpoint(m, &c, step, ckpt_path) ||
                (c.keep > 0 && save_checkpoint_as(m, &c, step, periodic, false))) {
                fprintf(stderr, "%sbanis-train: checkpoint: %s\n", tty ? "\n" : "", err_message());
                rc = 1;
                break;
            }
            prune_checkpoints(c.out, c.keep);
        }
    }
    if (tty) printf("\n"); // end the in-place progress line
    if (rc == 0 && step == total) {
        banis_eval e;
        if (banis_evaluate(m, d, split.test, split.n_test, &e)) {
            fprintf(stderr, "banis-train: evaluation: %s\n", err_message());
            rc = 1;
        } else {
            char title[512];
            snprintf(title, sizeof title, "BANIS, %s preset, %" PRId64 " steps, %s", c.preset, total, d->source);
            snprintf(path, sizeof path, "%s/gmi.md", c.out);
            if (banis_write_gmi_table(path, &e, title)) rc = 1;
            printf("GMI on %d test pairs: %.1f%% / %.1f%% / %.1f%% at TS 0.1 / 0.2 / 0.3 (mean DSC %.3f) -> %s\n",
                   e.pairs, e.gmi[0], e.gmi[1], e.gmi[2], e.mean_dsc, path);
            if (!isnan(e.membrane_dice))
                printf("ground truth: membrane Dice %.3f, nuclei Dice %.3f, %.1f%% of nucleus pixels inside cells\n",
                       e.membrane_dice, e.nuclei_dice, e.nuclei_in_cells);
            if (!isnan(e.diversity))
                printf("diversity of 16 generated membrane images: %.3f of the real images' (1 = as varied)%s\n",
                       e.diversity, e.diversity < BANIS_DIVERSITY_COLLAPSED ? ": MODE COLLAPSE, one image whatever z" : "");
        }
    }
    tensor_release(z_fixed);
    fclose(csv);
    tb_close(tb);
    free(idx);
    banis_sampler_free(&sampler);
    banis_split_free(&split);
    banis_model_free(m);
    banis_dataset_free(d);
    return rc;
}
