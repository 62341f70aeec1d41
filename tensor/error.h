// Errors are values: a failing library call returns NULL or a non-zero status and keeps a
// message naming the op, file or call here. Only the executables print it and exit.
#pragma once
#include <stdbool.h>

// Record an error message (printf-style). Overwrites the previous one.
void err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefix the current message with more context ("loading x.png: " + old message).
void err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The last message recorded on this thread ("" when none).
const char *err_message(void);
bool err_occurred(void);
void err_clear(void);
