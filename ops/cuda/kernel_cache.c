#include "kernel_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../tensor/files.h"

uint64_t cuda_kernel_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

int cuda_kernel_cache_dir(char *out, size_t n, const char *sub, bool required) {
    const char *env = getenv("BANIS_KERNEL_CACHE"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    const char *sep = *sub ? "/" : "";
    bool off = env && !strcmp(env, "off");
    if (off && !required) return -1;
    if (env && *env && !off)
        snprintf(out, n, "%s%s%s", env, sep, sub);
    else if (xdg && *xdg)
        snprintf(out, n, "%s/banis/kernels%s%s", xdg, sep, sub);
    else if (home && *home)
        snprintf(out, n, "%s/.cache/banis/kernels%s%s", home, sep, sub);
    else if (required)
        snprintf(out, n, "/tmp/banis-kernels-%d%s%s", (int)getuid(), sep, sub);
    else
        return -1;
    return files_make_dirs(out);
}
