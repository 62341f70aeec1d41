// The run folder (run.h).
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tensor/error.h"
#include "../tensor/files.h"

bool banis_run_holds(const char *dir) {
    return files_exists(dir, "checkpoint_latest.safetensors") || files_exists(dir, "metrics.csv");
}

// An exclusive lock on DIR/.lock, holding our pid: the descriptor, or -1 naming the holder.
static int lock_folder(const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set("cannot open %s: %s", p, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        err_set("%s is in use by another banis-train (process %s); wait for it or choose another "
                "--out",
                dir, *pid ? pid : "unknown");
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)n, 0) != n) { /* the lock holds without it */
    }
    return fd;
}

// Temporary checkpoint files left by a killed run (we hold the folder's lock: none is live).
static int remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "checkpoint_", 11) || !strstr(e->d_name, ".safetensors.tmp"))
            continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        n += unlink(p) == 0;
    }
    closedir(d);
    return n;
}

int banis_run_open(banis_run_folder *f, const char *want, bool resume, bool exact) {
    *f = (banis_run_folder){.lock_fd = -1};
    if (strlen(want) > 1000) {
        err_set("the run folder's name is longer than 1000 characters: %.60s...", want);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s", want);
    if (!resume && banis_run_holds(want)) {
        if (exact) {
            err_set("%s holds a run already (checkpoint/metrics); continue it with --resume %s, "
                    "or choose another --out",
                    want, want);
            return -1;
        }
        for (int k = 2; banis_run_holds(f->dir) && k < 10000; k++)
            snprintf(f->dir, sizeof f->dir, "%s-%d", want, k);
        f->moved = true;
    }
    if (files_make_dirs(f->dir)) {
        err_set("cannot create %s: %s", f->dir, strerror(errno));
        return -1;
    }
    f->lock_fd = lock_folder(f->dir);
    if (f->lock_fd < 0) return -1;
    f->stale_removed = remove_stale_temporaries(f->dir);
    char samples[1100];
    snprintf(samples, sizeof samples, "%s/samples", f->dir);
    if (mkdir(samples, 0755) && errno != EEXIST) {
        err_set("cannot create %s: %s", samples, strerror(errno));
        banis_run_close(f);
        return -1;
    }
    return 0;
}

void banis_run_close(banis_run_folder *f) {
    if (f->lock_fd >= 0) close(f->lock_fd);
    f->lock_fd = -1;
}

int banis_run_truncate_metrics(const char *path, int64_t step) {
    FILE *in = fopen(path, "r");
    if (!in) return 0;
    char tmp[1200], line[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out) {
        err_set("cannot write %s: %s", tmp, strerror(errno));
        fclose(in);
        return -1;
    }
    int dropped = 0;
    bool header = true;
    while (fgets(line, sizeof line, in)) {
        if (!header && strtoll(line, NULL, 10) > step) {
            dropped++;
            continue;
        }
        header = false;
        fputs(line, out);
    }
    fclose(in);
    if (fclose(out) || rename(tmp, path)) {
        err_set("cannot replace %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return dropped;
}

int banis_run_prune_checkpoints(const char *dir, int keep) {
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), seen = 0, removed = 0;
    for (int i = n - 1; i >= 0; i--) {
        const char *name = list[i]->d_name;
        size_t len = strlen(name);
        if (!strncmp(name, "checkpoint_step_", 16) && len > 12 &&
            !strcmp(name + len - 12, ".safetensors") && ++seen > keep) {
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, name);
            removed += unlink(p) == 0;
        }
        free(list[i]);
    }
    if (n >= 0) free(list);
    return removed;
}
