// File-system helpers the layers above share.
#pragma once
#include <stddef.h>

// mkdir -p: a folder and its missing parents (0, or -1 with errno set).
int files_make_dirs(const char *path);

// A program's outputs written all or nothing: into a staging folder inside `out` (made, with
// `out`, by files_stage_begin; its path in stage), then moved into `out` by files_stage_commit
// (each file renamed; nothing of the program's is in `out` before). files_stage_abort removes
// the staging folder and what it holds. 0, or -1 with errno set.
int files_stage_begin(const char *out, char *stage, size_t size);
int files_stage_commit(const char *stage, const char *out);
void files_stage_abort(const char *stage);
// Whether dir/name exists.
int files_exists(const char *dir, const char *name);
// The first of the n names that exists in dir (a program's earlier output), or NULL.
const char *files_first_present(const char *dir, const char *const *names, int n);
