#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int files_make_dirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

int files_stage_begin(const char *out, char *stage, size_t size) {
    if (files_make_dirs(out)) return -1;
    if (snprintf(stage, size, "%s/.staging-%d", out, (int)getpid()) >= (int)size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    files_stage_abort(stage); // one a killed run of this pid left
    return mkdir(stage, 0755);
}

// Each file of stage moved into out (commit), or removed (out NULL); then the folder.
static int empty_stage(const char *stage, const char *out) {
    DIR *d = opendir(stage);
    if (!d) return -1;
    int rc = 0;
    struct dirent *e;
    char from[4200], to[4200];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(from, sizeof from, "%s/%s", stage, e->d_name);
        if (out) {
            snprintf(to, sizeof to, "%s/%s", out, e->d_name);
            if (rename(from, to)) rc = -1;
        } else
            unlink(from);
    }
    closedir(d);
    int saved = errno;
    if (rmdir(stage) && !rc) rc = -1;
    if (rc) errno = saved;
    return rc;
}

int files_stage_commit(const char *stage, const char *out) { return empty_stage(stage, out); }

void files_stage_abort(const char *stage) { empty_stage(stage, NULL); }

int files_exists(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

const char *files_first_present(const char *dir, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (files_exists(dir, names[i])) return names[i];
    return NULL;
}
