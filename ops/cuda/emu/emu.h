// What the emulated CUDA device's files share (ops/cuda/device_emu.c describes the device):
//   emu/memory.c   device memory: each allocation ends at a guard page, inaccessible outside
//                  launches and copies, NaN-filled when handed out
//   emu/modules.c  kernel source compiled as host C++ behind emu/prelude.h, loaded with dlopen
//   device_emu.c   launches (blocks on host threads, threads as fibers), copies, events, graphs
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The device's settings, read from the environment when it starts (device_emu.c).
typedef struct {
    int protect;    // BANIS_EMU_PROTECT: device memory inaccessible outside launches and copies
    int execute;    // BANIS_EMU_EXECUTE: run the kernels (0: check launches only)
    int n_threads;  // host threads that run a launch's blocks
    int nvrtc_arch; // BANIS_EMU_NVRTC_ARCH: also compile every module with NVRTC (0: no)
    int n_compiled; // modules compiled by the host compiler so far
    long page;      // the host's page size
} emu_state;
extern emu_state emu;

// ---- capture refusals: what a capture may not do, kept for capture_end to report
extern bool emu_recording_now;      // a graph is being captured
extern char emu_capture_fault[512]; // the first refusal of the capture in progress
int emu_refuse_in_capture(const char *what);

// ---- device memory (emu/memory.c)
typedef struct {
    char *user, *map;
    size_t size, map_len;
    int id;
    bool parked; // kept by the caching allocator above: no kernel may touch it
} allocation;
allocation *emu_find_alloc(const void *p, size_t n); // the allocation holding [p, p + n)
void emu_set_access(allocation *a, int prot);
// Where addr lies: in, before or past which allocation (for messages).
void emu_describe(const void *addr, char *buf, size_t n);
// A copy touching device memory: the range must lie inside one allocation, opened meanwhile.
int emu_open_range(const char *what, const void *p, size_t n, allocation **out);
void emu_close_range(allocation *a);
int emu_malloc(void **p, size_t n);
void emu_park(void *p, bool parked);
void emu_free(void *p);
void emu_mem_info(size_t *free_bytes, size_t *total);

// ---- modules and kernels (emu/modules.c)
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
const char *emu_compiler(void); // $CXX, or c++
int emu_load(const char *src, const char *what, void **module);
int emu_kernel_find(void *module, const char *name, void **kernel);
