// banis-sample: synthesises new membrane/nuclei pairs from a trained BANIS checkpoint
// (the same z through G_A and G_B), and translates images of one channel into the other
// through the Successors.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tensor/error.h"
#include "../banis/model.h"
#include "../tensor/files.h"

static int usage(int rc) {
    fprintf(rc ? stderr : stdout,
            "usage: banis-sample --ckpt FILE --out DIR [--n N] [--seed S] [--from a|b IMAGES_DIR]\n"
            "  --n N             new pairs to synthesise (default 16): z ~ U(-1,1) through G_A and "
            "G_B\n"
            "  --from a DIR      translate membrane images (PNG/TIFF) to nuclei: B = S_B(a)\n"
            "  --from b DIR      translate nuclei images to membranes: A = S_A(b)\n"
            "Writes DIR/pairs.png (A | B | overlay), DIR/pair_NNNN.png, DIR/translated.png, and\n"
            "DIR/geometry.png (the first 16 pairs segmented: walls, cells, nuclei); prints the\n"
            "pairs' GMI and geometry (cells per embryo, nuclei per cell, nuclei inside cells).\n");
    return rc;
}

// One image as a 64x64 tile in [-1, 1]: shrunk (Lanczos) to fit, padded, scaled by its max.
static int to_tile(const char *path, float *tile) {
    image **pages;
    int n = image_read(path, &pages);
    if (n < 0) return -1;
    image *g = image_grayscale(pages[0]);
    image_free_pages(pages, n);
    if (!g) return -1;
    if (g->w > BANIS_SIDE || g->h > BANIS_SIDE) {
        double s = (double)BANIS_SIDE / (g->w > g->h ? g->w : g->h);
        int w = (int)(g->w * s), h = (int)(g->h * s);
        image *r = image_resize_lanczos(g, w < 1 ? 1 : w, h < 1 ? 1 : h);
        image_free(g);
        if (!r) return -1;
        g = r;
    }
    float m = image_max(g);
    prepare_pad(g, tile);
    for (int i = 0; i < BANIS_PIXELS; i++) tile[i] = m > 0 ? (tile[i] - m / 2) / (m / 2) : -1;
    image_free(g);
    return 0;
}

// Every PNG or TIFF image of dir as a tile, all read before anything is written: a corrupt one
// is refused (naming it) with nothing written. The count, or -1.
static int read_tiles(const char *dir, float **out) {
    DIR *d = opendir(dir);
    if (!d) {
        err_set("%s: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 64, rc = 0;
    float *src = malloc(sizeof(float) * BANIS_PIXELS * (size_t)cap);
    struct dirent *e;
    char path[4096];
    while (src && (e = readdir(d)) && !rc) {
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] == '.' || !dot ||
            (strcasecmp(dot, ".png") && strcasecmp(dot, ".tif") && strcasecmp(dot, ".tiff")))
            continue;
        if (n == cap) {
            float *g = realloc(src, sizeof(float) * BANIS_PIXELS * (size_t)(cap *= 2));
            if (!g) {
                err_set("out of host memory reading %s (%d images)", dir, n);
                rc = -1;
                break;
            }
            src = g;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        rc = to_tile(path, src + (size_t)n * BANIS_PIXELS);
        n++;
    }
    closedir(d);
    if (!src && !rc) {
        err_set("out of host memory reading %s", dir);
        rc = -1;
    }
    if (!rc && n == 0) {
        err_set("%s: no PNG or TIFF images", dir);
        rc = -1;
    }
    if (rc) {
        free(src);
        return -1;
    }
    *out = src;
    return n;
}

// src (n tiles of channel `from`) through the Successor into the other channel, written as
// OUT/translated.png.
static int translate(banis_model *m, char from, const float *src, int n, const char *out) {
    float *dst = malloc(sizeof(float) * BANIS_PIXELS * (size_t)n);
    if (!dst) {
        err_set("out of host memory");
        return -1;
    }
    tensor_scope_begin();
    bool prev = ag_set_grad_enabled(false);
    tensor *x = tensor_from_host(TENSOR_F32, SHAPE(n, 1, BANIS_SIDE, BANIS_SIDE), src, DEVICE_CPU);
    // a -> S_B(a) is nuclei; b -> S_A(b) is membrane
    tensor *y = banis_successor(m, from == 'a' ? DOMAIN_B : DOMAIN_A, x);
    int rc = !y || tensor_to_host(y, dst) ? -1 : 0;
    ag_set_grad_enabled(prev);
    tensor_scope_end();
    char path[4096];
    snprintf(path, sizeof path, "%s/translated.png", out);
    if (!rc)
        rc = from == 'a' ? banis_write_pairs_png(path, src, dst, n, 2)
                         : banis_write_pairs_png(path, dst, src, n, 2);
    free(dst);
    return rc;
}

// What the pairs are, by the scores of gmi.md's "Generated pairs" and "Geometry" (no real
// data here to compare with: a trained model's gmi.md has the real pairs' figures).
static int describe(const float *a, const float *b, int n, char *text, size_t size) {
    double gmi[GMI_THRESHOLDS], dsc;
    int empty;
    geometry_summary g;
    banis_gmi_of_pairs(a, b, n, gmi, &dsc, &empty);
    if (geometry_measure_set(a, b, n, NULL, &g)) return -1;
    char per_cell[32] = "no cell found", where[96] = "no nucleus signal";
    if (!isnan(g.nuclei_per_cell))
        snprintf(per_cell, sizeof per_cell, "%.2f nuclei per cell", g.nuclei_per_cell);
    if (!isnan(g.inside))
        snprintf(where, sizeof where, "%.1f%% of the nucleus signal inside cells, %.1f%% on walls",
                 g.inside, g.on_walls);
    snprintf(
        text, size,
        "  GMI of the pairs: %.1f%% / %.1f%% / %.1f%% at TS 0.1 / 0.2 / 0.3 (mean DSC %.3f, %d "
        "with an empty mask)\n"
        "  geometry: %.1f +- %.1f cells per embryo (none found in %d), %.1f nuclei per image, "
        "%s, %s\n",
        gmi[0], gmi[1], gmi[2], dsc, empty, g.cells, g.cells_sd, g.no_cells, g.nuclei, per_cell,
        where);
    return 0;
}

// n pairs from z ~ U(-1, 1) (seeded) through G_A and G_B, written into out; their scores into
// text.
static int synthesise(banis_model *m, int n, unsigned long long seed, const char *out, char *text,
                      size_t size) {
    rng r;
    rng_init(&r, seed);
    float *a = malloc(sizeof(float) * BANIS_PIXELS * (size_t)n),
          *b = malloc(sizeof(float) * BANIS_PIXELS * (size_t)n);
    int rc = a && b ? 0 : -1;
    if (rc) err_set("out of host memory for %d pairs", n);
    bool prev = ag_set_grad_enabled(false);
    for (int at = 0; at < n && !rc; at += 64) {
        int k = n - at < 64 ? n - at : 64;
        tensor_scope_begin();
        tensor *z =
            tensor_rand_uniform(&r, TENSOR_F32, SHAPE(k, m->arch.latent), -1, 1, DEVICE_CPU);
        tensor *ga = banis_generate(m, DOMAIN_A, z), *gb = banis_generate(m, DOMAIN_B, z);
        rc = !ga || !gb || tensor_to_host(ga, a + (size_t)at * BANIS_PIXELS) ||
             tensor_to_host(gb, b + (size_t)at * BANIS_PIXELS);
        tensor_scope_end();
    }
    ag_set_grad_enabled(prev);
    char path[4096];
    for (int i = 0; i < n && !rc; i++) {
        snprintf(path, sizeof path, "%s/pair_%04d.png", out, i);
        rc = banis_write_pairs_png(path, a + (size_t)i * BANIS_PIXELS, b + (size_t)i * BANIS_PIXELS,
                                   1, 1);
    }
    snprintf(path, sizeof path, "%s/pairs.png", out);
    if (!rc) rc = banis_write_pairs_png(path, a, b, n < 64 ? n : 64, 4);
    snprintf(path, sizeof path, "%s/geometry.png", out);
    if (!rc) rc = geometry_write_png(path, a, b, n < 16 ? n : 16, 4);
    if (!rc) rc = describe(a, b, n, text, size);
    free(a);
    free(b);
    return rc ? -1 : 0;
}

int main(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *from_dir = NULL;
    char from = 0;
    int n = 16;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(0);
        if (i + 1 >= argc) return usage(2);
        if (!strcmp(a, "--ckpt"))
            ckpt = argv[++i];
        else if (!strcmp(a, "--out"))
            out = argv[++i];
        else if (!strcmp(a, "--n")) {
            n = atoi(argv[++i]);
            if (n < 1 || n > 100000) {
                fprintf(stderr, "banis-sample: --n must be 1..100000\n");
                return 2;
            }
        } else if (!strcmp(a, "--seed"))
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--from") && i + 2 < argc) {
            from = argv[++i][0];
            from_dir = argv[++i];
            if ((from != 'a' && from != 'b') || argv[i - 1][1]) {
                fprintf(stderr, "banis-sample: --from takes a or b\n");
                return 2;
            }
        } else
            return usage(2);
    }
    if (!ckpt || !out) return usage(2);
    static const char *const ours[] = {"pairs.png", "translated.png", "pair_0000.png",
                                       "geometry.png"};
    const char *there = files_first_present(out, ours, 4);
    if (there) {
        fprintf(stderr,
                "banis-sample: %s holds an earlier banis-sample's output (%s): choose another "
                "--out, or remove it\n",
                out, there);
        return 1;
    }
    banis_model *m = banis_model_load(ckpt);
    if (!m) {
        fprintf(stderr, "banis-sample: %s\n", err_message());
        return 1;
    }
    float *src = NULL;
    int n_src = from ? read_tiles(from_dir, &src) : 0;
    char stage[4200], scores[1024] = "";
    int rc = n_src < 0 ? -1 : 0;
    if (!rc && files_stage_begin(out, stage, sizeof stage)) {
        err_set("cannot create %s: %s", out, strerror(errno));
        rc = -1;
    }
    if (!rc) { // everything into the staging folder, then moved into out at once
        rc = synthesise(m, n, seed, stage, scores, sizeof scores);
        if (!rc && from) rc = translate(m, from, src, n_src, stage);
        if (rc)
            files_stage_abort(stage);
        else if (files_stage_commit(stage, out)) {
            err_set("moving the outputs into %s: %s", out, strerror(errno));
            rc = -1;
        }
    }
    if (!rc) {
        printf("synthesised %d pairs -> %s/pairs.png and pair_NNNN.png (A | B | overlay: membrane "
               "magenta, nuclei green), their segmentation -> %s/geometry.png\n",
               n, out, out);
        fputs(scores, stdout);
        if (from)
            printf("translated %d %s images -> %s/translated.png\n", n_src,
                   from == 'a' ? "membrane" : "nuclei", out);
    } else
        fprintf(stderr, "banis-sample: %s\n", err_message());
    free(src);
    banis_model_free(m);
    return rc ? 1 : 0;
}
