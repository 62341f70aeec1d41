// libFuzzer harness for the image decoders and the preprocessing that follows them.
// Build and run: tests/fuzz/run.sh [SECONDS]
#include <stddef.h>
#include <stdint.h>

#include "../../banis/data/dataset.h"
#include "../../tensor/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image **pages = NULL;
    int n = image_decode("fuzz-input", data, size, &pages);
    if (n <= 0) return 0;
    // decoded pages of sane size go through the paper's pipeline too
    if (pages[0]->w <= 512 && pages[0]->h <= 512 && pages[0]->w >= 8) {
        static float a[BANIS_PIXELS * PREP_MAX_BOXES], b[BANIS_PIXELS * PREP_MAX_BOXES];
        prepare_options o = prepare_defaults();
        image *g = image_grayscale(pages[0]);
        if (g) {
            image *l = image_crop(g, 0, 0, g->w / 2, g->h),
                  *r = l ? image_crop(g, g->w / 2, 0, g->w / 2, g->h) : NULL;
            if (l && r) prepare_pair(l, r, &o, a, b);
            image_free(l);
            image_free(r);
            image_free(g);
        }
    }
    image_free_pages(pages, n);
    err_clear();
    return 0;
}
