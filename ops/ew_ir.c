#include "ew_ir.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const names[EW_OPCODE_COUNT] = {
    [EW_INPUT] = "input",
    [EW_CONST] = "const",
    [EW_NEG] = "neg",
    [EW_EXP] = "exp",
    [EW_LOG] = "log",
    [EW_SQRT] = "sqrt",
    [EW_RSQRT] = "rsqrt",
    [EW_ABS] = "abs",
    [EW_TANH] = "tanh",
    [EW_SIGMOID] = "sigmoid",
    [EW_RELU] = "relu",
    [EW_SIGN] = "sign",
    [EW_ADD] = "add",
    [EW_SUB] = "sub",
    [EW_MUL] = "mul",
    [EW_DIV] = "div",
    [EW_MAX] = "max",
    [EW_MIN] = "min",
    [EW_POW] = "pow",
    [EW_LT] = "lt",
    [EW_LE] = "le",
    [EW_GT] = "gt",
    [EW_GE] = "ge",
    [EW_EQ] = "eq",
    [EW_NE] = "ne",
    [EW_WHERE] = "where",
    [EW_RAND_U01] = "rand_u01",
    [EW_RAND_NORMAL] = "rand_normal",
    [EW_BERNOULLI] = "bernoulli",
};

const char *ew_opcode_name(ew_opcode op) { return op < EW_OPCODE_COUNT ? names[op] : "?"; }

int ew_arity(ew_opcode op) {
    if (op <= EW_RAND_NORMAL) return 0;
    if (op < EW_ADD || op == EW_BERNOULLI) return 1;
    if (op < EW_WHERE) return 2;
    return 3;
}

double ew_apply(ew_opcode op, double a, double b, double c) {
    switch (op) {
        case EW_NEG: return -a;
        case EW_EXP: return exp(a);
        case EW_LOG: return log(a);
        case EW_SQRT: return sqrt(a);
        case EW_RSQRT: return 1.0 / sqrt(a);
        case EW_ABS: return fabs(a);
        case EW_TANH: return tanh(a);
        case EW_SIGMOID: return 1.0 / (1.0 + exp(-a));
        case EW_RELU: return a > 0 ? a : 0;
        case EW_SIGN: return (a > 0) - (a < 0);
        case EW_ADD: return a + b;
        case EW_SUB: return a - b;
        case EW_MUL: return a * b;
        case EW_DIV: return a / b;
        case EW_MAX: return a >= b ? a : b;
        case EW_MIN: return a <= b ? a : b;
        case EW_POW: return pow(a, b);
        case EW_LT: return a < b;
        case EW_LE: return a <= b;
        case EW_GT: return a > b;
        case EW_GE: return a >= b;
        case EW_EQ: return a == b;
        case EW_NE: return a != b;
        case EW_WHERE: return a != 0 ? b : c;
        default: return NAN;
    }
}

void ew_init(ew_program *p, int n_inputs) {
    memset(p, 0, sizeof *p);
    p->n_inputs = n_inputs;
}

static bool is_const(const ew_program *p, int n, double v) {
    return p->nodes[n].op == EW_CONST && p->nodes[n].value == v;
}

// Appends a node unless an identical one exists (common subexpressions are shared).
static int push(ew_program *p, ew_node node) {
    for (int i = 0; i < p->n_nodes; i++) {
        const ew_node *o = &p->nodes[i];
        if (o->op != node.op) continue;
        if (node.op == EW_CONST) {
            if (memcmp(&o->value, &node.value, sizeof(double)) == 0) return i;
            continue;
        }
        if (o->input == node.input && o->a == node.a && o->b == node.b && o->c == node.c) return i;
    }
    if (p->n_nodes >= EW_MAX_NODES) {
        p->overflow = true;
        return 0;
    }
    p->nodes[p->n_nodes] = node;
    return p->n_nodes++;
}

int ew_input(ew_program *p, int i) { return push(p, (ew_node){.op = EW_INPUT, .input = i}); }

int ew_const(ew_program *p, double v) {
    return push(p, (ew_node){.op = EW_CONST, .input = -1, .value = v});
}

int ew_random(ew_program *p, ew_opcode op) { return push(p, (ew_node){.op = op, .input = -1}); }

int ew_unary(ew_program *p, ew_opcode op, int a) {
    if (p->nodes[a].op == EW_CONST && op != EW_BERNOULLI)
        return ew_const(p, ew_apply(op, p->nodes[a].value, 0, 0));
    if (op == EW_NEG && p->nodes[a].op == EW_NEG) return p->nodes[a].a;
    return push(p, (ew_node){.op = op, .a = a, .input = -1});
}

int ew_binary(ew_program *p, ew_opcode op, int a, int b) {
    if (p->nodes[a].op == EW_CONST && p->nodes[b].op == EW_CONST)
        return ew_const(p, ew_apply(op, p->nodes[a].value, p->nodes[b].value, 0));
    // Algebraic identities that keep derivative programs small.
    switch (op) {
        case EW_ADD:
            if (is_const(p, a, 0)) return b;
            if (is_const(p, b, 0)) return a;
            break;
        case EW_SUB:
            if (is_const(p, b, 0)) return a;
            if (is_const(p, a, 0)) return ew_unary(p, EW_NEG, b);
            break;
        case EW_MUL:
            if (is_const(p, a, 0) || is_const(p, b, 0)) return ew_const(p, 0);
            if (is_const(p, a, 1)) return b;
            if (is_const(p, b, 1)) return a;
            if (is_const(p, a, -1)) return ew_unary(p, EW_NEG, b);
            if (is_const(p, b, -1)) return ew_unary(p, EW_NEG, a);
            break;
        case EW_DIV:
            if (is_const(p, a, 0)) return ew_const(p, 0);
            if (is_const(p, b, 1)) return a;
            break;
        default: break;
    }
    return push(p, (ew_node){.op = op, .a = a, .b = b, .input = -1});
}

int ew_where(ew_program *p, int cond, int a, int b) {
    if (p->nodes[cond].op == EW_CONST) return p->nodes[cond].value != 0 ? a : b;
    if (a == b) return a;
    return push(p, (ew_node){.op = EW_WHERE, .a = cond, .b = a, .c = b, .input = -1});
}

void ew_output(ew_program *p, int node) {
    if (p->n_outputs >= EW_MAX_OUTPUTS) {
        p->overflow = true;
        return;
    }
    p->outputs[p->n_outputs++] = (uint8_t)node;
}

// Forward-mode symbolic derivative of node n with respect to input i.
static int deriv(ew_program *p, int n, int i, int16_t *memo) {
    if (memo[n] >= 0) return memo[n];
    ew_node e = p->nodes[n];
    int zero = ew_const(p, 0), one = ew_const(p, 1), r = zero;
    int da = ew_arity(e.op) >= 1 ? deriv(p, e.a, i, memo) : zero;
    int db = ew_arity(e.op) >= 2 ? deriv(p, e.b, i, memo) : zero;
    int a = e.a, b = e.b;
    switch ((ew_opcode)e.op) {
        case EW_INPUT: r = e.input == i ? one : zero; break;
        case EW_CONST: r = zero; break;
        case EW_NEG: r = ew_unary(p, EW_NEG, da); break;
        case EW_EXP: r = ew_mul(p, n, da); break;
        case EW_LOG: r = ew_div(p, da, a); break;
        case EW_SQRT: r = ew_div(p, da, ew_mul(p, ew_const(p, 2), n)); break;
        case EW_RSQRT: // d a^-1/2 = -1/2 a^-3/2 = -0.5 * n / a
            r = ew_mul(p, ew_div(p, ew_mul(p, ew_const(p, -0.5), n), a), da);
            break;
        case EW_ABS: r = ew_mul(p, ew_unary(p, EW_SIGN, a), da); break;
        case EW_TANH: r = ew_mul(p, ew_sub(p, one, ew_mul(p, n, n)), da); break;
        case EW_SIGMOID: r = ew_mul(p, ew_mul(p, n, ew_sub(p, one, n)), da); break;
        case EW_RELU: r = ew_mul(p, ew_binary(p, EW_GT, a, zero), da); break;
        case EW_SIGN: r = zero; break;
        case EW_RAND_U01:
        case EW_RAND_NORMAL:
        case EW_BERNOULLI: r = zero; break;
        case EW_ADD: r = ew_add(p, da, db); break;
        case EW_SUB: r = ew_sub(p, da, db); break;
        case EW_MUL: r = ew_add(p, ew_mul(p, da, b), ew_mul(p, a, db)); break;
        case EW_DIV: // (da*b - a*db) / b^2  =  da/b - n*db/b
            r = ew_sub(p, ew_div(p, da, b), ew_div(p, ew_mul(p, n, db), b));
            break;
        case EW_MAX: r = ew_where(p, ew_binary(p, EW_GE, a, b), da, db); break;
        case EW_MIN: r = ew_where(p, ew_binary(p, EW_LE, a, b), da, db); break;
        case EW_POW: { // b * a^(b-1) * da + n * log(a) * db
            int t1 = ew_mul(p, ew_mul(p, b, ew_binary(p, EW_POW, a, ew_sub(p, b, one))), da);
            int t2 =
                is_const(p, db, 0) ? zero : ew_mul(p, ew_mul(p, n, ew_unary(p, EW_LOG, a)), db);
            r = ew_add(p, t1, t2);
            break;
        }
        case EW_LT:
        case EW_LE:
        case EW_GT:
        case EW_GE:
        case EW_EQ:
        case EW_NE: r = zero; break;
        case EW_WHERE: {
            int dc = deriv(p, e.c, i, memo);
            r = ew_where(p, a, deriv(p, e.b, i, memo), dc);
            break;
        }
        default: r = zero;
    }
    memo[n] = (int16_t)r;
    return r;
}

int ew_derivative(ew_program *p, int node, int input) {
    int16_t memo[EW_MAX_NODES];
    for (int k = 0; k < EW_MAX_NODES; k++) memo[k] = -1;
    return deriv(p, node, input, memo);
}

void ew_live_nodes(const ew_program *p, bool live[EW_MAX_NODES]) {
    memset(live, 0, EW_MAX_NODES * sizeof(bool));
    for (int o = 0; o < p->n_outputs; o++) live[p->outputs[o]] = true;
    for (int n = p->n_nodes - 1; n >= 0; n--) {
        if (!live[n]) continue;
        int ar = ew_arity(p->nodes[n].op);
        if (ar >= 1) live[p->nodes[n].a] = true;
        if (ar >= 2) live[p->nodes[n].b] = true;
        if (ar >= 3) live[p->nodes[n].c] = true;
    }
}

void ew_describe(const ew_program *p, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    bool live[EW_MAX_NODES];
    ew_live_nodes(p, live);
    for (int i = 0; i < p->n_nodes && used < n; i++) {
        if (!live[i]) continue;
        const ew_node *e = &p->nodes[i];
        int w;
        if (e->op == EW_INPUT)
            w = snprintf(buf + used, n - used, "v%d = in%d; ", i, e->input);
        else if (e->op == EW_CONST)
            w = snprintf(buf + used, n - used, "v%d = %.17g; ", i, e->value);
        else if (ew_arity(e->op) == 0)
            w = snprintf(buf + used, n - used, "v%d = %s(); ", i, names[e->op]);
        else if (ew_arity(e->op) == 1)
            w = snprintf(buf + used, n - used, "v%d = %s(v%d); ", i, names[e->op], e->a);
        else if (ew_arity(e->op) == 2)
            w = snprintf(buf + used, n - used, "v%d = %s(v%d, v%d); ", i, names[e->op], e->a, e->b);
        else
            w = snprintf(buf + used, n - used, "v%d = %s(v%d, v%d, v%d); ", i, names[e->op], e->a,
                         e->b, e->c);
        if (w < 0) break;
        used += (size_t)w;
    }
}

uint64_t ew_hash(const ew_program *p) {
    uint64_t h = 1469598103934665603ull; // FNV-1a over the meaningful fields
#define MIX(x)                                                                                     \
    do {                                                                                           \
        h ^= (uint64_t)(x);                                                                        \
        h *= 1099511628211ull;                                                                     \
    } while (0)
    MIX(p->n_nodes);
    MIX(p->n_inputs);
    MIX(p->n_outputs);
    for (int i = 0; i < p->n_nodes; i++) {
        const ew_node *e = &p->nodes[i];
        uint64_t bits = 0x5ca1a7ull; // a run-time scalar: its value is not structure
        if (e->op == EW_CONST && ew_const_is_literal(e->value))
            memcpy(&bits, &e->value, sizeof bits);
        MIX(e->op);
        MIX(e->a);
        MIX(e->b);
        MIX(e->c);
        MIX((uint32_t)e->input);
        MIX(bits);
    }
    for (int o = 0; o < p->n_outputs; o++) MIX(p->outputs[o]);
#undef MIX
    return h;
}

bool ew_const_is_literal(double v) { return v == 0 || v == 1 || v == -1 || isnan(v) || isinf(v); }

int ew_scalar_args(const ew_program *p, double *values, int *slot) {
    bool live[EW_MAX_NODES];
    ew_live_nodes(p, live);
    int n = 0;
    for (int i = 0; i < p->n_nodes; i++) {
        slot[i] = -1;
        const ew_node *e = &p->nodes[i];
        if (!live[i] || e->op != EW_CONST || ew_const_is_literal(e->value)) continue;
        slot[i] = n;
        values[n++] = e->value;
    }
    return n;
}

bool ew_uses_rng(const ew_program *p) {
    bool live[EW_MAX_NODES];
    ew_live_nodes(p, live);
    for (int i = 0; i < p->n_nodes; i++)
        if (live[i] && (p->nodes[i].op == EW_RAND_U01 || p->nodes[i].op == EW_RAND_NORMAL ||
                        p->nodes[i].op == EW_BERNOULLI))
            return true;
    return false;
}
