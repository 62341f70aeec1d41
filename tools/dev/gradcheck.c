// Runs the whole gradient-check table: one line per op and configuration with its worst
// error, then "N passed, M failed". Usage: gradcheck [--device cpu|cuda] [--seed N]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ops/backend.h"
#include "../../ops/cuda/cuda.h"
#include "../../tensor/error.h"
#include "../../tests/gradcheck_table.h"

int main(int argc, char **argv) {
    tensor_device_type dev = DEVICE_CPU;
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            const char *d = argv[++i];
            if (!strcmp(d, "cuda"))
                dev = DEVICE_CUDA;
            else if (strcmp(d, "cpu")) {
                fprintf(stderr, "gradcheck: unknown device '%s' (cpu or cuda)\n", d);
                return 2;
            }
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: gradcheck [--device cpu|cuda] [--seed N]\n"
                            "Checks every differentiable op's gradient in float64 against central\n"
                            "differences (eps 1e-6, |a-n| <= 1e-5 + 1e-3 |n|).\n");
            return 2;
        }
    }
    if (dev == DEVICE_CUDA && !backend_for(DEVICE_CUDA)) {
        fprintf(stderr, "gradcheck: %s\n", err_message());
        return 1;
    }
    int n, passed = 0, failed = 0;
    const gradcheck_case *cases = gradcheck_cases(&n);
    printf("gradient check on %s, float64, seed %llu\n", backend_device_description(dev),
           (unsigned long long)seed);
    printf("%-48s %8s %12s  %s\n", "op", "elements", "worst |a-n|", "result");
    for (int i = 0; i < n; i++) {
        gradcheck_result r = gradcheck_run(&cases[i], dev, seed + (uint64_t)i);
        printf("%-48s %8lld %12.3e  %s%s%s\n", cases[i].name, (long long)r.checked, r.worst_abs,
               r.passed ? "ok" : "FAIL", r.passed ? "" : ": ", r.passed ? "" : r.message);
        if (r.passed)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
