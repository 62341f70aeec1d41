// What only the CUDA backend has, beside the backend interface every device shares
// (ops/backend.h): the backend itself, TF32, its memory and counters, the device it runs on,
// and CUDA graphs (nn/graph.h and nn/step.h are the API for a training step).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../backend.h"

// The CUDA backend, or NULL with err_message() saying why (not built, no driver, no GPU).
const backend *backend_cuda(void);
// TF32 tensor cores for float32 matmul and convolutions (PyTorch's allow_tf32); on by
// default, BANIS_ALLOW_TF32=0 or this call turns it off for exact FP32.
void backend_cuda_allow_tf32(bool allow);
// Bytes in blocks held by tensors, kept in the allocator's cache for reuse, and kept in live
// CUDA graphs' private pools (their temporaries, reused by every replay).
void backend_cuda_memory(size_t *in_use, size_t *cached, size_t *graph_pools);

// What the CUDA backend has done since the start (take differences for a step): kernels
// launched, NVRTC compilations, modules loaded (compiled or from the disk cache), device allocations (cudaMalloc, not cache hits), copies each
// way with their bytes, and host-device synchronisations.
typedef struct {
    int64_t launches, compiles, module_loads, device_allocs;
    int64_t h2d_copies, h2d_bytes, d2h_copies, d2h_bytes, syncs;
    int64_t graph_launches; // replays of captured graphs (their kernels are not in `launches`)
} backend_counters;
backend_counters backend_cuda_counters(void);
// The device the CUDA backend runs on ("NVIDIA H100 ... (sm_90, 132 SMs)", "emulated CUDA
// device ..."), once it has been asked for.
const char *backend_cuda_device_name(void);
bool backend_cuda_is_emulated(void); // true when BANIS_CUDA=emulated chose the emulated device

// CUDA graphs: work issued once, replayed with one call (nn/graph.h is the API for a training
// step). Between capture_begin and capture_end every launch and device copy of the CUDA backend
// is recorded, not run; a copy to or from the host, a synchronisation, or an allocation the
// cache cannot serve (cudaMalloc) is refused (the message names it) and fails the capture: run
// the work once before capturing it, so that its kernels are loaded and its blocks cached.
// Random numbers drawn while capturing must come from the generators named at its start: each
// kernel adds its generator's delta, a device counter that the graph's last kernel advances by
// what one run draws, so a replay draws what running the step again would, and the host's
// generator is advanced to match. Blocks freed while capturing, and blocks allocated then and
// freed later, are the graph's own until it is freed: nothing else is handed the temporaries
// its kernels were told about. What the graph reads and writes outside them (parameters,
// inputs) must stay allocated while it is used.
// A planned pool: between plan_record(true) and plan_record(false) the allocator writes down
// every block the CUDA backend hands out and when it comes back (a capture of the step, say).
// The next capture lays its temporaries out from that record at offsets in one block (the
// way inference runtimes plan their tensors: largest first, each in the tightest gap among
// those whose lifetimes overlap its own), so that its private pool is the step's peak of live
// temporaries, not the sum of each block size's own peak (reuse by size class). The
// capture's k-th allocation takes its planned place when the record's k-th had its size and
// no live temporary overlaps it there, else a cached block as without a record: a record of
// other work makes a worse layout, never a wrong one. At the capture's end the block is the
// graph's, and the cache the runs before it left is given back to the device. plan_drop
// forgets a record not used.
void backend_cuda_plan_record(bool on);
void backend_cuda_plan_drop(void);
typedef struct backend_graph backend_graph;
int backend_cuda_capture_begin(int n_rngs, rng *const *rngs);
backend_graph *backend_cuda_capture_end(void); // NULL (and the capture abandoned) on failure
// Runs g as a new step: the named generators' host offsets then move on by what it draws.
int backend_graph_launch(backend_graph *g);
void backend_graph_free(backend_graph *g);
