// The emulated CUDA device's prelude: compiled (as host C++) in front of a kernel source, the
// same text NVRTC gets. It supplies CUDA C++'s built-ins and runs a block's threads as fibers
// (a small context switch: callee-saved registers and the stack pointer; no system call, unlike
// swapcontext), so __syncthreads is a real barrier and a warp-collective (mma.sync) gathers its
// 32 lanes at a warp barrier. __shared__ variables are per block: a block runs on one host
// thread at a time, and __shared__ is thread_local storage of that host thread.
// Faults are named (kernel, block, thread): a barrier reached by only some threads or from
// different places, a warp-collective with missing lanes, a deadlock. Accesses outside an
// allocation fault on the host's guard pages; the host names them (device_emu.c).
#define BANIS_EMULATED 1
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if !defined(__x86_64__)
#error "the emulated CUDA device's context switch is written for x86-64"
#endif
// __emu_switch(save, load): pushes the callee-saved registers, stores the stack pointer in
// *save, switches to the stack `load` and pops its registers (System V x86-64 ABI).
asm(".text\n"
    ".hidden __emu_switch\n"
    ".globl __emu_switch\n"
    ".type __emu_switch, @function\n"
    "__emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size __emu_switch, .-__emu_switch\n");
extern "C" void __emu_switch(void **save, void *load);

struct uint3 {
    unsigned x, y, z;
};
typedef uint3 dim3;

#define __global__ __emu_kernel
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__   static thread_local
#define __align__(n) __attribute__((aligned(n)))

// ---- math built-ins of CUDA C++ that host C++ lacks --------------------------------------
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline double __longlong_as_double(unsigned long long u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
// by value: `auto` decays (a decltype of the conditional would be a reference to a parameter)
template <class A, class B> static inline auto min(A a, B b) { return a < b ? a : b; }
template <class A, class B> static inline auto max(A a, B b) { return a < b ? b : a; }
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- atomics and fences (a launch's blocks run on several host threads at once): the host's
// sequentially consistent ones, at least as strong as the GPU's device-scope ones
static inline unsigned atomicAdd(unsigned *p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- the block engine ---------------------------------------------------------------------
enum { EMU_RUNNABLE, EMU_AT_BARRIER, EMU_AT_WARP, EMU_DONE };

struct emu_launch { // filled by the host (device_emu.c); one per host thread
    void (*tramp)(void **args);
    void **args;
    const char *kernel;
    unsigned grid[3], block[3];
    unsigned long long first_block, end_block; // linear block range for this host thread
    int order;                                 // 0 in order, 1 reversed, 2 shuffled
    unsigned long long seed;
    size_t stack_bytes;
    volatile unsigned cur_block[3], cur_thread[3]; // where execution is (for the host's messages)
    char fault[768];
};

// A thread's cp.async copies not yet landed (primitives.h), in issue order, each with the
// group it belongs to: group g is committed once open_group > g.
struct emu_cp {
    void *dst;
    const void *src;
    int bytes, src_bytes;
    unsigned group;
};
enum { EMU_CP_MAX = 64 };

struct emu_fiber {
    void *sp; // saved stack pointer while switched out
    uint3 tid;
    int linear, state, line;
    const char *what;
    emu_cp cp[EMU_CP_MAX];
    int n_cp;
    unsigned open_group;
};

struct emu_block {
    emu_launch *L;
    uint3 idx, dim, grid;
    int n;
    emu_fiber *fibers;
    char *stacks;
    void *sched_sp;
    const void *warp_slots[32][32]; // [warp][lane]: what each lane deposited at a warp gather
    bool faulted;
};

static thread_local emu_fiber *__emu_cur;
static thread_local emu_block *__emu_blk;

#define threadIdx (__emu_cur->tid)
#define blockIdx  (__emu_blk->idx)
#define blockDim  (__emu_blk->dim)
#define gridDim   (__emu_blk->grid)

static void __emu_fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void __emu_fault(const char *fmt, ...) {
    emu_block *b = __emu_blk;
    if (!b->faulted) {
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(b->L->fault, sizeof b->L->fault,
                 "emulated CUDA device: kernel %s, block (%u, %u, %u): %s", b->L->kernel, b->idx.x,
                 b->idx.y, b->idx.z, what);
        b->faulted = true;
    }
    if (__emu_cur) { // back to the scheduler, never to return
        __emu_cur->state = EMU_DONE;
        __emu_switch(&__emu_cur->sp, b->sched_sp);
    }
}

static inline void __emu_yield(int state, int line, const char *what) {
    emu_fiber *f = __emu_cur;
    f->state = state;
    f->line = line;
    f->what = what;
    __emu_switch(&f->sp, __emu_blk->sched_sp);
}

#define __syncthreads() __emu_yield(EMU_AT_BARRIER, __LINE__, "__syncthreads")

static inline int __emu_lane(void) { return __emu_cur->linear % 32; }

// A warp-collective's gather: deposit `mine` and wait for the warp's 32 lanes; returns the 32
// deposits, valid until __emu_warp_release (every lane waits there, so none leaves while
// another still reads). A lane that exited instead is a fault.
static const void *const *__emu_warp_gather(const void *mine, const char *what) {
    emu_block *b = __emu_blk;
    int w = __emu_cur->linear / 32, lane = __emu_cur->linear % 32;
    if (b->n < (w + 1) * 32)
        __emu_fault("%s in a partial warp (%d threads in the block)", what, b->n);
    b->warp_slots[w][lane] = mine;
    __emu_yield(EMU_AT_WARP, 0, what);
    return b->warp_slots[w];
}
static void __emu_warp_release(const char *what) { __emu_yield(EMU_AT_WARP, 0, what); }

// ---- cp.async (PTX ISA: cp.async, cp.async.commit_group, cp.async.wait_group) -------------
// A copy is queued in the issuing thread's open group and lands only when a wait_group lets its
// group complete: until then its destination holds what it held before, so a kernel that reads
// a stage before the matching wait (or, for another thread's copies, before the barrier after
// it) reads stale data and fails parity. src_bytes < bytes fills the rest with zeros and reads
// only src_bytes (0: src is not read at all).
static void __emu_cp_async(void *dst, const void *src, int bytes, int src_bytes) {
    emu_fiber *f = __emu_cur;
    if ((uintptr_t)dst % (unsigned)bytes || (src_bytes > 0 && (uintptr_t)src % (unsigned)bytes))
        __emu_fault("cp.async of %d bytes: misaligned address (shared %p, global %p)", bytes, dst,
                    src);
    if (src_bytes < 0 || src_bytes > bytes)
        __emu_fault("cp.async of %d bytes: source size %d", bytes, src_bytes);
    if (f->n_cp == EMU_CP_MAX)
        __emu_fault("cp.async: more than %d copies pending in one thread (a wait_group missing?)",
                    EMU_CP_MAX);
    f->cp[f->n_cp++] = emu_cp{dst, src, bytes, src_bytes, f->open_group};
}
static void __emu_cp_commit(void) { __emu_cur->open_group++; }
// Lands every copy of the committed groups but the newest n, in issue order.
static void __emu_cp_wait(int n) {
    emu_fiber *f = __emu_cur;
    int kept = 0;
    for (int i = 0; i < f->n_cp; i++) {
        emu_cp *c = &f->cp[i];
        if (c->group + (unsigned)n < f->open_group) {
            if (c->src_bytes) memcpy(c->dst, c->src, (size_t)c->src_bytes);
            memset((char *)c->dst + c->src_bytes, 0, (size_t)(c->bytes - c->src_bytes));
        } else
            f->cp[kept++] = *c;
    }
    f->n_cp = kept;
}

static void __emu_fiber_main(void) {
    emu_fiber *f = __emu_cur;
    __emu_blk->L->tramp(__emu_blk->L->args);
    f->state = EMU_DONE;
    __emu_switch(&f->sp, __emu_blk->sched_sp);
    __builtin_unreachable(); // a finished fiber is never resumed
}

// Runs one block to completion; false with L->fault set on a fault.
static bool __emu_run_block(emu_block *b, unsigned long long lin) {
    emu_launch *L = b->L;
    b->idx.x = (unsigned)(lin % L->grid[0]);
    b->idx.y = (unsigned)(lin / L->grid[0] % L->grid[1]);
    b->idx.z = (unsigned)(lin / ((unsigned long long)L->grid[0] * L->grid[1]));
    L->cur_block[0] = b->idx.x, L->cur_block[1] = b->idx.y, L->cur_block[2] = b->idx.z;
    b->faulted = false;
    for (int i = 0; i < b->n; i++) {
        emu_fiber *f = &b->fibers[i];
        f->linear = i;
        f->tid.x = (unsigned)i % b->dim.x;
        f->tid.y = (unsigned)i / b->dim.x % b->dim.y;
        f->tid.z = (unsigned)i / (b->dim.x * b->dim.y);
        f->state = EMU_RUNNABLE;
        f->n_cp = 0;
        f->open_group = 0;
        // a fresh stack whose first switch "returns" into __emu_fiber_main, aligned as after a call
        uintptr_t top =
            ((uintptr_t)(b->stacks + (size_t)(i + 1) * L->stack_bytes)) & ~(uintptr_t)15;
        void **sp = (void **)top;
        *--sp = NULL;                     // __emu_fiber_main's own return address: never used
        *--sp = (void *)__emu_fiber_main; // popped by __emu_switch's ret
        for (int r = 0; r < 6; r++) *--sp = NULL; // rbp rbx r12 r13 r14 r15
        f->sp = sp;
    }
    // the order threads run in between barriers: in order, reversed or shuffled, so that a
    // missing barrier changes the result
    // The schedule: warp by warp (in order, reversed or shuffled), each warp run as far as it
    // can go (through its warp-collectives) before the next starts, so a warp runs ahead of the
    // others to the next __syncthreads: a missing barrier between warps shows. Lanes within a warp
    // run in the same order.
    int nw = (b->n + 31) / 32, worder[32];
    for (int w = 0; w < nw; w++) worder[w] = L->order == 1 ? nw - 1 - w : w;
    unsigned long long s = L->seed ^ (lin * 0x9E3779B97F4A7C15ull);
    for (int round = 0;; round++) {
        if (L->order == 2)
            for (int i = nw - 1; i > 0; i--) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                int j = (int)((s >> 33) % (unsigned long long)(i + 1)), t = worder[i];
                worder[i] = worder[j];
                worder[j] = t;
            }
        bool ran = false;
        for (int wi = 0; wi < nw && !b->faulted; wi++) {
            int w = worder[wi], first = w * 32, lanes = b->n - first < 32 ? b->n - first : 32;
            for (;;) {
                for (int k = 0; k < lanes && !b->faulted; k++) {
                    emu_fiber *f = &b->fibers[first + (L->order == 1 ? lanes - 1 - k : k)];
                    if (f->state != EMU_RUNNABLE) continue;
                    __emu_cur = f;
                    ran = true;
                    L->cur_thread[0] = f->tid.x, L->cur_thread[1] = f->tid.y,
                    L->cur_thread[2] = f->tid.z;
                    __emu_switch(&b->sched_sp, f->sp);
                }
                __emu_cur = NULL;
                if (b->faulted) return false;
                // the warp's lanes all at the same warp-collective: they go on together
                int here = 0, gone = 0;
                for (int l = first; l < first + lanes; l++) {
                    here += b->fibers[l].state == EMU_AT_WARP;
                    gone += b->fibers[l].state == EMU_DONE;
                }
                if (here == lanes) {
                    for (int l = first; l < first + lanes; l++) b->fibers[l].state = EMU_RUNNABLE;
                    continue;
                }
                if (here > 0 && here + gone == lanes) {
                    const emu_fiber *f = &b->fibers[first];
                    while (f->state != EMU_AT_WARP) f++;
                    __emu_fault("warp %d: %s reached by %d of its %d lanes (the others exited)", w,
                                f->what, here, lanes);
                    return false;
                }
                break;
            }
        }
        if (b->faulted) return false;
        int done = 0, at_bar = 0, at_warp = 0;
        for (int i = 0; i < b->n; i++) {
            done += b->fibers[i].state == EMU_DONE;
            at_bar += b->fibers[i].state == EMU_AT_BARRIER;
            at_warp += b->fibers[i].state == EMU_AT_WARP;
        }
        if (done == b->n) return true;
        if (at_bar > 0 && at_bar + done == b->n) {
            if (done > 0) {
                __emu_fault("__syncthreads reached by %d of %d threads (%d exited before it)",
                            at_bar, b->n, done);
                return false;
            }
            int line = -1;
            for (int i = 0; i < b->n; i++) {
                if (line >= 0 && b->fibers[i].line != line) {
                    __emu_fault("__syncthreads reached from different places (lines %d and %d; "
                                "threads 0 and %d)",
                                line, b->fibers[i].line, i);
                    return false;
                }
                line = b->fibers[i].line;
            }
            for (int i = 0; i < b->n; i++) b->fibers[i].state = EMU_RUNNABLE;
            continue;
        }
        if (!ran) {
            __emu_fault("deadlock: %d threads at __syncthreads, %d at a warp-collective, %d exited",
                        at_bar, at_warp, done);
            return false;
        }
    }
}

extern "C" int __emu_launch(emu_launch *L) {
    // fibers and their stacks are kept per host thread and grown when a launch needs more
    static thread_local emu_fiber *fibers;
    static thread_local char *stacks;
    static thread_local size_t have;
    emu_block b;
    memset(&b, 0, sizeof b);
    b.L = L;
    b.dim.x = L->block[0], b.dim.y = L->block[1], b.dim.z = L->block[2];
    b.grid.x = L->grid[0], b.grid.y = L->grid[1], b.grid.z = L->grid[2];
    b.n = (int)(L->block[0] * L->block[1] * L->block[2]);
    if ((size_t)b.n > have) {
        if (stacks) munmap(stacks, have * L->stack_bytes);
        free(fibers);
        stacks = (char *)mmap(NULL, (size_t)b.n * L->stack_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        fibers = (emu_fiber *)calloc((size_t)b.n, sizeof(emu_fiber));
        have = stacks == MAP_FAILED || !fibers ? 0 : (size_t)b.n;
        if (!have) {
            stacks = NULL;
            snprintf(L->fault, sizeof L->fault,
                     "emulated CUDA device: no host memory for %d fibers", b.n);
            return -1;
        }
    }
    b.fibers = fibers;
    b.stacks = stacks;
    __emu_blk = &b;
    int rc = 0;
    for (unsigned long long i = 0; i < L->end_block - L->first_block && !rc; i++) {
        unsigned long long lin = L->order == 1 ? L->end_block - 1 - i : L->first_block + i;
        if (!__emu_run_block(&b, lin)) rc = -1;
    }
    __emu_blk = NULL;
    return rc;
}
