// One profile table for every backend: time by name (an op, a kernel, a pass and its shape),
// summed over calls and printed, slowest first, when the program exits. A backend turns it on
// from its environment variable (BANIS_CPU_PROFILE=1: wall time of each compute call;
// BANIS_CUDA_PROFILE=1: device time of each launch, timed with events).
#pragma once
#include <stdbool.h>

// Whether the environment variable `env` asks for a profile; the first time one does, the
// table is printed at exit under `heading` (later headings are added to it).
bool profile_wanted(const char *env, const char *heading);
void profile_add(const char *what, double ms);
// Milliseconds of a monotonic clock (for the CPU's wall times).
double profile_now_ms(void);
