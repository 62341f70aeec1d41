// Losses, as means over all elements.
#include "../tensor/error.h"
#include "ops.h"

static int same_shape(const char *who, tensor *a, tensor *b) {
    if (!a || !b) return -1;
    if (!tensor_same_shape(a, b)) {
        char sa[96], sb[96];
        err_set("%s: prediction %s and target %s differ in shape", who,
                tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
        return -1;
    }
    return 0;
}

// Keras: p = clip(p, eps, 1 - eps); -(y log(p + eps) + (1 - y) log(1 - p + eps)).
tensor *op_bce(tensor *p, tensor *target) {
    if (same_shape("bce", p, target)) return NULL;
    ew_program e;
    ew_init(&e, 2);
    int eps = ew_const(&e, OP_BCE_EPSILON), one = ew_const(&e, 1);
    int pc = ew_binary(&e, EW_MIN, ew_binary(&e, EW_MAX, ew_input(&e, 0), eps),
                       ew_const(&e, 1 - OP_BCE_EPSILON));
    int y = ew_input(&e, 1);
    int pos = ew_mul(&e, y, ew_unary(&e, EW_LOG, ew_add(&e, pc, eps)));
    int neg =
        ew_mul(&e, ew_sub(&e, one, y), ew_unary(&e, EW_LOG, ew_add(&e, ew_sub(&e, one, pc), eps)));
    ew_output(&e, ew_unary(&e, EW_NEG, ew_add(&e, pos, neg)));
    tensor *in[2] = {p, target};
    return op_mean(op_ew("bce", &e, 2, in), ALL_AXES, false);
}

tensor *op_bce_logits(tensor *x, tensor *target) {
    if (same_shape("bce_logits", x, target)) return NULL;
    ew_program e;
    ew_init(&e, 2);
    int v = ew_input(&e, 0), y = ew_input(&e, 1);
    int soft =
        ew_unary(&e, EW_LOG,
                 ew_add(&e, ew_const(&e, 1),
                        ew_unary(&e, EW_EXP, ew_unary(&e, EW_NEG, ew_unary(&e, EW_ABS, v)))));
    ew_output(
        &e,
        ew_add(&e, ew_sub(&e, ew_binary(&e, EW_MAX, v, ew_const(&e, 0)), ew_mul(&e, v, y)), soft));
    tensor *in[2] = {x, target};
    return op_mean(op_ew("bce_logits", &e, 2, in), ALL_AXES, false);
}

tensor *op_mse(tensor *a, tensor *b) {
    if (same_shape("mse", a, b)) return NULL;
    ew_program e;
    ew_init(&e, 2);
    int d = ew_sub(&e, ew_input(&e, 0), ew_input(&e, 1));
    ew_output(&e, ew_mul(&e, d, d));
    tensor *in[2] = {a, b};
    return op_mean(op_ew("mse", &e, 2, in), ALL_AXES, false);
}
