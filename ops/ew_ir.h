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

#define EW_MAX_NODES   96
#define EW_MAX_INPUTS  8
#define EW_MAX_OUTPUTS 8

typedef enum {
    EW_INPUT,
    EW_CONST,
    // random, from the program's Philox stream at the element's linear index in the output
    EW_RAND_U01,    // uniform in (0, 1], 53 bits (rng_u01 of words 0 and 1)
    EW_RAND_NORMAL, // standard normal (Box-Muller over the four words)
    // unary
    EW_NEG,
    EW_EXP,
    EW_LOG,
    EW_SQRT,
    EW_RSQRT,
    EW_ABS,
    EW_TANH,
    EW_SIGMOID,
    EW_RELU,
    EW_SIGN,
    // binary
    EW_ADD,
    EW_SUB,
    EW_MUL,
    EW_DIV,
    EW_MAX,
    EW_MIN,
    EW_POW,
    EW_LT,
    EW_LE,
    EW_GT,
    EW_GE,
    EW_EQ,
    EW_NE,        // 1.0 or 0.0
    EW_BERNOULLI, // 1.0 with probability a (uniform < a, compared in double), else 0.0
    // ternary
    EW_WHERE, // a != 0 ? b : c
    EW_OPCODE_COUNT
} ew_opcode;

typedef struct {
    uint8_t op;
    uint8_t a, b, c; // operand node indices
    int32_t input;   // EW_INPUT: which input
    double value;    // EW_CONST
} ew_node;

typedef struct ew_program {
    int n_nodes, n_inputs, n_outputs;
    ew_node nodes[EW_MAX_NODES];
    uint8_t outputs[EW_MAX_OUTPUTS];
    bool overflow; // too many nodes: building failed
    // The Philox stream of the EW_RAND_* nodes: element i (row-major in the output) draws
    // counter rng_offset + i under key rng_seed, as tensor/rng.h's rng_block does. Values, not
    // structure: they are kernel arguments, never part of a kernel's key.
    uint64_t rng_seed, rng_offset;
    // The generator they come from (its identity only: a captured CUDA graph advances each
    // generator's stream on the device at every replay); NULL when drawn without one.
    const void *rng_stream;
} ew_program;

void ew_init(ew_program *p, int n_inputs);
int ew_input(ew_program *p, int i);
int ew_const(ew_program *p, double v);
int ew_unary(ew_program *p, ew_opcode op, int a);
// EW_RAND_U01 or EW_RAND_NORMAL (drawn from p->rng_seed / p->rng_offset).
int ew_random(ew_program *p, ew_opcode op);
int ew_binary(ew_program *p, ew_opcode op, int a, int b);
int ew_where(ew_program *p, int cond, int a, int b);
void ew_output(ew_program *p, int node);

// Short builders.
static inline int ew_add(ew_program *p, int a, int b) { return ew_binary(p, EW_ADD, a, b); }
static inline int ew_sub(ew_program *p, int a, int b) { return ew_binary(p, EW_SUB, a, b); }
static inline int ew_mul(ew_program *p, int a, int b) { return ew_binary(p, EW_MUL, a, b); }
static inline int ew_div(ew_program *p, int a, int b) { return ew_binary(p, EW_DIV, a, b); }
// LeakyReLU: v > 0 ? v : slope * v (the one program op_leaky_relu and fused activations use)
static inline int ew_leaky_relu(ew_program *p, int v, double slope) {
    return ew_where(p, ew_binary(p, EW_GT, v, ew_const(p, 0)), v, ew_mul(p, v, ew_const(p, slope)));
}

// Node index of d(node)/d(input i), appended to p (memoised per call).
int ew_derivative(ew_program *p, int node, int input);
// Which nodes the outputs depend on (live[i] true).
void ew_live_nodes(const ew_program *p, bool live[EW_MAX_NODES]);
// One line per node, e.g. "v3 = mul(v1, v2)". For messages and the renderer's comments.
void ew_describe(const ew_program *p, char *buf, size_t n);
// A stable 64-bit hash of the program's structure (for kernel caches): the operations and
// the literal constants (ew_const_is_literal); other constants are hashed as "a scalar
// argument", so programs that differ only in such values share one compiled kernel.
uint64_t ew_hash(const ew_program *p);
// Constants that a backend may fold into compiled code: 0, 1, -1, NaN and the infinities.
// Every other constant is passed at run time (ew_scalar_args).
bool ew_const_is_literal(double v);
// The run-time scalars of p, in node order: each live non-literal constant. Returns their count
// and writes slot[node] (-1 for nodes that are not such a scalar).
int ew_scalar_args(const ew_program *p, double *values, int *slot);
// True if p draws random numbers (a live EW_RAND_* or EW_BERNOULLI node).
bool ew_uses_rng(const ew_program *p);
const char *ew_opcode_name(ew_opcode op);
int ew_arity(ew_opcode op);
// Scalar evaluation of one opcode, the reference semantics every backend follows.
double ew_apply(ew_opcode op, double a, double b, double c);
