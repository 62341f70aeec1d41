// banis-bench: time of one BANIS training step at the paper's sizes (batch 128, full width),
// warm-up (Pioneers only) and full (Pioneers + Successors + Coordinators), with the FLOPs
// issued by matmul and convolutions, peak tensor memory, and the projected time of the
// paper's 40,000-step schedule (17,000 warm-up + 23,000 full).
// On CUDA the step runs as a CUDA graph (captured at the third rep, untimed), or as issued
// launches with --graphs off. With graphs on, a step that cannot be captured, or timed reps
// that are not one graph launch each, are an error (exit 1, saying why): the figures would be
// the eager step's.
// Usage: banis-bench [--device cpu|cuda] [--batch N] [--width F] [--reps N] [--graphs on|off]
//        [--memory-trace] (one more full step: what is live at its peak, by the op that made it)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tensor/clock.h"
#include "../banis/model.h"
#include "../ops/backend.h"
#include "../ops/cuda/cuda.h"
#include "../tensor/error.h"

static const char usage_line[] = "usage: banis-bench [--device cpu|cuda] [--batch N] [--width F] "
                                 "[--reps N] [--graphs on|off] [--memory-trace]\n";

// One kind of step (warm-up, or full when `full`): an untimed rep, one run as issued (its FLOPs
// and peak memory), one that on CUDA is captured as a graph, then `reps` timed ones. Prints its
// row; -1 (said) when a step failed, or with graphs on was not one graph launch.
static int bench_kind(banis_model *m, bool full, tensor *ta, tensor *tb, tensor_device_type dev,
                      bool graphs, int reps, double *ms, double *flops, int64_t *peak) {
    const banis_schedule *sched = &m->sched;
    int64_t step = full ? sched->warmup_steps : 0;
    banis_losses l;
    nn_runner_set_graphs(m->runner, false);
    if (banis_train_step(m, step, ta, tb, &l)) { // untimed warm-up rep (allocator, caches)
        fprintf(stderr, "banis-bench: %s\n", err_message());
        return -1;
    }
    // a second, run as issued: its FLOPs and peak memory are the step's (a replayed graph's
    // ops are not issued on the host, and its temporaries stay in the graph's pool); a
    // third: on CUDA it runs and is captured as a graph
    tensor_storage_reset_peak();
    op_flops_reset();
    int64_t held = tensor_storage_live_bytes(), kind_peak = 0;
    size_t in_use, cached, pools0 = 0, pools1 = 0;
    if (dev == DEVICE_CUDA) backend_cuda_memory(&in_use, &cached, &pools0);
    for (int k = 0; k < 2; k++) {
        nn_runner_set_graphs(m->runner, graphs && k == 1);
        if (banis_train_step(m, step, ta, tb, &l)) {
            fprintf(stderr, "banis-bench: %s\n", err_message());
            return -1;
        }
        if (k == 0) {
            *flops = (double)op_flops();
            int64_t p = tensor_storage_peak_bytes();
            *peak = p > *peak ? p : *peak;
            kind_peak = p - held;
        }
    }
    if (dev == DEVICE_CUDA) backend_cuda_memory(&in_use, &cached, &pools1);
    const char *why = nn_runner_fallback(m->runner);
    if (dev == DEVICE_CUDA && graphs && !nn_runner_captured(m->runner, full)) {
        fprintf(stderr, "banis-bench: the %s step could not be captured as a CUDA graph: %s\n",
                full ? "full" : "warm-up", why[0] ? why : "no reason given");
        return -1;
    }
    backend_counters c0 = backend_cuda_counters();
    double t0 = now_seconds();
    for (int r = 0; r < reps; r++)
        if (banis_train_step(m, step, ta, tb, &l)) {
            fprintf(stderr, "banis-bench: %s\n", err_message());
            return -1;
        }
    tensor_backend(ta)->mem.synchronize();
    double t = (now_seconds() - t0) / reps;
    *ms = 1e3 * t;
    printf("%-10s step: %11.3f ms  %7.3f TFLOP/s (%.1f GFLOP per step)\n",
           full ? "full" : "warm-up", *ms, *flops / t / 1e12, *flops / 1e9);
    if (dev == DEVICE_CUDA) {
        backend_counters c1 = backend_cuda_counters();
#define PER(f) ((double)(c1.f - c0.f) / reps)
        printf("           per step: %.0f graph launches, %.0f kernel launches, %.0f compiles, "
               "%.0f "
               "module loads, %.0f device allocations, "
               "%.0f host-to-device copies (%.0f bytes), %.0f device-to-host copies (%.0f "
               "bytes), %.0f synchronisations\n",
               PER(graph_launches), PER(launches), PER(compiles), PER(module_loads),
               PER(device_allocs), PER(h2d_copies), PER(h2d_bytes), PER(d2h_copies), PER(d2h_bytes),
               PER(syncs));
        if (graphs)
            printf("           its graph's private pool: %.1f MiB; the step's activations and "
                   "temporaries at its peak, issued: %.1f MiB\n",
                   (double)(pools1 - pools0) / (1 << 20), (double)kind_peak / (1 << 20));
        if (graphs && c1.graph_launches - c0.graph_launches != reps) {
            fprintf(stderr,
                    "banis-bench: CUDA graphs on, but the timed %s steps made %.2f graph "
                    "launches each, not 1: the figure above is not the graph's%s%s\n",
                    full ? "full" : "warm-up", PER(graph_launches), why[0] ? ": " : "", why);
            return -1;
        }
#undef PER
    }
    return 0;
}

static double mib(int64_t bytes) { return (double)bytes / (1 << 20); }

// A line of /proc/self/status ("VmRSS:", "VmHWM:") in bytes; -1 where it cannot be read (not
// Linux). The method bench/banis_step_torch.py applies to PyTorch's process, so that the two
// CPU figures compare: peak resident memory (VmHWM) minus the resident memory before the
// model was built.
static int64_t proc_status_bytes(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    int64_t v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) {
            v = 1024 * strtoll(line + n, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int64_t state_bytes(nn_optimizer *o) {
    nn_tensor_list l = {0};
    nn_optimizer_state(o, &l);
    int64_t n = 0;
    for (int i = 0; i < l.n; i++)
        n += tensor_numel(l.items[i].t) * tensor_dtype_size(l.items[i].t->dtype);
    nn_list_free(&l);
    return n;
}

// Where the step's memory goes: what is held between steps (parameters, their gradients, the
// optimizers' state, the rest: batch-norm statistics, the batch, the runner's slots), what a
// step adds at its peak (activations and temporaries), and the floor: what is held plus the
// largest single update's peak (a Coordinator update, run alone; the warm-up step's Pioneer
// updates as a check), which a step that frees each update's graph before the next can reach.
static int print_memory(banis_model *m, tensor *ta, tensor *tb, tensor_device_type dev,
                        int64_t peak) {
    int64_t params = 4 * nn_count_parameters(m->root), state = 0;
    nn_optimizer *opts[8] = {m->opt_d[0], m->opt_d[1], m->opt_g[0], m->opt_g[1],
                             m->opt_s[0], m->opt_s[1], m->opt_c[0], m->opt_c[1]};
    for (int i = 0; i < 8; i++) state += state_bytes(opts[i]);
    int64_t held = tensor_storage_live_bytes();
    if (dev == DEVICE_CUDA) {
        size_t in_use, cached, pools;
        backend_cuda_memory(&in_use, &cached, &pools);
        printf("CUDA allocator: %.1f MiB in blocks held by tensors, %.1f MiB in the graphs' "
               "private pools (%.2fx a step's peak activations), %.1f MiB cached for reuse\n",
               mib((int64_t)in_use), mib((int64_t)pools),
               peak > held ? (double)pools / (double)(peak - held) : 0.0, mib((int64_t)cached));
    }
    nn_runner_set_graphs(m->runner, false); // issued, so that their peaks are measured
    int64_t largest = 0;
    for (int k = 0; k < 2; k++) { // a Coordinator update alone, then the warm-up step
        double loss;
        banis_losses l;
        tensor_storage_reset_peak();
        int64_t before = tensor_storage_live_bytes();
        if (k == 0 ? banis_coordinator_step(m, DOMAIN_A, tb, &loss)
                   : banis_train_step(m, 0, ta, tb, &l)) {
            fprintf(stderr, "banis-bench: %s\n", err_message());
            return -1;
        }
        int64_t p = tensor_storage_peak_bytes() - before;
        largest = p > largest ? p : largest;
    }
    printf("memory held between steps: %.1f MiB = parameters %.1f + gradients %.1f + optimizer "
           "state %.1f + the rest %.1f (statistics, batch, slots)\n",
           mib(held), mib(params), mib(params), mib(state), mib(held - 2 * params - state));
    printf("a step's activations and temporaries at its peak: %.1f MiB; the floor (held + the "
           "largest update's): %.1f MiB, the peak %.2fx it\n",
           mib(peak - held), mib(held + largest), (double)peak / (double)(held + largest));
    return 0;
}

// One more full step, issued, with the memory trace set to the peak measured: what is live
// there, by the op that made it.
static int trace_peak(banis_model *m, tensor *ta, tensor *tb, int64_t peak) {
    banis_losses l;
    nn_runner_set_graphs(m->runner, false);
    tensor_trace_start(peak);
    if (banis_train_step(m, m->sched.warmup_steps, ta, tb, &l)) {
        tensor_trace_report(stdout);
        fprintf(stderr, "banis-bench: %s\n", err_message());
        return -1;
    }
    return tensor_trace_report(stdout) < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
    int batch = 128, reps = 2;
    bool graphs = true, memory_trace = false;
    double width = 1.0;
    tensor_device_type dev = DEVICE_CPU;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%sTimes one BANIS training step (warm-up and full), by default at the paper's "
                   "sizes.\n",
                   usage_line);
            return 0;
        }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--memory-trace")) {
            memory_trace = true;
            continue;
        }
        if (i + 1 >= argc) goto usage;
        if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--width"))
            width = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device"))
            dev = !strcmp(argv[++i], "cuda") ? DEVICE_CUDA : DEVICE_CPU;
        else if (!strcmp(argv[i], "--graphs") &&
                 (!strcmp(argv[i + 1], "on") || !strcmp(argv[i + 1], "off")))
            graphs = !strcmp(argv[++i], "on");
        else
            goto usage;
    }
    if (batch < 2 || reps < 1 || width <= 0) goto usage;
    if (dev == DEVICE_CUDA && !backend_for(DEVICE_CUDA)) {
        fprintf(stderr, "banis-bench: %s\n", err_message());
        return 1;
    }
    int64_t rss0 = proc_status_bytes("VmRSS:");
    banis_arch a = banis_arch_paper();
    a.width = width;
    banis_schedule s = banis_schedule_paper();
    s.batch = batch;
    banis_model *m = banis_model_new(&a, &s, TENSOR_F32, dev, 1);
    if (!m) {
        fprintf(stderr, "banis-bench: %s\n", err_message());
        return 1;
    }
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, batch, 1);
    int *idx = malloc(sizeof(int) * (size_t)batch);
    for (int i = 0; i < batch; i++) idx[i] = i;
    tensor *ta, *tb;
    if (banis_batch(d, idx, batch, TENSOR_F32, dev, &ta, &tb)) return 1;
    printf("BANIS step benchmark on %s: batch %d, width %.3g (%lld parameters), %d timed reps "
           "after 3 untimed ones%s\n",
           backend_device_description(dev), batch, width, (long long)nn_count_parameters(m->root),
           reps,
           dev != DEVICE_CUDA ? ""
           : graphs
               ? " (CUDA graphs: the third runs and captures the step, the timed reps replay it)"
               : " (CUDA graphs off: every launch issued by the host)");
    double ms[2], flops[2];
    int64_t peak = 0;
    for (int full = 0; full < 2; full++)
        if (bench_kind(m, full, ta, tb, dev, graphs, reps, &ms[full], &flops[full], &peak))
            return 1;
    double projected = (17000 * ms[0] + 23000 * ms[1]) / 1e3;
    printf("peak tensor memory: %.1f MiB\n", (double)peak / (1 << 20));
    if (print_memory(m, ta, tb, dev, peak)) return 1;
    if (memory_trace && trace_peak(m, ta, tb, peak)) return 1;
    int64_t hwm = proc_status_bytes("VmHWM:");
    if (dev == DEVICE_CPU && rss0 >= 0 && hwm >= 0)
        printf("peak RSS growth: %.1f MiB (the process's peak resident memory, VmHWM, minus its "
               "resident memory before the model was built)\n",
               mib(hwm - rss0));
    printf("projected paper schedule (17,000 warm-up + 23,000 full steps): %.1f h (paper: ~12.3 h "
           "on a GP104)\n",
           projected / 3600);
    free(idx);
    banis_dataset_free(d);
    banis_model_free(m);
    return 0;
usage:
    fputs(usage_line, stderr);
    return 2;
}
