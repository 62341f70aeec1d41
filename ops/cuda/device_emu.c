// The emulated CUDA device (device.h's second implementation), selected with BANIS_CUDA=emulated.
// A kernel source (the same text NVRTC gets) is compiled as host C++ behind emu/prelude.h by the
// system's C++ compiler (disk-cached like NVRTC's cubins), loaded with dlopen and run block by
// block, the threads of a block as fibers; the blocks of a launch are shared among the host's
// cores. It checks what a GPU would refuse or fault on, and names the kernel, block and thread:
//   - sm_90's launch limits: at most 1024 threads a block, grid y and z <= 65,535, no zero size
//   - accesses past the end of an allocation: each allocation ends at a guard page
//   - device memory read before written: new allocations, and blocks the allocator hands out
//     again, are filled with NaN (0xFF bytes); a block the allocator keeps for reuse is
//     inaccessible (a kernel touching it is a use after free)
//   - the host dereferencing device memory: allocations are inaccessible outside launches and
//     copies, and a launch opens only the allocations its arguments point into, so a kernel
//     reaching any other is caught too (BANIS_EMU_PROTECT=0 turns this off)
//   - barrier and warp-collective faults (prelude.h)
// BANIS_EMU_ORDER=reverse|shuffle (default in-order; anything else is refused) runs threads and
// blocks in another order, so that a race
// changes the result; BANIS_EMU_EXECUTE=0 checks every launch but runs no kernel and reads
// back zeros (the host's own cost of a step: an infinitely fast GPU). It reports one multiprocessor
// per host core, so launch configurations sized by the SM count (split K, split reductions,
// grid-stride grids) fit the host; BANIS_EMU_SMS=N reports N (132: an H100's or H200's choices).
// While a graph is captured it refuses what a capture must not do on a GPU: a host copy or a
// synchronisation, an allocation or a free (cudaMalloc, cudaFree), loading a module, and the
// first launch of a kernel (CUDA loads a kernel's module lazily at its first launch). Each
// refusal fails the capture, so a regression shows in CI. BANIS_EMU_CAPTURE_FAIL=1 fails every
// capture (for the tests of what a program says when a step cannot be captured).
// BANIS_EMU_NVRTC_ARCH=90 also compiles every module it loads with NVRTC for that architecture
// into the kernel cache (a GPU given that cache compiles nothing these runs used). What it
// cannot show: timing, races between asynchronous operations (it
// is synchronous), the GPU's math library differences, shared-memory bank conflicts.

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../tensor/error.h"
#include "device.h"
#include "emu/emu.h"

static cudev dev;
static int order;
emu_state emu = {.protect = 1, .execute = 1, .n_threads = 1};
static int e_compile_count(void) { return emu.n_compiled; }

// ---- capture refusals
bool emu_recording_now;
char emu_capture_fault[512];
int emu_refuse_in_capture(const char *what) {
    err_set("emulated CUDA device: %s while capturing a graph (a graph holds device work only)",
            what);
    if (!emu_capture_fault[0])
        snprintf(emu_capture_fault, sizeof emu_capture_fault, "%s", err_message());
    return -1;
}

// ---- graphs: what a capture records (each launch with a copy of its argument bytes, each
// device-to-device copy), run again in order by a replay, with every check of a launch.
typedef struct {
    emu_kernel *k; // NULL: a device-to-device copy
    char what[64];
    unsigned grid[3], block[3];
    void *args[16]; // pointers into bytes
    char *bytes;
    void *dst;
    const void *src;
    size_t n;
} emu_node;
typedef struct {
    emu_node *nodes;
    int n, cap;
} emu_graph;
static emu_graph *recording;

static emu_node *new_node(void) {
    emu_graph *g = recording;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 256;
        emu_node *t = realloc(g->nodes, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        g->nodes = t;
        g->cap = cap;
    }
    emu_node *e = &g->nodes[g->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static int e_h2d(void *dst, const void *src, size_t n) {
    if (recording) return emu_refuse_in_capture("a host-to-device copy");
    allocation *a;
    if (emu_open_range("host-to-device copy", dst, n, &a)) return -1;
    memcpy(dst, src, n);
    emu_close_range(a);
    return 0;
}
static int e_d2h(void *dst, const void *src, size_t n) {
    if (recording) return emu_refuse_in_capture("a device-to-host copy");
    allocation *a;
    if (!emu.execute) { // no kernel ran: what comes back is zeros (so that loss checks pass), checked all the same
        if (emu_open_range("device-to-host copy", src, n, &a)) return -1;
        emu_close_range(a);
        memset(dst, 0, n);
        return 0;
    }
    if (emu_open_range("device-to-host copy", src, n, &a)) return -1;
    memcpy(dst, src, n);
    emu_close_range(a);
    return 0;
}
static int e_d2d(void *dst, const void *src, size_t n) {
    if (recording) {
        emu_node *e = new_node();
        if (!e) {
            err_set("emulated CUDA device: out of host memory recording a graph");
            return -1;
        }
        e->dst = dst, e->src = src, e->n = n;
        return 0;
    }
    allocation *a, *b;
    if (emu_open_range("device-to-device copy (source)", src, n, &a)) return -1;
    if (emu_open_range("device-to-device copy (destination)", dst, n, &b)) {
        emu_close_range(a);
        return -1;
    }
    memmove(dst, src, n);
    emu_close_range(a);
    emu_close_range(b);
    return 0;
}
static int e_sync(void) { return recording ? emu_refuse_in_capture("a synchronisation") : 0; }

// ---- events: the device is synchronous, so every event has been reached -------------------------
static int e_event_new(void **ev) {
    *ev = calloc(1, sizeof(struct timespec));
    return *ev ? 0 : -1;
}
static int e_event_record(void *ev) {
    clock_gettime(CLOCK_MONOTONIC, ev);
    return 0;
}
static int e_event_query(void *ev) {
    (void)ev;
    return 1;
}
static int e_event_wait(void *ev) {
    (void)ev;
    return 0;
}
static int e_event_ms(void *a, void *b, float *ms) {
    const struct timespec *x = a, *y = b;
    *ms = (float)((double)(y->tv_sec - x->tv_sec) * 1e3 + (double)(y->tv_nsec - x->tv_nsec) * 1e-6);
    return 0;
}

// ---- launches ---------------------------------------------------------------------------------
static _Thread_local sigjmp_buf segv_jmp;
static _Thread_local volatile int in_kernel;
static _Thread_local void *volatile segv_addr;
static _Thread_local emu_launch *volatile current;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (in_kernel) {
        segv_addr = si->si_addr;
        siglongjmp(segv_jmp, 1);
    }
    char where[300];
    emu_describe(si->si_addr, where, sizeof where);
    if (strstr(where, "allocation #")) { // the host touched device memory
        char msg[512];
        int n =
            snprintf(msg, sizeof msg,
                     "\nemulated CUDA device: host code dereferenced device memory: %s\n", where);
        if (write(2, msg, (size_t)n) < 0) _exit(70);
        _exit(70);
    }
    signal(sig, SIG_DFL); // not ours: the usual crash
}

typedef struct {
    emu_kernel *k;
    emu_launch L;
    int rc;
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    static _Thread_local char *alt;
    if (!alt && (alt = malloc(1 << 16))) {
        stack_t st = {.ss_sp = alt, .ss_size = 1 << 16};
        sigaltstack(&st, NULL);
    }
    current = &w->L;
    if (sigsetjmp(segv_jmp, 1)) {
        in_kernel = 0;
        char where[300];
        emu_describe(segv_addr, where, sizeof where);
        snprintf(w->L.fault, sizeof w->L.fault,
                 "emulated CUDA device: kernel %s, block (%u, %u, %u), thread (%u, %u, %u): "
                 "invalid memory access: %s",
                 w->k->name, w->L.cur_block[0], w->L.cur_block[1], w->L.cur_block[2],
                 w->L.cur_thread[0], w->L.cur_thread[1], w->L.cur_thread[2], where);
        w->rc = -1;
        return NULL;
    }
    in_kernel = 1;
    w->rc = w->k->run(&w->L);
    in_kernel = 0;
    return NULL;
}

// Persistent host threads for the blocks of a launch (a thread's fibers, stacks and the
// modules' thread-local state are kept between launches).
static struct {
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    worker *jobs;
    int n_jobs, next, finished, started;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .go = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void *pool_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.next >= pool.n_jobs) pthread_cond_wait(&pool.go, &pool.lock);
        int j = pool.next++;
        pthread_mutex_unlock(&pool.lock);
        run_worker(&pool.jobs[j]);
        pthread_mutex_lock(&pool.lock);
        if (++pool.finished == pool.n_jobs) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static void pool_run(worker *w, int n) {
    if (n <= 1) {
        run_worker(&w[0]);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.started < emu.n_threads - 1) { // start the helpers once
        pthread_t t;
        if (pthread_create(&t, NULL, pool_thread, NULL)) break;
        pthread_detach(t);
        pool.started++;
    }
    pool.jobs = w;
    pool.n_jobs = n;
    pool.next = 1; // job 0 runs here
    pool.finished = 1;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.lock);
    run_worker(&w[0]);
    pthread_mutex_lock(&pool.lock);
    while (pool.next < pool.n_jobs) { // no helper free: take the rest here
        int j = pool.next++;
        pthread_mutex_unlock(&pool.lock);
        run_worker(&w[j]);
        pthread_mutex_lock(&pool.lock);
        pool.finished++;
    }
    while (pool.finished < pool.n_jobs) pthread_cond_wait(&pool.done, &pool.lock);
    pool.n_jobs = 0;
    pthread_mutex_unlock(&pool.lock);
}

// BANIS_EMU_ORDER: 0 in order (unset, "" or "in-order"), 1 "reverse", 2 "shuffle"; -1 unknown.
static int parse_order(const char *o) {
    if (!o || !*o || !strcmp(o, "in-order")) return 0;
    return !strcmp(o, "reverse") ? 1 : !strcmp(o, "shuffle") ? 2 : -1;
}

static int e_launch(void *kernel, const char *what, const unsigned grid[3], const unsigned block[3],
                    void **args) {
    emu_kernel *k = kernel;
    unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    const char *bad = NULL;
    if (!grid[0] || !grid[1] || !grid[2] || !block[0] || !block[1] || !block[2])
        bad = "a zero dimension";
    else if (threads > 1024)
        bad = "more than 1024 threads in a block";
    else if (block[2] > 64)
        bad = "block z above 64";
    else if (grid[1] > 65535 || grid[2] > 65535)
        bad = "grid y or z above 65,535";
    else if (grid[0] > 2147483647u)
        bad = "grid x above 2^31 - 1";
    if (bad) {
        err_set("emulated CUDA device: launching %s (kernel %s, grid %u x %u x %u, block %u x %u x "
                "%u): %s (sm_90 limits)",
                what, k->name, grid[0], grid[1], grid[2], block[0], block[1], block[2], bad);
        return -1;
    }
    if (recording) {
        if (!k->launched) {
            char why[200];
            snprintf(why, sizeof why,
                     "the first launch of kernel %s (%s; its module would be loaded now)", k->name,
                     what);
            return emu_refuse_in_capture(why);
        }
        emu_node *e = new_node();
        size_t total = 0;
        int np = 0;
        while (k->sizes[np]) total += (k->sizes[np++] + 15) & ~15u; // each argument 16-aligned
        if (e) e->bytes = malloc(total ? total : 1);
        if (!e || !e->bytes || np > 16) {
            err_set("emulated CUDA device: cannot record launch of %s in a graph", what);
            return -1;
        }
        e->k = k;
        snprintf(e->what, sizeof e->what, "%s", what);
        memcpy(e->grid, grid, sizeof e->grid);
        memcpy(e->block, block, sizeof e->block);
        for (int i = 0, off = 0; i < np; off += (int)((k->sizes[i++] + 15) & ~15u)) {
            memcpy(e->bytes + off, args[i], k->sizes[i]);
            e->args[i] = e->bytes + off;
        }
        return 0;
    }
    k->launched = true;
    if (!emu.execute) return 0;
    order = parse_order(getenv("BANIS_EMU_ORDER")); // read at every launch, so a test can switch it
    if (order < 0) {
        err_set("emulated CUDA device: BANIS_EMU_ORDER=%s is not in-order, reverse or shuffle",
                getenv("BANIS_EMU_ORDER"));
        return -1;
    }
    unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    int nw = blocks < (unsigned long long)emu.n_threads ? (int)blocks : emu.n_threads;
    worker w[64];
    static unsigned long long launches;
    launches++;
    for (int i = 0; i < nw; i++) {
        w[i] = (worker){.k = k, .rc = 0};
        w[i].L = (emu_launch){.tramp = k->tramp,
                              .args = args,
                              .kernel = k->name,
                              .order = order,
                              .seed = launches * 7919 + (unsigned long long)i,
                              .stack_bytes = 64 << 10};
        memcpy(w[i].L.grid, grid, sizeof w[i].L.grid);
        memcpy(w[i].L.block, block, sizeof w[i].L.block);
        w[i].L.first_block = blocks * (unsigned long long)i / (unsigned long long)nw;
        w[i].L.end_block = blocks * (unsigned long long)(i + 1) / (unsigned long long)nw;
    }
    // Device memory opens only where the launch's arguments point (every aligned word of every
    // argument that falls in an allocation): a kernel reaching any other allocation faults.
    allocation *open[512];
    int n_open = 0;
    if (emu.protect)
        for (int p = 0; k->sizes[p]; p++)
            for (unsigned off = 0; off + sizeof(void *) <= k->sizes[p]; off += sizeof(void *)) {
                void *v;
                memcpy(&v, (char *)args[p] + off, sizeof v);
                allocation *a = emu_find_alloc(v, 1);
                if (!a || a->parked) continue;
                bool seen = false;
                for (int j = 0; j < n_open && !seen; j++) seen = open[j] == a;
                if (!seen && n_open < 512) {
                    emu_set_access(a, PROT_READ | PROT_WRITE);
                    open[n_open++] = a;
                }
            }
    pool_run(w, nw);
    for (int j = 0; j < n_open; j++) emu_set_access(open[j], PROT_NONE);
    for (int i = 0; i < nw; i++)
        if (w[i].rc) {
            err_set("%s (launching %s)",
                    w[i].L.fault[0] ? w[i].L.fault : "emulated CUDA device: kernel failed", what);
            return -1;
        }
    return 0;
}

static int e_capture_begin(void) {
    if (recording) {
        err_set("emulated CUDA device: a graph is being captured already");
        return -1;
    }
    const char *fail = getenv("BANIS_EMU_CAPTURE_FAIL");
    if (fail && !strcmp(fail, "1")) {
        err_set("emulated CUDA device: stream capture refused (BANIS_EMU_CAPTURE_FAIL=1)");
        return -1;
    }
    recording = calloc(1, sizeof *recording);
    if (!recording) err_set("emulated CUDA device: out of host memory for a graph");
    emu_recording_now = recording != NULL;
    emu_capture_fault[0] = 0;
    return recording ? 0 : -1;
}

static void e_graph_free(void *graph);
static int e_capture_end(void **graph) {
    *graph = recording;
    recording = NULL;
    emu_recording_now = false;
    if (*graph && emu_capture_fault[0]) { // what was refused while capturing fails the capture
        err_set("%s", emu_capture_fault);
        e_graph_free(*graph);
        *graph = NULL;
    }
    return *graph ? 0 : -1;
}

static void e_graph_free(void *graph) {
    emu_graph *g = graph;
    if (!g) return;
    for (int i = 0; i < g->n; i++) free(g->nodes[i].bytes);
    free(g->nodes);
    free(g);
}

static int e_graph_launch(void *graph) {
    const emu_graph *g = graph;
    for (int i = 0; i < g->n; i++) {
        const emu_node *e = &g->nodes[i];
        int rc = e->k ? e_launch(e->k, e->what, e->grid, e->block, (void **)e->args)
                      : e_d2d(e->dst, e->src, e->n);
        if (rc) {
            err_prefix("graph node %d of %d: ", i + 1, g->n);
            return -1;
        }
    }
    return 0;
}

const cudev *cudev_emulated(char *why, size_t n) {
    if (dev.name) return &dev;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", emu_compiler());
    if (system(cmd)) {
        snprintf(why, n,
                 "emulated CUDA device: no host C++ compiler (%s); apt-get install g++ or set CXX",
                 emu_compiler());
        return NULL;
    }
    emu.page = sysconf(_SC_PAGESIZE);
    const char *o = getenv("BANIS_EMU_ORDER"), *p = getenv("BANIS_EMU_PROTECT"),
               *x = getenv("BANIS_EMU_EXECUTE");
    order = parse_order(o);
    if (order < 0 || (p && strcmp(p, "0") && strcmp(p, "1")) ||
        (x && strcmp(x, "0") && strcmp(x, "1"))) {
        snprintf(why, n,
                 "emulated CUDA device: BANIS_EMU_ORDER must be in-order, reverse or shuffle, "
                 "BANIS_EMU_PROTECT "
                 "and BANIS_EMU_EXECUTE 0 or 1 (given: %s, %s, %s)",
                 o ? o : "-", p ? p : "-", x ? x : "-");
        return NULL;
    }
    emu.protect = !(p && !strcmp(p, "0"));
    emu.execute = !(x && !strcmp(x, "0"));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    emu.n_threads = cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
    const char *sms = getenv("BANIS_EMU_SMS"), *arch = getenv("BANIS_EMU_NVRTC_ARCH");
    int n_sms = emu.n_threads;
    if (sms && *sms && (sscanf(sms, "%d", &n_sms) != 1 || n_sms < 1 || n_sms > 1024)) {
        snprintf(why, n, "emulated CUDA device: BANIS_EMU_SMS=%s is not a count of 1 to 1024", sms);
        return NULL;
    }
    emu.nvrtc_arch = 0;
    if (arch && *arch && (sscanf(arch, "%d", &emu.nvrtc_arch) != 1 || emu.nvrtc_arch < 50)) {
        snprintf(why, n,
                 "emulated CUDA device: BANIS_EMU_NVRTC_ARCH=%s is not an architecture "
                 "such as 90 (sm_90)",
                 arch);
        return NULL;
    }
    static char name[160];
    snprintf(name, sizeof name, "emulated CUDA device (sm_90 rules, %d SMs, %s)", n_sms,
             emu.execute ? "kernels run on the host CPU" : "launches checked, kernels not run");
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    dev = (cudev){.name = name,
                  .arch = 90,
                  .sms = n_sms,
                  .emulated = true,
                  .malloc = emu_malloc,
                  .free = emu_free,
                  .park = emu_park,
                  .mem_info = emu_mem_info,
                  .host_alloc = malloc,
                  .host_free = free,
                  .copy_h2d = e_h2d,
                  .copy_d2h = e_d2h,
                  .copy_d2d = e_d2d,
                  .sync = e_sync,
                  .load = emu_load,
                  .kernel = emu_kernel_find,
                  .compile_count = e_compile_count,
                  .launch = e_launch,
                  .event_new = e_event_new,
                  .event_record = e_event_record,
                  .event_query = e_event_query,
                  .event_wait = e_event_wait,
                  .event_ms = e_event_ms,
                  .capture_begin = e_capture_begin,
                  .capture_end = e_capture_end,
                  .graph_launch = e_graph_launch,
                  .graph_free = e_graph_free};
    return &dev;
}
