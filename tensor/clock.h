// Monotonic wall-clock seconds: rates, ETAs and benchmark timings (the one clock the programs use).
#pragma once

double now_seconds(void);
