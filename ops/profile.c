// The profile table (profile.h): a few hundred rows found by name; printed at exit.
#include "profile.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROFILE_ROWS 512
typedef struct {
    char name[64];
    double ms;
    int64_t calls;
} profile_row;
static profile_row rows[PROFILE_ROWS];
static int n_rows;
static char headings[256];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int by_time(const void *a, const void *b) {
    double x = ((const profile_row *)a)->ms, y = ((const profile_row *)b)->ms;
    return (x < y) - (x > y);
}

static void print_profile(void) {
    double total = 0;
    for (int i = 0; i < n_rows; i++) total += rows[i].ms;
    qsort(rows, (size_t)n_rows, sizeof *rows, by_time);
    fprintf(stderr, "\nprofile (%s): %.1f ms in all\n", headings, total);
    fprintf(stderr, "%-64s %10s %8s %10s %6s\n", "op or kernel", "ms", "calls", "us/call", "%");
    for (int i = 0; i < n_rows; i++)
        fprintf(stderr, "%-64s %10.2f %8lld %10.1f %6.1f\n", rows[i].name, rows[i].ms,
                (long long)rows[i].calls, 1e3 * rows[i].ms / (double)rows[i].calls,
                100 * rows[i].ms / total);
}

bool profile_wanted(const char *env, const char *heading) {
    const char *v = getenv(env);
    if (!v || !*v || !strcmp(v, "0")) return false;
    pthread_mutex_lock(&lock);
    if (!headings[0]) atexit(print_profile);
    size_t n = strlen(headings);
    snprintf(headings + n, sizeof headings - n, "%s%s", n ? "; " : "", heading);
    pthread_mutex_unlock(&lock);
    return true;
}

void profile_add(const char *what, double ms) {
    pthread_mutex_lock(&lock);
    int i = 0;
    while (i < n_rows && strcmp(rows[i].name, what)) i++;
    if (i == n_rows && n_rows < PROFILE_ROWS)
        snprintf(rows[n_rows++].name, sizeof rows[0].name, "%s", what);
    if (i < n_rows) {
        rows[i].ms += ms;
        rows[i].calls++;
    }
    pthread_mutex_unlock(&lock);
}

double profile_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}
