// File-system helpers the layers above share.
#pragma once

// mkdir -p: a folder and its missing parents (0, or -1 with errno set).
int files_make_dirs(const char *path);
