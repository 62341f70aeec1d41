#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char message[1024];
static _Thread_local bool occurred;

void err_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    occurred = true;
}

void err_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, message, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof message) n = sizeof message - 1;
    memcpy(message, prefix, n);
    size_t room = sizeof message - 1 - n, len = strlen(old);
    if (len > room) len = room;
    memcpy(message + n, old, len);
    message[n + len] = 0;
    occurred = true;
}

const char *err_message(void) { return message; }
bool err_occurred(void) { return occurred; }
void err_clear(void) {
    message[0] = 0;
    occurred = false;
}
