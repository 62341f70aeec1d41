// The elementwise IR: a backend-neutral expression over N broadcast inputs, written once and
// evaluated by the CPU backend (an interpreter over chunks) or rendered to CUDA C for NVRTC.
// A program is a list of nodes in dependency order; it may have several outputs, so a whole
// chain (batch-norm apply then LeakyReLU, an Adam update of param, m and v) is one pass.
// Every node knows its derivative (ew_derivative), so one op serves every elementwise
// function, forward and backward.
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define EW_MAX_NODES 96
#define EW_MAX_INPUTS 8
#define EW_MAX_OUTPUTS 8

typedef enum {
    EW_INPUT, EW_CONST,
    // unary
    EW_NEG, EW_EXP, EW_LOG, EW_SQRT, EW_RSQRT, EW_ABS, EW_TANH, EW_SIGMOID, EW_RELU, EW_SIGN,
    // binary
    EW_ADD, EW_SUB, EW_MUL, EW_DIV, EW_MAX, EW_MIN, EW_POW,
    EW_LT, EW_LE, EW_GT, EW_GE, EW_EQ, EW_NE, // 1.0 or 0.0
    // ternary
    EW_WHERE, // a != 0 ? b : c
    EW_OPCODE_COUNT
} ew_opcode;

typedef struct {
    uint8_t op;
    uint8_t a, b, c;  // operand node indices
    int32_t input;    // EW_INPUT: which input
    double value;     // EW_CONST
} ew_node;

typedef struct ew_program {
    int n_nodes, n_inputs, n_outputs;
    ew_node nodes[EW_MAX_NODES];
    uint8_t outputs[EW_MAX_OUTPUTS];
    bool overflow; // too many nodes: building failed
} ew_program;

void ew_init(ew_program *p, int n_inputs);
int ew_input(ew_program *p, int i);
int ew_const(ew_program *p, double v);
int ew_unary(ew_program *p, ew_opcode op, int a);
int ew_binary(ew_program *p, ew_opcode op, int a, int b);
int ew_where(ew_program *p, int cond, int a, int b);
void ew_output(ew_program *p, int node);

// Short builders.
static inline int ew_add(ew_program *p, int a, int b) { return ew_binary(p, EW_ADD, a, b); }
static inline int ew_sub(ew_program *p, int a, int b) { return ew_binary(p, EW_SUB, a, b); }
static inline int ew_mul(ew_program *p, int a, int b) { return ew_binary(p, EW_MUL, a, b); }
static inline int ew_div(ew_program *p, int a, int b) { return ew_binary(p, EW_DIV, a, b); }

// Node index of d(node)/d(input i), appended to p (memoised per call).
int ew_derivative(ew_program *p, int node, int input);
// Which nodes the outputs depend on (live[i] true).
void ew_live_nodes(const ew_program *p, bool live[EW_MAX_NODES]);
// One line per node, e.g. "v3 = mul(v1, v2)". For messages and the renderer's comments.
void ew_describe(const ew_program *p, char *buf, size_t n);
// A stable 64-bit hash of the program (for kernel caches).
uint64_t ew_hash(const ew_program *p);
const char *ew_opcode_name(ew_opcode op);
int ew_arity(ew_opcode op);
// Scalar evaluation of one opcode, the reference semantics every backend follows.
double ew_apply(ew_opcode op, double a, double b, double c);
