// The sum of n values `stride` apart, in double, written once and instantiated by cpu_reduce.c
// for float and double (T, SUFFIX defined there). Contiguous runs go to 16 independent partial
// sums (a fixed order, so results are reproducible) that the compiler turns into vector adds:
// one running sum would be bound by the add's latency, 4 cycles per value.
#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static double
CAT(sum_, SUFFIX)(const T *x, int64_t n, int64_t stride) {
    double s = 0;
    int64_t j = 0;
    if (stride == 1) {
        double part[16] = {0};
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 16; k++) part[k] += (double)x[j + k];
        for (int k = 0; k < 16; k++) s += part[k];
        for (; j < n; j++) s += (double)x[j];
    } else {
        for (; j < n; j++) s += (double)x[j * stride];
    }
    return s;
}

#undef CAT
#undef CAT_
