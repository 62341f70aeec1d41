// The layers. Each is a config struct, a constructor that creates and initialises its
// parameters, and a forward of a few ops.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/error.h"
#include "nn.h"

static nn_module *new_module(const char *type, nn_forward_fn fwd, size_t config_size) {
    nn_module *m = nn_container(type);
    if (!m) return NULL;
    m->forward = fwd;
    if (config_size) {
        m->config = calloc(1, config_size);
        if (!m->config) {
            free(m);
            return NULL;
        }
    }
    return m;
}

static tensor *conv_forward(nn_module *m, tensor *x);
typedef struct {
    int k, stride;
    nn_padding pad;
    bool transpose; // ConvTranspose2d
} conv_config;

static bool is_conv_transpose(const nn_module *m) {
    return m->forward == conv_forward && ((const conv_config *)m->config)->transpose;
}

// Keras fan_in/fan_out of a weight, by layer kind.
static void fans(const nn_module *m, const nn_named_tensor *w, int64_t *fan_in, int64_t *fan_out) {
    if (w->ndim == 2) { // Linear: (in, out)
        *fan_in = w->shape[0];
        *fan_out = w->shape[1];
        return;
    }
    int64_t rs = w->ndim == 4 ? w->shape[2] * w->shape[3] : 1;
    if (is_conv_transpose(m)) { // (C_in, C_out, R, S); Keras: fan_in = R*S*C_out
        *fan_in = rs * w->shape[1];
        *fan_out = rs * w->shape[0];
    } else { // Conv2d: (K, C, R, S)
        *fan_in = rs * w->shape[1];
        *fan_out = rs * w->shape[0];
    }
}

// A buffer (state saved but not trained): allocated and filled now.
static tensor *add_buffer(nn_module *m, const char *name, const nn_ctx *c, int ndim,
                          const int64_t *shape, double value) {
    tensor *t = tensor_keep(tensor_full(c->dtype, ndim, shape, value, c->device));
    if (!t) return NULL;
    snprintf(m->buffers[m->n_buffers].name, NN_NAME_MAX, "%s", name);
    m->buffers[m->n_buffers++].t = t;
    return t;
}

// A parameter: declared now, created and initialised by nn_place.
static void add_param(nn_module *m, const char *name, const nn_ctx *c, int ndim,
                      const int64_t *shape, nn_init init) {
    nn_named_tensor *p = &m->params[m->n_params++];
    *p = (nn_named_tensor){.dtype = c->dtype,
                           .device = c->device,
                           .ndim = ndim,
                           .init = init,
                           .init_rng = c->init_rng};
    snprintf(p->name, NN_NAME_MAX, "%s", name);
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    fans(m, p, &p->fan_in, &p->fan_out);
}

static nn_named_tensor *param_entry(nn_module *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

static tensor *param(nn_module *m, const char *name) {
    nn_named_tensor *p = param_entry(m, name);
    return p ? p->t : NULL;
}

int nn_reinit(const nn_ctx *c, nn_module *m, const char *name, nn_init init) {
    nn_named_tensor *w = m ? param_entry(m, name) : NULL;
    if (!w) {
        err_set("reinit: %s has no parameter '%s'", m ? m->type : "(no module)", name);
        return -1;
    }
    w->init = init;
    w->init_rng = c->init_rng;
    // placed already: drawn now; otherwise nn_place draws it
    return w->t ? nn_init_tensor(w->t, init, w->fan_in, w->fan_out, c->init_rng) : 0;
}

// ---- Linear -------------------------------------------------------------------------------
static tensor *linear_forward(nn_module *m, tensor *x) {
    tensor *w = m->params[0].t, *b = param(m, "bias");
    if (x->ndim != 2 || x->shape[1] != w->shape[0]) {
        char s[96];
        err_set("Linear '%s': expects (N, %lld), got %s", m->name, (long long)w->shape[0],
                tensor_shape_str(x, s, sizeof s));
        return NULL;
    }
    tensor *y = op_matmul(x, w);
    return b ? op_add_bias(y, b) : y;
}

nn_module *nn_linear(const nn_ctx *c, int64_t in, int64_t out, bool bias) {
    nn_module *m = new_module("Linear", linear_forward, 0);
    if (!m) return NULL;
    add_param(m, "weight", c, SHAPE(in, out), NN_INIT_GLOROT_UNIFORM);
    if (bias) add_param(m, "bias", c, SHAPE(out), NN_INIT_ZEROS);
    return m;
}

// ---- convolutions -----------------------------------------------------------------------

static tensor *conv_forward(nn_module *m, tensor *x) {
    const conv_config *cfg = m->config;
    if (x->ndim != 4) {
        char s[96];
        err_set("%s '%s': expects (N, C, H, W), got %s", m->type, m->name,
                tensor_shape_str(x, s, sizeof s));
        return NULL;
    }
    bool transpose = cfg->transpose;
    op_conv_opts o;
    if (cfg->pad == NN_PAD_VALID)
        o = op_conv_valid(cfg->stride);
    else if (transpose)
        o = op_conv_transpose_same(x->shape[2], x->shape[3], cfg->k, cfg->k, cfg->stride);
    else
        o = op_conv_same(x->shape[2], x->shape[3], cfg->k, cfg->k, cfg->stride);
    tensor *w = m->params[0].t, *b = param(m, "bias");
    return transpose ? op_conv_transpose2d(x, w, b, &o) : op_conv2d(x, w, b, &o);
}

static nn_module *conv_module(bool transpose, const nn_ctx *c, int64_t in_ch, int64_t out_ch, int k,
                              int stride, nn_padding pad, bool bias) {
    nn_module *m =
        new_module(transpose ? "ConvTranspose2d" : "Conv2d", conv_forward, sizeof(conv_config));
    if (!m) return NULL;
    *(conv_config *)m->config = (conv_config){k, stride, pad, transpose};
    if (transpose)
        add_param(m, "weight", c, SHAPE(in_ch, out_ch, k, k), NN_INIT_HE_NORMAL);
    else
        add_param(m, "weight", c, SHAPE(out_ch, in_ch, k, k), NN_INIT_HE_NORMAL);
    if (bias) add_param(m, "bias", c, SHAPE(out_ch), NN_INIT_ZEROS);
    return m;
}

nn_module *nn_conv2d(const nn_ctx *c, int64_t in_ch, int64_t out_ch, int k, int stride,
                     nn_padding pad, bool bias) {
    return conv_module(false, c, in_ch, out_ch, k, stride, pad, bias);
}

nn_module *nn_conv_transpose2d(const nn_ctx *c, int64_t in_ch, int64_t out_ch, int k, int stride,
                               nn_padding pad, bool bias) {
    return conv_module(true, c, in_ch, out_ch, k, stride, pad, bias);
}

// ---- BatchNorm ----------------------------------------------------------------------------
typedef struct {
    double momentum, eps;
    int set; // the running statistics in use: buffers[2 * set] (mean), buffers[2 * set + 1] (var)
} bn_config;

static tensor *bn_apply(nn_module *m, tensor *x, op_activation act, double slope) {
    const bn_config *cfg = m->config;
    op_bn_opts o = {.training = m->training,
                    .momentum = cfg->momentum,
                    .eps = cfg->eps,
                    .act = act,
                    .slope = slope};
    return op_batch_norm(x, m->params[0].t, m->params[1].t, m->buffers[2 * cfg->set].t,
                         m->buffers[2 * cfg->set + 1].t, &o);
}

static tensor *bn_forward(nn_module *m, tensor *x) { return bn_apply(m, x, OP_ACT_NONE, 0); }

nn_module *nn_batch_norm(const nn_ctx *c, int64_t channels, double momentum, double eps) {
    nn_module *m = new_module("BatchNorm", bn_forward, sizeof(bn_config));
    if (!m) return NULL;
    *(bn_config *)m->config = (bn_config){momentum, eps, 0};
    add_param(m, "weight", c, SHAPE(channels), NN_INIT_ONES);
    add_param(m, "bias", c, SHAPE(channels), NN_INIT_ZEROS);
    if (!add_buffer(m, "running_mean", c, SHAPE(channels), 0) ||
        !add_buffer(m, "running_var", c, SHAPE(channels), 1)) {
        nn_free(m);
        return NULL;
    }
    return m;
}

int nn_bn_stat_sets(const nn_ctx *c, nn_module *m, int n) {
    if (n < 1 || 2 * n > NN_MAX_TENSORS) {
        err_set("batch-norm statistics: %d sets asked, 1 to %d possible", n, NN_MAX_TENSORS / 2);
        return -1;
    }
    if (m->forward == bn_forward) {
        int64_t channels = m->buffers[0].t->shape[0]; // buffers exist from the start
        for (int k = m->n_buffers / 2; k < n; k++) {
            char mean[32], var[32];
            snprintf(mean, sizeof mean, "running_mean_%d", k);
            snprintf(var, sizeof var, "running_var_%d", k);
            if (!add_buffer(m, mean, c, SHAPE(channels), 0) ||
                !add_buffer(m, var, c, SHAPE(channels), 1))
                return -1;
        }
    }
    for (int i = 0; i < m->n_children; i++)
        if (nn_bn_stat_sets(c, m->children[i], n)) return -1;
    return 0;
}

void nn_bn_use_stats(nn_module *m, int set) {
    if (m->forward == bn_forward && 2 * set < m->n_buffers) ((bn_config *)m->config)->set = set;
    for (int i = 0; i < m->n_children; i++) nn_bn_use_stats(m->children[i], set);
}

// ---- Dropout ------------------------------------------------------------------------------
typedef struct {
    double p;
    rng *r;
} dropout_config;

static tensor *dropout_forward(nn_module *m, tensor *x) {
    const dropout_config *cfg = m->config;
    if (m->training && !cfg->r) {
        err_set("Dropout '%s': no dropout_rng in the nn_ctx it was built with", m->name);
        return NULL;
    }
    return op_dropout(x, cfg->p, m->training, cfg->r);
}

nn_module *nn_dropout(const nn_ctx *c, double p) {
    nn_module *m = new_module("Dropout", dropout_forward, sizeof(dropout_config));
    if (m) *(dropout_config *)m->config = (dropout_config){p, c->dropout_rng};
    return m;
}

// ---- activations ------------------------------------------------------------------------
typedef struct {
    op_activation act;
    double slope;
} act_config;

static tensor *act_forward(nn_module *m, tensor *x) {
    const act_config *cfg = m->config;
    return op_activation_apply(x, cfg->act, cfg->slope);
}

static nn_module *activation(const char *type, op_activation act, double slope) {
    nn_module *m = new_module(type, act_forward, sizeof(act_config));
    if (m) *(act_config *)m->config = (act_config){act, slope};
    return m;
}

nn_module *nn_leaky_relu(double slope) { return activation("LeakyReLU", OP_ACT_LEAKY_RELU, slope); }
nn_module *nn_relu(void) { return activation("ReLU", OP_ACT_RELU, 0); }
nn_module *nn_tanh(void) { return activation("Tanh", OP_ACT_TANH, 0); }
nn_module *nn_sigmoid(void) { return activation("Sigmoid", OP_ACT_SIGMOID, 0); }

// ---- Flatten / Reshape ------------------------------------------------------------------
static tensor *flatten_forward(nn_module *m, tensor *x) {
    (void)m;
    return op_flatten(x, 1);
}

nn_module *nn_flatten(void) { return new_module("Flatten", flatten_forward, 0); }

// ---- instance norm, reflection padding, residual blocks (Cycle-GAN's generator) ----------
typedef struct {
    double eps;
    int pad;
} image_config;

static tensor *instance_norm_forward(nn_module *m, tensor *x) {
    return op_instance_norm(x, ((const image_config *)m->config)->eps);
}

static tensor *reflection_pad_forward(nn_module *m, tensor *x) {
    return op_reflection_pad2d(x, ((const image_config *)m->config)->pad);
}

static nn_module *image_layer(const char *type, nn_forward_fn fwd, image_config cfg) {
    nn_module *m = new_module(type, fwd, sizeof cfg);
    if (m) *(image_config *)m->config = cfg;
    return m;
}

nn_module *nn_instance_norm(double eps) {
    return image_layer("InstanceNorm", instance_norm_forward, (image_config){.eps = eps});
}

nn_module *nn_reflection_pad(int p) {
    return image_layer("ReflectionPad2d", reflection_pad_forward, (image_config){.pad = p});
}

static tensor *residual_forward(nn_module *m, tensor *x) {
    return op_add(x, nn_forward(m->children[0], x));
}

nn_module *nn_residual(nn_module *body) {
    nn_module *m = new_module("Residual", residual_forward, 0);
    if (nn_adopt(m, 1, (const char *[]){"body"}, &body)) {
        nn_free(m);
        return NULL;
    }
    return m;
}

typedef struct {
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} reshape_config;

static tensor *reshape_forward(nn_module *m, tensor *x) {
    const reshape_config *cfg = m->config;
    int64_t shape[TENSOR_MAX_DIMS] = {x->shape[0]};
    memcpy(shape + 1, cfg->shape, (size_t)cfg->ndim * sizeof *shape);
    return op_reshape(x, cfg->ndim + 1, shape);
}

nn_module *nn_reshape(int ndim, const int64_t *shape) {
    nn_module *m = new_module("Reshape", reshape_forward, sizeof(reshape_config));
    if (!m) return NULL;
    reshape_config *cfg = m->config;
    if (ndim < 1 || ndim >= TENSOR_MAX_DIMS) { // the batch dimension comes on top
        err_set("Reshape: %d dimensions per sample; 1 to %d possible", ndim, TENSOR_MAX_DIMS - 1);
        nn_free(m);
        return NULL;
    }
    cfg->ndim = ndim;
    memcpy(cfg->shape, shape, (size_t)cfg->ndim * sizeof *shape);
    return m;
}

// ---- Sequential ---------------------------------------------------------------------------
static tensor *sequential_forward(nn_module *m, tensor *x) {
    for (int i = 0; i < m->n_children && x; i++) {
        nn_module *c = m->children[i];
        nn_module *next = i + 1 < m->n_children ? m->children[i + 1] : NULL;
        if (c->forward == bn_forward && next && next->forward == act_forward) {
            const act_config *a = next->config; // BatchNorm + activation: one fused pass
            x = bn_apply(c, x, a->act, a->slope);
            i++;
        } else {
            x = nn_forward(c, x);
        }
    }
    return x;
}

int nn_sequential_add(nn_module *seq, nn_module *child) {
    char name[16];
    snprintf(name, sizeof name, "%d", seq->n_children);
    return nn_add_child(seq, name, child);
}

// Takes every child, also on failure: a NULL child (a layer that could not be built) or no
// memory frees them all and returns NULL.
nn_module *nn_sequential(int n, nn_module *const *children) {
    nn_module *m = new_module("Sequential", sequential_forward, 0);
    if (!nn_adopt(m, n, NULL, children)) return m;
    err_prefix("Sequential: ");
    nn_free(m);
    return NULL;
}
