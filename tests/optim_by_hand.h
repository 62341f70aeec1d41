// Two SGD (momentum 0.9) and two Adam updates of w (3 values) on the loss sum(w * c), whose
// gradient is c, against the formulas written out by hand (Keras's: v = 0.9 v - lr g, w += v;
// Adam with its bias correction folded into the rate). On any device and dtype, within tol_sgd
// and tol_adam.
// Shared by tests/test_nn.c (the CPU) and tests/test_cuda_emu.c (CUDA).
#pragma once
#include <check.h>
#include <math.h>

#include "../nn/nn.h"

static void optim_linear_backward(tensor *w, const double *cv) {
    tensor_scope_begin();
    tensor *ct = tensor_from_doubles(w->dtype, SHAPE(3), cv, tensor_device(w));
    ck_assert_int_eq(ag_backward(op_sum(op_mul(w, ct), ALL_AXES, false), NULL), 0);
    tensor_scope_end();
}

static void check_sgd_and_adam_by_hand(tensor_device_type dev, tensor_dtype dt, double tol_sgd,
                                       double tol_adam) {
    const double w0[3] = {1, -2, 0.5}, c[3] = {0.3, -1.5, 2.0};
    double got[3];
    tensor *w = tensor_from_doubles(dt, SHAPE(3), w0, dev);
    w->requires_grad = true;
    nn_tensor_list l = {0};
    nn_list_add(&l, "w", w);
    nn_optimizer *sgd = nn_optimizer_new("sgd", nn_sgd(0.1, 0.9), &l);
    for (int step = 0; step < 2; step++) {
        nn_optimizer_zero_grad(sgd);
        optim_linear_backward(w, c);
        ck_assert_int_eq(nn_optimizer_step(sgd), 0);
    }
    ck_assert_int_eq(tensor_to_doubles(w, got), 0);
    for (int i = 0; i < 3; i++) {
        double v1 = -0.1 * c[i], v2 = 0.9 * v1 - 0.1 * c[i];
        ck_assert_msg(fabs(got[i] - (w0[i] + v1 + v2)) <= tol_sgd, "sgd w[%d]: %.17g", i, got[i]);
    }
    nn_optimizer_free(sgd);
    nn_list_free(&l);
    tensor_release(w);

    w = tensor_from_doubles(dt, SHAPE(3), w0, dev);
    w->requires_grad = true;
    nn_list_add(&l, "w", w);
    double lr = 0.01, b1 = 0.5, b2 = 0.999, eps = 1e-7;
    nn_optimizer *adam = nn_optimizer_new("adam", nn_adam(lr, b1, b2, eps), &l);
    double m[3] = {0}, v[3] = {0}, ref[3] = {w0[0], w0[1], w0[2]};
    for (int t = 1; t <= 2; t++) {
        nn_optimizer_zero_grad(adam);
        optim_linear_backward(w, c);
        ck_assert_int_eq(nn_optimizer_step(adam), 0);
        double lr_t = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
        for (int i = 0; i < 3; i++) {
            m[i] = b1 * m[i] + (1 - b1) * c[i];
            v[i] = b2 * v[i] + (1 - b2) * c[i] * c[i];
            ref[i] -= lr_t * m[i] / (sqrt(v[i]) + eps);
        }
    }
    ck_assert_int_eq(tensor_to_doubles(w, got), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(fabs(got[i] - ref[i]) <= tol_adam, "adam w[%d]: %.17g, by hand %.17g", i,
                      got[i], ref[i]);
        ck_assert(fabs(got[i] - w0[i]) > 0.015); // two updates of about lr each
    }
    ck_assert(got[0] < w0[0] && got[1] > w0[1]); // against the gradient's sign
    nn_optimizer_free(adam);
    nn_list_free(&l);
    tensor_release(w);
}
