// The float64 gradient-check suite (the same table tools/gradcheck prints).
#include <check.h>
#include <stdio.h>

#include "gradcheck_table.h"
#include "check_runner.h"

START_TEST(test_case) {
    int n;
    const gradcheck_case *cases = gradcheck_cases(&n);
    const gradcheck_case *c = &cases[_i];
    gradcheck_result r = gradcheck_run(c, DEVICE_CPU, 1000 + (uint64_t)_i);
    ck_assert_msg(r.passed, "%s: %s (worst |a-n| %.3e)", c->name, r.message, r.worst_abs);
    ck_assert_int_gt(r.checked, 0);
}
END_TEST

// A wrong gradient must be caught: the checker compares against an independent value.
static tensor *wrong_backward_fn(tensor **in, const void *arg) {
    (void)arg;
    // exp(x) computed as a program whose output is exp but whose recorded inputs make the
    // gradient of x*x instead: the detached copy hides one factor from autograd.
    return op_mul(in[0], op_detach(in[0]));
}

START_TEST(test_checker_catches_wrong_gradient) {
    gradcheck_case c = {.name = "x * detach(x)", .n_inputs = 1, .fn = wrong_backward_fn};
    c.inputs[0] = (gc_input){.ndim = 1, .shape = {5}, .kind = INPUT_POSITIVE};
    gradcheck_result r = gradcheck_run(&c, DEVICE_CPU, 7);
    ck_assert_msg(!r.passed, "a gradient missing a factor of 2 passed the check");
    ck_assert_double_gt(r.worst_abs, 0.1);
}
END_TEST

int main(void) {
    int n;
    gradcheck_cases(&n);
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("float64");
    tcase_add_loop_test(tc, test_case, 0, n);
    tcase_add_test(tc, test_checker_catches_wrong_gradient);
    suite_add_tcase(s, tc);
    return check_run(s);
}
