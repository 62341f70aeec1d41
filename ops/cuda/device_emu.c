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

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../tensor/error.h"
#include "device.h"
#include "kernel_cache.h"
#ifdef BANIS_HAVE_CUDA
#include "cuda_nvrtc.h"
#endif
#include "emu_prelude.h" // generated from emu/prelude.h: static const char emu_prelude[]

// the launch block shared with prelude.h (same layout)
typedef struct {
    void (*tramp)(void **args);
    void **args;
    const char *kernel;
    unsigned grid[3], block[3];
    unsigned long long first_block, end_block;
    int order;
    unsigned long long seed;
    size_t stack_bytes;
    volatile unsigned cur_block[3], cur_thread[3];
    char fault[768];
} emu_launch;

typedef struct {
    char name[128];
    void (*tramp)(void **args);
    int (*run)(emu_launch *L);
    const unsigned *sizes; // the parameters' sizes, 0-terminated
    bool launched;         // launched outside a capture at least once (its module is loaded)
} emu_kernel;

static cudev dev;
static int n_compiled, order, protect = 1, execute = 1, n_threads = 1, nvrtc_arch;
static long page;

// ---- capture refusals: what a capture may not do, kept for capture_end to report ----------------
static bool recording_now; // a graph is being captured (the graph itself is further down)
static char capture_fault[512];
static int refuse_in_capture(const char *what) {
    err_set("emulated CUDA device: %s while capturing a graph (a graph holds device work only)",
            what);
    if (!capture_fault[0]) snprintf(capture_fault, sizeof capture_fault, "%s", err_message());
    return -1;
}

// ---- device memory: each allocation ends at a guard page ---------------------------------------
typedef struct {
    char *user, *map;
    size_t size, map_len;
    int id;
    bool parked; // kept by the caching allocator above: no kernel may touch it
} allocation;
static allocation *allocs;
static int n_allocs, cap_allocs, next_id;
static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;

static void set_access(allocation *a, int prot) {
    mprotect(a->map, a->map_len - (size_t)page, prot);
}

// The allocations are kept sorted by address: a lookup is a binary search.
static int first_after(const void *p) { // index of the first allocation whose map starts above p
    int lo = 0, hi = n_allocs;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (allocs[mid].map <= (const char *)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static allocation *find_alloc(const void *p, size_t n) { // the allocation holding [p, p + n)
    int i = first_after(p) - 1;
    if (i >= 0 && (const char *)p >= allocs[i].user &&
        (const char *)p + n <= allocs[i].user + allocs[i].size)
        return &allocs[i];
    return NULL;
}

static int describe(const void *addr, char *buf, size_t n) {
    const char *p = addr;
    for (int i = 0; i < n_allocs; i++) {
        allocation *a = &allocs[i];
        if (p >= a->map && p < a->map + a->map_len) {
            if (p >= a->user + a->size)
                snprintf(buf, n,
                         "address %p is %lld bytes past the end of allocation #%d (%zu bytes)",
                         addr, (long long)(p - (a->user + a->size)), a->id, a->size);
            else if (p < a->user)
                snprintf(buf, n, "address %p is %lld bytes before allocation #%d (%zu bytes)", addr,
                         (long long)(a->user - p), a->id, a->size);
            else
                snprintf(buf, n, "address %p is at offset %lld of allocation #%d (%zu bytes)", addr,
                         (long long)(p - a->user), a->id, a->size);
            return 0;
        }
    }
    snprintf(buf, n, "address %p is in no allocation of the device", addr);
    return 0;
}

static int e_malloc(void **p, size_t n) {
    if (recording_now) {
        char what[96];
        snprintf(what, sizeof what, "a device allocation (cudaMalloc of %zu bytes)", n);
        return refuse_in_capture(what);
    }
    size_t size = (n + 15) & ~(size_t)15,
           body = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
    size_t len = body + (size_t)page;
    char *map =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        err_set("emulated CUDA device: out of memory: asked for %zu bytes (%s)", n,
                strerror(errno));
        return -1;
    }
    if (execute) // NaN in every float and double: read-before-write shows (no kernel runs: untouched)
        memset(map + body - size, 0xff, size);
    mprotect(map + body, (size_t)page, PROT_NONE);
    pthread_mutex_lock(&alloc_lock);
    if (n_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? 2 * cap_allocs : 256;
        allocs = realloc(allocs, sizeof *allocs * (size_t)cap_allocs);
    }
    int at = first_after(map);
    memmove(&allocs[at + 1], &allocs[at], sizeof *allocs * (size_t)(n_allocs - at));
    n_allocs++;
    allocation *a = &allocs[at];
    *a = (allocation){
        .user = map + body - size, .map = map, .size = size, .map_len = len, .id = ++next_id};
    if (protect) set_access(a, PROT_NONE);
    pthread_mutex_unlock(&alloc_lock);
    *p = a->user;
    return 0;
}

static void e_park(void *p, bool parked) {
    if (!execute) return; // no kernel runs: nothing to guard (and the host's own cost is measured)
    pthread_mutex_lock(&alloc_lock);
    allocation *a = find_alloc(p, 1);
    if (a) {
        a->parked = parked;
        if (!parked) { // handed out again: its old contents are garbage to the new owner
            set_access(a, PROT_READ | PROT_WRITE);
            memset(a->user, 0xff, a->size);
        }
        set_access(a, parked || protect ? PROT_NONE : PROT_READ | PROT_WRITE);
    }
    pthread_mutex_unlock(&alloc_lock);
}

static void e_free(void *p) {
    if (recording_now) { // refused: the block stays allocated
        refuse_in_capture("a device free (cudaFree)");
        return;
    }
    pthread_mutex_lock(&alloc_lock);
    allocation *a = find_alloc(p, 1);
    if (a && a->user == p) {
        munmap(a->map, a->map_len);
        int i = (int)(a - allocs);
        memmove(&allocs[i], &allocs[i + 1], sizeof *allocs * (size_t)(n_allocs - i - 1));
        n_allocs--;
    }
    pthread_mutex_unlock(&alloc_lock);
}

static void e_mem_info(size_t *f, size_t *t) {
    *t = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)page;
    *f = (size_t)sysconf(_SC_AVPHYS_PAGES) * (size_t)page;
}
static void *e_host_alloc(size_t n) { return malloc(n); }
static void e_host_free(void *p) { free(p); }

// A copy touching device memory: the range must lie inside one allocation.
static int open_alloc_range(const char *what, const void *p, size_t n, allocation **out) {
    allocation *a = find_alloc(p, n);
    if (!a) {
        char where[200];
        describe(p, where, sizeof where);
        err_set("emulated CUDA device: %s of %zu bytes outside device memory: %s", what, n, where);
        return -1;
    }
    if (protect) set_access(a, PROT_READ | PROT_WRITE);
    *out = a;
    return 0;
}
static void close_alloc_range(allocation *a) {
    if (protect && a) set_access(a, PROT_NONE);
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
    if (recording) return refuse_in_capture("a host-to-device copy");
    allocation *a;
    if (open_alloc_range("host-to-device copy", dst, n, &a)) return -1;
    memcpy(dst, src, n);
    close_alloc_range(a);
    return 0;
}
static int e_d2h(void *dst, const void *src, size_t n) {
    if (recording) return refuse_in_capture("a device-to-host copy");
    allocation *a;
    if (!execute) { // no kernel ran: what comes back is zeros (so that loss checks pass), checked all the same
        if (open_alloc_range("device-to-host copy", src, n, &a)) return -1;
        close_alloc_range(a);
        memset(dst, 0, n);
        return 0;
    }
    if (open_alloc_range("device-to-host copy", src, n, &a)) return -1;
    memcpy(dst, src, n);
    close_alloc_range(a);
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
    if (open_alloc_range("device-to-device copy (source)", src, n, &a)) return -1;
    if (open_alloc_range("device-to-device copy (destination)", dst, n, &b)) {
        close_alloc_range(a);
        return -1;
    }
    memmove(dst, src, n);
    close_alloc_range(a);
    close_alloc_range(b);
    return 0;
}
static int e_sync(void) { return recording ? refuse_in_capture("a synchronisation") : 0; }

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

// ---- modules: host C++ from the kernel source ---------------------------------------------------
static uint64_t hash_str(uint64_t h, const char *s) { return cuda_kernel_hash(h, s, strlen(s)); }

static const char *
cache_dir(void) { // the emulator needs a folder for its shared objects: never off
    static char dir[1024];
    if (!dir[0] && cuda_kernel_cache_dir(dir, sizeof dir, "emu", true)) dir[0] = 0;
    return dir[0] ? dir : ".";
}

static const char *compiler(void) {
    const char *cxx = getenv("CXX");
    return cxx && *cxx ? cxx : "c++";
}

static int run_command(const char *cmd, const char *what, const char *log) {
    int st = system(cmd);
    if (st == 0) return 0;
    char msg[2048] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        size_t k = fread(msg, 1, sizeof msg - 1, f);
        msg[k] = 0;
        fclose(f);
    }
    err_set("emulated CUDA device: compiling kernel %s with the host C++ compiler failed (%s):\n%s",
            what, cmd, msg);
    return -1;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

// Trampolines from the preprocessed source: for `__emu_kernel void NAME(T1 a, T2 b)`, a
// function `__emu_tramp_NAME(void **args)` that calls NAME(*(T1 *)args[0], *(T2 *)args[1]).
static char *trampolines(const char *pre) {
    char *out = NULL;
    size_t len = 0, cap = 0;
    append(&out, &len, &cap, "\n", 1);
    for (const char *p = strstr(pre, "__emu_kernel"); p; p = strstr(p + 1, "__emu_kernel")) {
        const char *q = p + strlen("__emu_kernel");
        while (*q == ' ' || *q == '\t' || *q == '\n') q++;
        if (strncmp(q, "void", 4)) continue;
        q += 4;
        while (*q == ' ' || *q == '\n') q++;
        const char *name = q;
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
               *q == '_')
            q++;
        int name_len = (int)(q - name);
        while (*q == ' ') q++;
        if (*q != '(' || name_len == 0) continue;
        const char *params = ++q;
        int depth = 0;
        while (*q && (*q != ')' || depth)) {
            depth += *q == '(' || *q == '<';
            depth -= *q == '>' || (*q == ')' && depth);
            q++;
        }
        char line[8192], types[32][200];
        int at =
            snprintf(line, sizeof line, "extern \"C\" void __emu_tramp_%.*s(void **args) { %.*s(",
                     name_len, name, name_len, name);
        int k = 0;
        for (const char *s = params; s < q && at < (int)sizeof line - 200;) {
            const char *e = s;
            int d = 0;
            while (e < q && (*e != ',' || d)) {
                d += *e == '<' || *e == '(';
                d -= *e == '>' || *e == ')';
                e++;
            }
            const char *t_end = e; // the type is the parameter without its trailing name
            while (t_end > s && (t_end[-1] == ' ' || t_end[-1] == '\n')) t_end--;
            while (t_end > s && ((t_end[-1] >= 'a' && t_end[-1] <= 'z') ||
                                 (t_end[-1] >= 'A' && t_end[-1] <= 'Z') ||
                                 (t_end[-1] >= '0' && t_end[-1] <= '9') || t_end[-1] == '_'))
                t_end--;
            while (*s == ' ' || *s == '\n') s++;
            if (t_end > s && k < 32) {
                snprintf(types[k], sizeof types[k], "%.*s", (int)(t_end - s), s);
                at += snprintf(line + at, sizeof line - (size_t)at, "%s*(%s *)args[%d]",
                               k ? ", " : "", types[k], k);
                k++;
            }
            s = e < q ? e + 1 : q;
        }
        at += snprintf(line + at, sizeof line - (size_t)at, "); }\n");
        // the parameters' sizes, so the host can find the device memory a launch is given
        at += snprintf(line + at, sizeof line - (size_t)at,
                       "extern \"C\" const unsigned __emu_sizes_%.*s[] = {", name_len, name);
        for (int j = 0; j < k; j++)
            at += snprintf(line + at, sizeof line - (size_t)at, "sizeof(%s), ", types[j]);
        at += snprintf(line + at, sizeof line - (size_t)at, "0};\n");
        append(&out, &len, &cap, line, (size_t)at);
    }
    return out;
}

// BANIS_EMU_NVRTC_ARCH: the module compiled by NVRTC for a GPU too, into the kernel cache.
static int nvrtc_fill(const char *src, const char *what) {
#ifdef BANIS_HAVE_CUDA
    void *image;
    size_t size;
    bool cached;
    if (cuda_kernel_image(src, what, nvrtc_arch, &image, &size, &cached)) {
        err_prefix("emulated CUDA device (BANIS_EMU_NVRTC_ARCH=%d): ", nvrtc_arch);
        return -1;
    }
    free(image);
    return 0;
#else
    (void)src;
    err_set(
        "emulated CUDA device: BANIS_EMU_NVRTC_ARCH=%d, but this build has no NVRTC (kernel %s)",
        nvrtc_arch, what);
    return -1;
#endif
}

static int e_load(const char *src, const char *what, void **module) {
    if (recording_now) {
        char why[200];
        snprintf(why, sizeof why, "loading the module of %s", what);
        return refuse_in_capture(why);
    }
    if (nvrtc_arch && nvrtc_fill(src, what)) return -1;
    uint64_t h = hash_str(hash_str(hash_str(KERNEL_HASH_SEED, emu_prelude), src), compiler());
    const char *dir = cache_dir();
    char so[1200];
    snprintf(so, sizeof so, "%s/%016llx.so", dir, (unsigned long long)h);
    if (access(so, R_OK)) { // compile: preprocess to find the kernels, then build with trampolines
        char base[1200], cpp[1300], pre[1300], log[1300], tmp_so[1300], cmd[4096];
        snprintf(base, sizeof base, "%s/%016llx.%d", dir, (unsigned long long)h, (int)getpid());
        snprintf(cpp, sizeof cpp, "%s.cpp", base);
        snprintf(pre, sizeof pre, "%s.ii", base);
        snprintf(log, sizeof log, "%s.log", base);
        snprintf(tmp_so, sizeof tmp_so, "%s.so", base);
        FILE *f = fopen(cpp, "w");
        if (!f) {
            err_set("emulated CUDA device: cannot write %s: %s", cpp, strerror(errno));
            return -1;
        }
        fprintf(f, "%s\n#line 1 \"%s\"\n%s\n", emu_prelude, what, src);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s -std=c++17 -E -P -x c++ %s -o %s 2>%s", compiler(), cpp, pre,
                 log);
        if (run_command(cmd, what, log)) return -1;
        FILE *pf = fopen(pre, "r");
        char *text = NULL;
        size_t n = 0;
        if (pf) {
            fseek(pf, 0, SEEK_END);
            long sz = ftell(pf);
            rewind(pf);
            text = malloc((size_t)sz + 1);
            n = text ? fread(text, 1, (size_t)sz, pf) : 0;
            if (text) text[n] = 0;
            fclose(pf);
        }
        char *tramp = text ? trampolines(text) : NULL;
        free(text);
        f = tramp ? fopen(cpp, "a") : NULL;
        if (!f) {
            free(tramp);
            err_set("emulated CUDA device: preparing kernel %s failed", what);
            return -1;
        }
        fputs(tramp, f);
        fclose(f);
        free(tramp);
        snprintf(cmd, sizeof cmd,
                 "%s -std=c++17 -O1 -g0 -fPIC -shared -fno-strict-aliasing -D__emu_kernel= -x c++ "
                 "%s -o %s 2>%s",
                 compiler(), cpp, tmp_so, log);
        if (run_command(cmd, what, log)) return -1;
        n_compiled++;
        if (rename(tmp_so, so)) {
            err_set("emulated CUDA device: cannot place %s: %s", so, strerror(errno));
            return -1;
        }
        if (!getenv("BANIS_EMU_KEEP")) { // BANIS_EMU_KEEP=1 keeps the C++ source for a debugger
            unlink(cpp);
            unlink(pre);
        }
        unlink(log);
    }
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        err_set("emulated CUDA device: loading kernel %s: %s", what, dlerror());
        return -1;
    }
    *module = lib;
    return 0;
}

static int e_kernel(void *module, const char *name, void **kernel) {
    char sym[200];
    snprintf(sym, sizeof sym, "__emu_tramp_%s", name);
    emu_kernel *k = calloc(1, sizeof *k);
    if (!k) return -1;
    snprintf(k->name, sizeof k->name, "%s", name);
    *(void **)&k->tramp = dlsym(module, sym);
    *(void **)&k->run = dlsym(module, "__emu_launch");
    snprintf(sym, sizeof sym, "__emu_sizes_%s", name);
    k->sizes = dlsym(module, sym);
    if (!k->tramp || !k->run || !k->sizes) {
        free(k);
        err_set("emulated CUDA device: kernel %s not found in its module", name);
        return -1;
    }
    *kernel = k;
    return 0;
}

static int e_compile_count(void) { return n_compiled; }

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
    describe(si->si_addr, where, sizeof where);
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
        describe(segv_addr, where, sizeof where);
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
    while (pool.started < n_threads - 1) { // start the helpers once
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
            return refuse_in_capture(why);
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
    if (!execute) return 0;
    order = parse_order(getenv("BANIS_EMU_ORDER")); // read at every launch, so a test can switch it
    if (order < 0) {
        err_set("emulated CUDA device: BANIS_EMU_ORDER=%s is not in-order, reverse or shuffle",
                getenv("BANIS_EMU_ORDER"));
        return -1;
    }
    unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    int nw = blocks < (unsigned long long)n_threads ? (int)blocks : n_threads;
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
    if (protect)
        for (int p = 0; k->sizes[p]; p++)
            for (unsigned off = 0; off + sizeof(void *) <= k->sizes[p]; off += sizeof(void *)) {
                void *v;
                memcpy(&v, (char *)args[p] + off, sizeof v);
                allocation *a = find_alloc(v, 1);
                if (!a || a->parked) continue;
                bool seen = false;
                for (int j = 0; j < n_open && !seen; j++) seen = open[j] == a;
                if (!seen && n_open < 512) {
                    set_access(a, PROT_READ | PROT_WRITE);
                    open[n_open++] = a;
                }
            }
    pool_run(w, nw);
    for (int j = 0; j < n_open; j++) set_access(open[j], PROT_NONE);
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
    recording_now = recording != NULL;
    capture_fault[0] = 0;
    return recording ? 0 : -1;
}

static void e_graph_free(void *graph);
static int e_capture_end(void **graph) {
    *graph = recording;
    recording = NULL;
    recording_now = false;
    if (*graph && capture_fault[0]) { // what was refused while capturing fails the capture
        err_set("%s", capture_fault);
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
    snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", compiler());
    if (system(cmd)) {
        snprintf(why, n,
                 "emulated CUDA device: no host C++ compiler (%s); apt-get install g++ or set CXX",
                 compiler());
        return NULL;
    }
    page = sysconf(_SC_PAGESIZE);
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
    protect = !(p && !strcmp(p, "0"));
    execute = !(x && !strcmp(x, "0"));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n_threads = cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
    const char *sms = getenv("BANIS_EMU_SMS"), *arch = getenv("BANIS_EMU_NVRTC_ARCH");
    int n_sms = n_threads;
    if (sms && *sms && (sscanf(sms, "%d", &n_sms) != 1 || n_sms < 1 || n_sms > 1024)) {
        snprintf(why, n, "emulated CUDA device: BANIS_EMU_SMS=%s is not a count of 1 to 1024", sms);
        return NULL;
    }
    nvrtc_arch = 0;
    if (arch && *arch && (sscanf(arch, "%d", &nvrtc_arch) != 1 || nvrtc_arch < 50)) {
        snprintf(why, n,
                 "emulated CUDA device: BANIS_EMU_NVRTC_ARCH=%s is not an architecture "
                 "such as 90 (sm_90)",
                 arch);
        return NULL;
    }
    static char name[160];
    snprintf(name, sizeof name, "emulated CUDA device (sm_90 rules, %d SMs, %s)", n_sms,
             execute ? "kernels run on the host CPU" : "launches checked, kernels not run");
    struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    dev = (cudev){.name = name,
                  .arch = 90,
                  .sms = n_sms,
                  .emulated = true,
                  .malloc = e_malloc,
                  .free = e_free,
                  .park = e_park,
                  .mem_info = e_mem_info,
                  .host_alloc = e_host_alloc,
                  .host_free = e_host_free,
                  .copy_h2d = e_h2d,
                  .copy_d2h = e_d2h,
                  .copy_d2d = e_d2d,
                  .sync = e_sync,
                  .load = e_load,
                  .kernel = e_kernel,
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
