// The suites' mains: one test case of listed tests, run, its failures as the exit status.
#pragma once
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_added; // tests added to the cases so far

static inline int check_run(Suite *s) {
    const char *only = getenv("CHECK_ONLY");
    if (only && *only && !check_added) { // a misspelt name would otherwise pass, running nothing
        fprintf(stderr, "CHECK_ONLY=%s: no test has that name\n", only);
        exit(2);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

// A test case of the n tests (the names START_TEST defines), each allowed `timeout` seconds
// (0: Check's default, or CK_DEFAULT_TIMEOUT). CHECK_ONLY=test_name runs that test alone (a
// name no case has is an error, at check_run).
static inline TCase *check_case(const char *name, double timeout, int n,
                                const TTest *const *tests) {
    TCase *tc = tcase_create(name);
    if (timeout > 0) tcase_set_timeout(tc, timeout);
    const char *only = getenv("CHECK_ONLY");
    int added = 0;
    for (int i = 0; i < n; i++)
        if (!only || !*only || !strcmp(only, tests[i]->name)) {
            tcase_add_test(tc, tests[i]);
            added++;
        }
    check_added += added;
    return tc;
}
#define CHECK_TESTS(...)                                                                           \
    (int)(sizeof((const TTest *[]){__VA_ARGS__}) / sizeof(const TTest *)), (const TTest *[]) {     \
        __VA_ARGS__                                                                                \
    }

// Runs the suite `name` of one test case.
static inline int check_main(const char *name, TCase *tc) {
    Suite *s = suite_create(name);
    suite_add_tcase(s, tc);
    return check_run(s);
}
