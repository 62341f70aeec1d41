// nvrtc-check: compiles through NVRTC every kernel the library can generate, for sm_80 and
// sm_90, without a GPU. It runs the op table (the gradient-check cases, float64) and BANIS's
// training step and inference (float32) on the CPU, recording each elementwise program as the
// CUDA backend would render it for those operands, plus the fixed kernels (reductions, GEMM,
// implicit-GEMM convolutions, exact and TF32).
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
    int passed = 0, failed = 0;
    double t0 = now_seconds();
    for (int k = 0; k < n_arch; k++) {
        for (int i = 0; i <= n_seen; i++) {
            const char *src = i < n_seen ? seen[i].src : cuda_fixed_source();
            const char *what = i < n_seen ? seen[i].name : "fixed kernels";
            void *cubin = NULL;
            size_t size = 0;
            if (cuda_nvrtc_compile(src, what, archs[k], &cubin, &size)) {
                printf("FAIL sm_%d %s: %s\n", archs[k], what, err_message());
                failed++;
            } else {
                passed++;
                if (i == n_seen)
                    printf("sm_%d: fixed kernels module, %zu-byte cubin\n", archs[k], size);
            }
            free(cubin);
        }
        printf("sm_%d: %d kernels compiled\n", archs[k], n_seen + 1);
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
