// The C side of the safetensors interop test (tests/safetensors_interop.py):
//   safetensors_peer write PATH   writes known tensors and metadata
//   safetensors_peer read PATH    reads a file Python wrote and checks its values
#include <stdio.h>
#include <string.h>

#include "../nn/safetensors.h"
#include "../tensor/error.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: safetensors_peer write|read PATH\n");
        return 2;
    }
    if (!strcmp(argv[1], "write")) {
        double a[6] = {0, 1.5, -2, 3.25, 1e-3, -7};
        tensor_scope_begin(); // the scope owns the tensors; the list holds its own references
        nn_tensor_list l = {0};
        nn_list_add(&l, "layer.weight",
                    tensor_from_doubles(TENSOR_F32, SHAPE(2, 3), a, DEVICE_CPU));
        nn_list_add(&l, "layer.bias", tensor_from_doubles(TENSOR_F64, SHAPE(3), a, DEVICE_CPU));
        st_meta meta[1] = {{"step", "42"}};
        if (st_save(argv[2], &l, 1, meta)) {
            fprintf(stderr, "safetensors_peer: %s\n", err_message());
            return 1;
        }
        nn_list_free(&l);
        tensor_scope_end();
        return 0;
    }
    st_file *f = st_open(argv[2]);
    if (!f) {
        fprintf(stderr, "safetensors_peer: %s\n", err_message());
        return 1;
    }
    // Python wrote x = arange(12).reshape(3, 4) / 4 as F32 and y = [-1, 0.5] as F64
    tensor *x = tensor_zeros(TENSOR_F32, SHAPE(3, 4), DEVICE_CPU);
    tensor *y = tensor_zeros(TENSOR_F64, SHAPE(2), DEVICE_CPU);
    double xv[12], yv[2];
    if (st_read_into(f, "x", x) || st_read_into(f, "y", y) || tensor_to_doubles(x, xv) ||
        tensor_to_doubles(y, yv)) {
        fprintf(stderr, "safetensors_peer: %s\n", err_message());
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < 12; i++) bad += xv[i] != i / 4.0;
    bad += yv[0] != -1 || yv[1] != 0.5;
    const char *m = st_meta_get(f, "origin");
    bad += !m || strcmp(m, "python");
    printf("read %d tensors, %d mismatches\n", f->n_entries, bad);
    st_close(f);
    tensor_release(x);
    tensor_release(y);
    return bad ? 1 : 0;
}
