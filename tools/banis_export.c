// banis-export: a banis-train checkpoint as a PyTorch state_dict, in safetensors (what
// `safetensors.torch.load_file` reads and `load_state_dict` accepts) for the networks of
// bench/banis_step_torch.py (class BanisNets). What changes: Linear weights are stored (in, out)
// here (Keras) and (out, in) in PyTorch; a convolution's weight sits one level down there
// (`gen_a.4.conv.weight`, the module that crops or pads to Keras's 'same'). Batch-norm running
// statistics are copied as they are (both keep the unbiased variance); a generator's second set
// (for encoder codes, `running_mean_1`) goes under its own name, which BanisNets(..., g_bn_sets=2)
// registers. Optimizer state is not exported. With --example, also writes inputs and this library's outputs of all six networks
// in inference mode, so a port can be checked number for number.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../banis/model.h"
#include "../tensor/error.h"

static int usage(int rc) {
    fprintf(
        rc ? stderr : stdout,
        "usage: banis-export --ckpt FILE --out FILE.safetensors [--example FILE.safetensors] [--n "
        "N]\n"
        "Writes the checkpoint's six networks as a PyTorch state_dict (safetensors) for\n"
        "bench/banis_step_torch.py's BanisNets:\n"
        "  from safetensors.torch import load_file\n"
        "  nets = BanisNets(width, latent); nets.load_state_dict(load_file(OUT))\n"
        "(width and latent are in the file's metadata: banis.width, banis.latent).\n"
        "  --example FILE  also write N inputs (input.z, input.x) and this library's outputs of\n"
        "                  every network in inference mode (gen_a, gen_b, disc_a, ...) and of the\n"
        "                  Successors on input.x (successor_a, successor_b)\n");
    return rc;
}

// The PyTorch name and value of one of our tensors in network `net` (a Sequential).
static int add_exported(nn_tensor_list *out, const char *net_name, nn_module *layer,
                        const char *pname, tensor *t) {
    char name[160];
    tensor *v = t;
    if (!strcmp(layer->type, "Linear") && !strcmp(pname, "weight")) {
        v = tensor_contiguous(op_transpose(t, 0, 1)); // (in, out) -> (out, in)
        if (!v) return -1;
        snprintf(name, sizeof name, "%s.%s.%s", net_name, layer->name, pname);
    } else if (!strcmp(layer->type, "Conv2d") || !strcmp(layer->type, "ConvTranspose2d")) {
        snprintf(name, sizeof name, "%s.%s.conv.%s", net_name, layer->name, pname);
    } else if (!strcmp(layer->type, "BatchNorm") || !strcmp(layer->type, "Linear")) {
        snprintf(name, sizeof name, "%s.%s.%s", net_name, layer->name, pname);
    } else {
        err_set("%s.%s: a %s layer has no PyTorch counterpart here", net_name, layer->name,
                layer->type);
        return -1;
    }
    nn_list_add(out, name, v);
    return 0;
}

static int export_weights(banis_model *m, const char *ckpt, const char *out) {
    nn_tensor_list list = {0};
    const char *nets[6] = {"gen_a", "gen_b", "disc_a", "disc_b", "enc_a", "enc_b"};
    int rc = 0;
    for (int n = 0; n < 6 && !rc; n++) {
        nn_module *net = nn_child(m->root, nets[n]);
        for (int i = 0; i < net->n_children && !rc; i++) {
            nn_module *layer = net->children[i];
            for (int p = 0; p < layer->n_params && !rc; p++)
                rc = add_exported(&list, nets[n], layer, layer->params[p].name, layer->params[p].t);
            for (int b = 0; b < layer->n_buffers && !rc; b++)
                rc = add_exported(&list, nets[n], layer, layer->buffers[b].name,
                                  layer->buffers[b].t);
        }
    }
    st_meta meta[5] = {{"format", "pt"},
                       {"banis.width", ""},
                       {"banis.latent", ""},
                       {"banis.source", ""},
                       {"banis.g_bn_sets", ""}};
    snprintf(meta[1].value, sizeof meta[1].value, "%.17g", m->arch.width);
    snprintf(meta[2].value, sizeof meta[2].value, "%d", m->arch.latent);
    snprintf(meta[3].value, sizeof meta[3].value, "%s", ckpt);
    snprintf(meta[4].value, sizeof meta[4].value, "%d", m->arch.g_bn_sets);
    if (!rc) rc = st_save(out, &list, 5, meta);
    if (!rc) printf("banis-export: %d tensors of %s -> %s\n", list.n, ckpt, out);
    nn_list_free(&list);
    return rc;
}

// N latent vectors and N synthetic membrane images through every network, in inference mode.
static int export_example(banis_model *m, int n, const char *path) {
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, n, 7);
    if (!d) return -1;
    int *idx = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) idx[i] = i;
    tensor *a = NULL, *b = NULL;
    int rc = banis_batch(d, idx, n, TENSOR_F32, DEVICE_CPU, &a, &b);
    free(idx);
    banis_dataset_free(d);
    if (rc) return -1;
    bool prev = ag_set_grad_enabled(false);
    tensor *z = banis_sample_z(m, n);
    enum { N_OUT = 10 };
    const char *names[N_OUT] = {"input.z", "input.x", "gen_a", "gen_b",       "disc_a",
                                "disc_b",  "enc_a",   "enc_b", "successor_a", "successor_b"};
    tensor *t[N_OUT] = {z,
                        a,
                        banis_generate(m, 0, z),
                        banis_generate(m, 1, z),
                        nn_forward(m->disc[0], a),
                        nn_forward(m->disc[1], a),
                        nn_forward(m->enc[0], a),
                        nn_forward(m->enc[1], a),
                        banis_successor(m, 0, a),
                        banis_successor(m, 1, a)};
    ag_set_grad_enabled(prev);
    nn_tensor_list list = {0};
    for (int i = 0; i < N_OUT; i++) {
        if (!t[i]) {
            err_prefix("example %s: ", names[i]);
            nn_list_free(&list);
            return -1;
        }
        nn_list_add(&list, names[i], t[i]);
    }
    st_meta meta[1] = {{"format", "pt"}};
    rc = st_save(path, &list, 1, meta);
    if (!rc) printf("banis-export: inputs and outputs of %d examples -> %s\n", n, path);
    nn_list_free(&list);
    return rc;
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *example = NULL;
    int n = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(0);
        if (i + 1 >= argc) {
            fprintf(stderr, "banis-export: %s needs a value (--help)\n", a);
            return 2;
        }
        if (!strcmp(a, "--ckpt"))
            ckpt = argv[++i];
        else if (!strcmp(a, "--out"))
            out = argv[++i];
        else if (!strcmp(a, "--example"))
            example = argv[++i];
        else if (!strcmp(a, "--n")) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "banis-export: --n %s: give a count from 1 to 4096\n", argv[i]);
                return 2;
            }
            n = (int)v;
        } else {
            fprintf(stderr, "banis-export: unknown option %s (--help)\n", a);
            return 2;
        }
    }
    if (!ckpt || !out) return usage(2);
    banis_model *m = banis_model_load(ckpt);
    if (!m) {
        fprintf(stderr, "banis-export: %s\n", err_message());
        return 1;
    }
    tensor_scope_begin(); // the transposed weights and the example's tensors
    int rc = export_weights(m, ckpt, out);
    if (!rc && example) rc = export_example(m, n, example);
    tensor_scope_end();
    if (rc) fprintf(stderr, "banis-export: %s\n", err_message());
    banis_model_free(m);
    return rc ? 1 : 0;
}
