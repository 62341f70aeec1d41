// nvrtc-check: compiles through NVRTC every kernel the library can generate, for sm_80 and
// sm_90, without a GPU. It runs the op table (the gradient-check cases, float64) and BANIS's
// training step and inference (float32) on the CPU, recording each elementwise program as the
// CUDA backend would render it for those operands, plus the fixed kernels (reductions, GEMM,
// implicit-GEMM convolutions, exact and TF32). ptxas's report of every entry point is read: a
// kernel that spills registers fails the check; the fixed kernels' registers, shared memory,
// stack frame and the occupancy that follows are printed as a table.
// Usage: nvrtc-check [--arch 80,90] [--quick]   (--quick: the first 20 table cases only)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tensor/clock.h"
#include "../../banis/model.h"
#include "../../ops/cuda/cuda_nvrtc.h"
#include "../../ops/cuda/cuda_render.h"
#include "../../tensor/error.h"
#include "../../tests/gradcheck_table.h"

typedef struct {
    char name[64];
    char *src;
} kernel_src;

static kernel_src *seen;
static int n_seen, cap_seen;

static void observe(const char *op, const ew_program *p, tensor *const *outs,
                    const tensor *const *ins) {
    char name[64];
    cuda_ew_layout L = cuda_ew_plan(p, outs, ins, NULL);
    char *src = cuda_render_elementwise(p, &L, outs, ins, op, name);
    if (!src) return;
    size_t len = strlen(name); // ends with the key: one kernel whatever op renders it
    for (int i = 0; i < n_seen; i++)
        if (strlen(seen[i].name) >= 16 &&
            !strcmp(seen[i].name + strlen(seen[i].name) - 16, name + len - 16)) {
            free(src);
            return;
        }
    if (n_seen == cap_seen) {
        cap_seen = cap_seen ? 2 * cap_seen : 256;
        seen = realloc(seen, sizeof *seen * (size_t)cap_seen);
    }
    snprintf(seen[n_seen].name, sizeof seen[n_seen].name, "%s", name);
    seen[n_seen++].src = src;
}

// ptxas's report (-v) of one module, entry point by entry point.
typedef struct {
    char name[64];
    int regs, stack, spill_st, spill_ld, smem;
} kernel_resources;

static int parse_report(const char *log, kernel_resources *out, int max) {
    int n = 0;
    for (const char *line = log; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *q;
        if ((q = strstr(line, "Compiling entry function '")) &&
            (!strchr(line, '\n') || q < strchr(line, '\n'))) {
            if (n == max) break;
            kernel_resources *k = &out[n++];
            memset(k, 0, sizeof *k);
            q += strlen("Compiling entry function '");
            int i = 0;
            while (q[i] && q[i] != '\'' && i < (int)sizeof k->name - 1) k->name[i] = q[i], i++;
            k->name[i] = 0;
        } else if (n && (q = strstr(line, "bytes stack frame")) && q - line < 40) {
            kernel_resources *k = &out[n - 1];
            sscanf(line, " %d bytes stack frame, %d bytes spill stores, %d bytes spill loads",
                   &k->stack, &k->spill_st, &k->spill_ld);
        } else if (n && (q = strstr(line, "Used ")) &&
                   (!strchr(line, '\n') || q < strchr(line, '\n'))) {
            kernel_resources *k = &out[n - 1];
            sscanf(q, "Used %d registers", &k->regs);
            const char *sm = strstr(q, " bytes smem");
            const char *nl = strchr(q, '\n');
            if (sm && (!nl || sm < nl)) {
                const char *d = sm;
                while (d > q && d[-1] >= '0' && d[-1] <= '9') d--;
                k->smem = atoi(d);
            }
        }
    }
    return n;
}

// Resident 256-thread blocks per SM on sm_80/sm_90 (64 K registers, allocated per warp in
// units of 256; 2,048 threads; shared memory 164 KiB on sm_80 and 228 KiB on sm_90, 1 KiB of
// it reserved per block), and what limits it.
static int blocks_per_sm(const kernel_resources *k, int arch, const char **limit) {
    int by_threads = 2048 / 256, warp_regs = (k->regs * 32 + 255) / 256 * 256;
    int by_regs = warp_regs ? 65536 / (warp_regs * 8) : by_threads;
    int sm_bytes = (arch >= 90 ? 228 : 164) * 1024;
    int by_smem = k->smem ? sm_bytes / (k->smem + 1024) : by_threads;
    int b = by_threads;
    *limit = "threads";
    if (by_regs < b) b = by_regs, *limit = "registers";
    if (by_smem < b) b = by_smem, *limit = "shared memory";
    return b;
}

int main(int argc, char **argv) {
    int archs[4] = {80, 90}, n_arch = 2;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--arch") && i + 1 < argc) {
            n_arch = sscanf(argv[++i], "%d,%d,%d,%d", &archs[0], &archs[1], &archs[2], &archs[3]);
            if (n_arch < 1) goto usage;
        } else
            goto usage;
    }
    backend_set_ew_observer(observe);
    // 1. the op table, float64
    int n_cases;
    const gradcheck_case *cases = gradcheck_cases(&n_cases);
    if (quick && n_cases > 20) n_cases = 20;
    for (int i = 0; i < n_cases; i++) gradcheck_run(&cases[i], DEVICE_CPU, 1);
    int from_table = n_seen;
    // 2. BANIS, float32: a full training step (every stage) and inference
    banis_arch a = banis_arch_paper();
    a.width = 0.0625;
    a.latent = 8;
    banis_schedule s = banis_schedule_paper();
    s.warmup_steps = 0;
    banis_model *m = banis_model_new(&a, &s, TENSOR_F32, DEVICE_CPU, 1);
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, 8, 1);
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    banis_eval e;
    tensor_scope_begin();
    tensor *ta, *tb;
    banis_losses l;
    if (!m || !d || banis_batch(d, idx, 4, TENSOR_F32, DEVICE_CPU, &ta, &tb) ||
        banis_train_step(m, 0, ta, tb, &l) || banis_evaluate(m, d, idx, 8, &e)) {
        fprintf(stderr, "nvrtc-check: running BANIS: %s\n", err_message());
        return 1;
    }
    tensor_scope_end();
    backend_set_ew_observer(NULL);
    printf("kernels to compile: %d elementwise (%d from the op table, %d more from BANIS) + %d "
           "fixed entry points in 1 module\n",
           n_seen, from_table, n_seen - from_table, cuda_fixed_kernel_count);
    int passed = 0, failed = 0, spilling = 0;
    double t0 = now_seconds();
    for (int k = 0; k < n_arch; k++) {
        int ew_max_regs = 0, ew_stack = 0;
        for (int i = 0; i <= n_seen; i++) {
            const char *src = i < n_seen ? seen[i].src : cuda_fixed_source();
            const char *what = i < n_seen ? seen[i].name : "fixed kernels";
            void *cubin = NULL;
            size_t size = 0;
            char *report = NULL;
            if (cuda_nvrtc_compile_report(src, what, archs[k], &cubin, &size, &report)) {
                printf("FAIL sm_%d %s: %s\n", archs[k], what, err_message());
                failed++;
                continue;
            }
            passed++;
            kernel_resources res[64];
            int nr = parse_report(report, res, 64);
            if (nr == 0) {
                printf("FAIL sm_%d %s: no ptxas report in NVRTC's log\n", archs[k], what);
                failed++;
            }
            for (int r = 0; r < nr; r++) {
                if (res[r].spill_st || res[r].spill_ld) {
                    printf("FAIL sm_%d %s: %s spills (%d bytes stored, %d loaded)\n", archs[k],
                           what, res[r].name, res[r].spill_st, res[r].spill_ld);
                    spilling++;
                }
                if (i < n_seen) {
                    if (res[r].regs > ew_max_regs) ew_max_regs = res[r].regs;
                    if (res[r].stack) ew_stack++;
                }
            }
            if (i == n_seen) {
                printf("sm_%d: fixed kernels module, %zu-byte cubin; ptxas, 256-thread blocks:\n",
                       archs[k], size);
                printf("  %-40s %5s %7s %6s %6s %6s  %s\n", "kernel", "regs", "smem", "stack",
                       "spill", "blocks", "occupancy (limit)");
                for (int r = 0; r < nr; r++) {
                    const char *limit;
                    int b = blocks_per_sm(&res[r], archs[k], &limit);
                    printf("  %-40s %5d %7d %6d %6d %6d  %3d%% (%s)\n", res[r].name, res[r].regs,
                           res[r].smem, res[r].stack, res[r].spill_st + res[r].spill_ld, b,
                           b * 8 * 100 / 64, limit);
                }
            }
            free(report);
            free(cubin);
        }
        printf("sm_%d: %d kernels compiled; the elementwise ones at most %d registers, %d with a "
               "stack frame\n",
               archs[k], n_seen + 1, ew_max_regs, ew_stack);
    }
    if (spilling) {
        printf("%d kernels spill registers to local memory (0 allowed)\n", spilling);
        failed += spilling;
    }
    printf("compiled in %.1f s\n", now_seconds() - t0);
    printf("%d passed, %d failed\n", passed, failed);
    banis_model_free(m);
    banis_dataset_free(d);
    return failed ? 1 : 0;
usage:
    fprintf(stderr, "usage: nvrtc-check [--arch 80,90] [--quick]\n");
    return 2;
}
