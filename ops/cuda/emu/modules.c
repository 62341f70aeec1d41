// The emulated device's modules (emu.h): a kernel source (the text NVRTC gets) behind
// emu/prelude.h, preprocessed to find its kernels, given a trampoline each (arguments as an
// array of pointers, as cuLaunchKernel takes them), compiled by the host C++ compiler into a
// shared object in the kernel cache, and loaded with dlopen.
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../../tensor/error.h"
#include "../kernel_cache.h"
#include "emu.h"
#ifdef BANIS_HAVE_CUDA
#include "../cuda_nvrtc.h"
#endif
#include "emu_prelude.h" // generated from emu/prelude.h: static const char emu_prelude[]

static uint64_t hash_str(uint64_t h, const char *s) { return cuda_kernel_hash(h, s, strlen(s)); }

static const char *
cache_dir(void) { // the emulator needs a folder for its shared objects: never off
    static char dir[1024];
    if (!dir[0] && cuda_kernel_cache_dir(dir, sizeof dir, "emu", true)) dir[0] = 0;
    return dir[0] ? dir : ".";
}

const char *emu_compiler(void) {
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
    if (cuda_kernel_image(src, what, emu.nvrtc_arch, &image, &size, &cached)) {
        err_prefix("emulated CUDA device (BANIS_EMU_NVRTC_ARCH=%d): ", emu.nvrtc_arch);
        return -1;
    }
    free(image);
    return 0;
#else
    (void)src;
    err_set(
        "emulated CUDA device: BANIS_EMU_NVRTC_ARCH=%d, but this build has no NVRTC (kernel %s)",
        emu.nvrtc_arch, what);
    return -1;
#endif
}

int emu_load(const char *src, const char *what, void **module) {
    if (emu_recording_now) {
        char why[200];
        snprintf(why, sizeof why, "loading the module of %s", what);
        return emu_refuse_in_capture(why);
    }
    if (emu.nvrtc_arch && nvrtc_fill(src, what)) return -1;
    uint64_t h = hash_str(hash_str(hash_str(KERNEL_HASH_SEED, emu_prelude), src), emu_compiler());
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
        snprintf(cmd, sizeof cmd, "%s -std=c++17 -E -P -x c++ %s -o %s 2>%s", emu_compiler(), cpp,
                 pre, log);
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
                 emu_compiler(), cpp, tmp_so, log);
        if (run_command(cmd, what, log)) return -1;
        emu.n_compiled++;
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

int emu_kernel_find(void *module, const char *name, void **kernel) {
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
