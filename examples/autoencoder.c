// A new model written against nn/: a small convolutional autoencoder that learns to
// reconstruct the synthetic membrane images. The whole recipe of a model is here:
// build modules, pack them, make an optimizer, write the step (forward, loss, minimize), run it
// with nn/'s step runner (on CUDA: captured as a graph, then replayed), save.
// Usage: autoencoder [--steps N] [--device cpu|cuda] [--out FILE.safetensors]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The same include lines in-tree and against the installed library (pkg-config --cflags banis)
#include "banis/data/dataset.h"
#include "nn/checkpoint.h"
#include "nn/nn.h"
#include "nn/step.h"
#include "tensor/error.h"

typedef struct {
    nn_module *encoder, *decoder;
    nn_optimizer *adam;
} ae_model;

// One training step on inputs[0], a batch of images: everything stays on the device; the loss
// is kept in slot 0 and read by the runner after the step.
static int train_step(nn_runner *r, void *ctx, tensor *const *inputs) {
    ae_model *m = ctx;
    nn_optimizer_zero_grad(m->adam);
    // the forward in a scope of its own, ended before the backward with only the loss kept:
    // the graph alone holds the activations and frees each once the backward is past it
    tensor_scope_begin();
    tensor *loss =
        nn_mse_loss(nn_forward(m->decoder, nn_forward(m->encoder, inputs[0])), inputs[0]);
    tensor_scope_end_keeping(1, &loss);
    return nn_step_minimize(r, m->adam, loss, 0, "reconstruction loss");
}

int main(int argc, char **argv) {
    int steps = 150;
    const char *out = "autoencoder.safetensors";
    tensor_device_type dev = DEVICE_CPU;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: autoencoder [--steps N] [--device cpu|cuda] [--out FILE.safetensors]\n"
                   "Trains a small autoencoder written against nn/ and saves its checkpoint.\n");
            return 0;
        }
        if (i + 1 >= argc || (strcmp(argv[i], "--steps") && strcmp(argv[i], "--out") &&
                              strcmp(argv[i], "--device"))) {
            fprintf(stderr, "autoencoder: unknown or incomplete option %s (--help)\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device"))
            dev = !strcmp(argv[i + 1], "cuda") ? DEVICE_CUDA : DEVICE_CPU;
        else
            out = argv[i + 1];
    }
    // 1. a context says the dtype, the device and where initial weights come from
    rng init, data_rng;
    rng_init(&init, 1);
    rng_init(&data_rng, 2);
    nn_ctx c = {.dtype = TENSOR_F32, .device = dev, .init_rng = &init};

    // 2. modules: (N, 1, 64, 64) -> (N, 32) -> (N, 1, 64, 64); layers declare their parameters
    nn_module *encoder = nn_sequential(
        8, (nn_module *[]){
               nn_conv2d(&c, 1, 8, 5, 2, NN_PAD_SAME, true), nn_leaky_relu(0.2), // 32x32
               nn_conv2d(&c, 8, 16, 5, 2, NN_PAD_SAME, false), nn_batch_norm(&c, 16, 0.9, 1e-3),
               nn_leaky_relu(0.2), // 16x16
               nn_flatten(), nn_linear(&c, 16 * 16 * 16, 32, true), nn_tanh()});
    nn_module *decoder =
        nn_sequential(7, (nn_module *[]){nn_linear(&c, 32, 16 * 16 * 16, true),
                                         nn_reshape(SHAPE(16, 16, 16)), nn_leaky_relu(0.2),
                                         nn_conv_transpose2d(&c, 16, 8, 5, 2, NN_PAD_SAME, true),
                                         nn_leaky_relu(0.2), // 32x32
                                         nn_conv_transpose2d(&c, 8, 1, 5, 2, NN_PAD_SAME, true),
                                         nn_tanh()}); // 64x64
    nn_module *model = nn_container("Autoencoder");
    // nn_place creates them inside one flat buffer and initialises them from c.init_rng
    if (nn_adopt(model, 2, (const char *[]){"encoder", "decoder"},
                 (nn_module *[]){encoder, decoder}) ||
        nn_place(model)) {
        fprintf(stderr, "autoencoder: %s\n", err_message());
        return 1;
    }

    // 3. an optimizer over the model: one update pass over its flat buffer per step
    nn_optimizer *adam = nn_optimizer_for("adam", nn_adam(2e-3, 0.9, 0.999, 1e-7), 1, &model);

    // 4. data: the synthetic membranes (channel A)
    synth_config sc = synth_defaults();
    banis_dataset *d = banis_synthetic(&sc, 512, 3);
    banis_split split = banis_split_make(d->n, 0.1, 3);
    banis_sampler sampler;
    banis_sampler_init(&sampler, split.train, split.n_train, 4);
    printf("autoencoder: %lld parameters, %d training images\n",
           (long long)nn_count_parameters(model), split.n_train);

    // 5. the loop: the runner runs each step in a scope of its own (its graph and temporaries
    //    freed at its end) and reads its loss once; on CUDA it captures the first step as a
    //    graph and replays it, copying each new batch into the graph's input
    ae_model m = {encoder, decoder, adam};
    nn_runner *runner = nn_runner_new(&(nn_runner_config){
        .dtype = TENSOR_F32, .device = dev, .graphs = true, .n_opts = 1, .opts = {adam}});
    int idx[32];
    double first = 0, last = 0;
    for (int step = 1; step <= steps; step++) {
        tensor_scope_begin();
        tensor *a, *b;
        banis_sampler_next(&sampler, 32, idx);
        if (!runner || banis_batch(d, idx, 32, TENSOR_F32, dev, &a, &b) ||
            nn_runner_run(runner, 0, train_step, &m, 1, &a, &last, 1)) {
            fprintf(stderr, "autoencoder: step %d: %s\n", step, err_message());
            return 1;
        }
        tensor_scope_end();
        if (step == 1) first = last;
        if (step % 10 == 0 || step == 1) printf("step %4d  loss %.4f\n", step, last);
    }
    if (dev == DEVICE_CUDA)
        printf("CUDA graphs: %lld replays%s%s\n", (long long)nn_runner_replays(runner, 0),
               nn_runner_fallback(runner)[0] ? "; not captured: " : "", nn_runner_fallback(runner));
    nn_runner_free(runner);

    // 6. evaluate on held-out images, in inference mode, without a graph
    nn_set_training(model, false);
    bool prev = ag_set_grad_enabled(false);
    tensor_scope_begin();
    tensor *a, *b;
    banis_batch(d, split.test, split.n_test, TENSOR_F32, dev, &a, &b);
    double test = tensor_item(nn_mse_loss(nn_forward(decoder, nn_forward(encoder, a)), a));
    tensor_scope_end();
    ag_set_grad_enabled(prev);
    printf("loss %.4f -> %.4f (train), %.4f on %d test images\n", first, last, test, split.n_test);

    // 7. save: a safetensors file any safetensors reader opens
    nn_checkpoint ck = {0};
    nn_ckpt_add_module(&ck, "", model);
    nn_ckpt_add_optimizer(&ck, adam);
    if (nn_ckpt_save(&ck, out)) {
        fprintf(stderr, "autoencoder: %s\n", err_message());
        return 1;
    }
    printf("saved %s\n", out);
    nn_ckpt_free(&ck);
    nn_optimizer_free(adam);
    nn_free(model);
    banis_sampler_free(&sampler);
    banis_split_free(&split);
    banis_dataset_free(d);
    return last < first ? 0 : 1;
}
