// banis-data: make and look at BANIS's data.
//   banis-data synth --n N --out DIR [--seed S]
//       N synthetic pairs as PNG (A | B side by side, and a colour overlay: membrane magenta,
//       nuclei green), a contact sheet, and the set itself (DIR/dataset.safetensors).
//   banis-data tissue --out FILE.tif [--seed S] [--size 512] [--slices 16]
//       A synthetic tissue hyperstack (ImageJ, 3 channels: membrane, nuclei, cytoplasm; 16-bit
//       big-endian) to try tiling on: cells fill the field.
//   banis-data prepare RAW_DIR --out DIR [--layout auto|side-by-side|folders|tiff] [--boxes FILE]
//       [--scale 4] [--channels A,B] [--tiff-channels N] [--middle-half] [--skip-unpaired]
//       [--tiles [--tile-scale S] [--stride N] [--min-foreground F]]
//       The paper's preprocessing of a folder of raw images into DIR/dataset.safetensors,
//       with a contact sheet to look at (and, tiled, a map of the tiles and where each pair
//       came from).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../banis/data/dataset.h"
#include "../tensor/error.h"
#include "../tensor/files.h"

static int usage_to(FILE *f, int rc) {
    fprintf(
        f,
        "usage: banis-data synth --n N --out DIR [--seed S]\n"
        "       banis-data tissue --out FILE.tif [--seed S] [--size 512] [--slices 16]\n"
        "       banis-data prepare RAW_DIR --out DIR [--layout auto|side-by-side|folders|tiff]\n"
        "                  [--boxes FILE] [--scale 4] [--channels 0,1] [--tiff-channels N] "
        "[--middle-half]\n"
        "                  [--skip-unpaired] [--tiles [--tile-scale S] [--stride N] "
        "[--min-foreground F]]\n"
        "synth writes N synthetic membrane/nuclei pairs as PNG plus a contact sheet;\n"
        "tissue writes a synthetic tissue stack (cells fill the field: a case for --tiles);\n"
        "prepare turns raw microscopy images into the 64x64 training set "
        "(DIR/dataset.safetensors).\n"
        "  --layout auto        (default) from the files: RAW_DIR/A + RAW_DIR/B -> folders; TIFF "
        "stacks\n"
        "                       (several pages or channels, ImageJ/OME metadata) -> tiff; one "
        "grey\n"
        "                       page per file -> side-by-side (membrane left, nuclei right)\n"
        "  --channels A,B       the channels holding membrane and nuclei (default 0,1)\n"
        "  --tiff-channels N    channels per slice of a stack of single-channel pages that has no\n"
        "                       ImageJ or OME metadata (page = slice * N + channel)\n"
        "  --skip-unpaired      folders layout: skip (and list) images of A/ or B/ without a\n"
        "                       partner of the same name in the other, instead of refusing\n"
        "  --tiles              for tissue that fills the field: 64x64 tiles of each field in "
        "place\n"
        "                       of the paper's one crop per embryo; writes tile_map.png and "
        "tiles.csv\n"
        "  --tile-scale S       resize fields by 1/S before tiling (default: chosen so that the\n"
        "                       median nucleus is about 6 px across, as in the embryo data)\n"
        "  --stride N           pixels between tiles (default 64: no overlap)\n"
        "  --min-foreground F   skip tiles whose foreground (Otsu) covers less than F (0.25)\n");
    return rc;
}
static int usage(void) { return usage_to(stderr, 2); }

// tiles.csv: each pair's field (file or series, slice) and corner there.
static int write_tiles_csv(const banis_dataset *d, const char *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tiles.csv", out);
    FILE *f = fopen(path, "w");
    if (!f) {
        err_set("%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "pair,group,slice,x,y\n");
    for (int i = 0; i < d->n; i++) {
        const int32_t *o = d->origin + (size_t)i * BANIS_ORIGIN;
        fprintf(f, "%d,%s,%d,%d,%d\n", i, d->group_names[o[ORIGIN_GROUP]], o[ORIGIN_SLICE],
                o[ORIGIN_X], o[ORIGIN_Y]);
    }
    if (fclose(f)) {
        err_set("%s: write failed", path);
        return -1;
    }
    return 0;
}

static int write_outputs(const banis_dataset *d, const char *out, bool each) {
    char path[4096];
    if (each) {
        for (int i = 0; i < d->n; i++) {
            snprintf(path, sizeof path, "%s/pair_%04d.png", out, i);
            if (banis_write_pairs_png(path, d->a + (size_t)i * BANIS_PIXELS,
                                      d->b + (size_t)i * BANIS_PIXELS, 1, 1))
                return -1;
        }
    }
    int sheet_n = d->n < 64 ? d->n : 64;
    snprintf(path, sizeof path, "%s/contact_sheet.png", out);
    if (banis_write_pairs_png(path, d->a, d->b, sheet_n, 4)) return -1;
    if (d->tile_map) {
        snprintf(path, sizeof path, "%s/tile_map.png", out);
        if (image_write_png(path, d->tile_map, 0, 1) || write_tiles_csv(d, out)) return -1;
    }
    snprintf(path, sizeof path, "%s/dataset.safetensors", out);
    if (banis_dataset_save(d, path)) return -1;
    return 0;
}

// banis-data tissue: the stack as an ImageJ hyperstack, 16-bit big-endian.
static int write_tissue(const char *out, const tissue_config *tc, uint64_t seed) {
    image **pages = tissue_stack(tc, seed);
    int rc = -1, n = 3 * tc->slices;
    if (pages) {
        char desc[256];
        snprintf(desc, sizeof desc,
                 "ImageJ=1.54f\nimages=%d\nchannels=3\nslices=%d\nframes=1\nhyperstack=true\n"
                 "mode=composite\n",
                 n, tc->slices);
        rc = image_write_tiff16(out, pages, n, desc, true);
        image_free_pages(pages, n);
    }
    if (rc) {
        fprintf(stderr, "banis-data: %s\n", err_message());
        return 1;
    }
    printf("wrote %s: synthetic tissue, %dx%d, %d slices x 3 channels (membrane, nuclei, "
           "cytoplasm), 16-bit ImageJ hyperstack; cells %.0f px apart, nuclei %.0f px across\n",
           out, tc->size, tc->size, tc->slices, tc->cell_px, tc->nucleus_px);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage_to(stdout, 0);
    if (argc < 2) return usage();
    const char *cmd = argv[1], *out = NULL, *raw = NULL;
    int n = 64;
    uint64_t seed = 1;
    prepare_options po = prepare_defaults();
    int i = 2;
    if (!strcmp(cmd, "prepare")) {
        if (argc < 3 || argv[2][0] == '-') return usage();
        raw = argv[2];
        i = 3;
    } else if (strcmp(cmd, "synth") && strcmp(cmd, "tissue"))
        return usage();
    tissue_config tc = tissue_defaults();
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--middle-half")) {
            po.middle_half = true;
            continue;
        }
        if (!strcmp(a, "--skip-unpaired")) {
            po.skip_unpaired = true;
            continue;
        }
        if (!strcmp(a, "--tiles")) {
            po.tiles = true;
            continue;
        }
        if (!v) return usage();
        i++;
        char *end;
        if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--n")) {
            n = (int)strtol(v, &end, 10);
            if (*end || n < 1 || n > 1000000) {
                fprintf(stderr, "banis-data: --n must be 1..1000000\n");
                return 2;
            }
        } else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--size") || !strcmp(a, "--slices")) {
            int x = (int)strtol(v, &end, 10), big = !strcmp(a, "--size");
            if (*end || x < (big ? 64 : 1) || x > (big ? 4096 : 256)) {
                fprintf(stderr, "banis-data: %s must be %s\n", a, big ? "64..4096" : "1..256");
                return 2;
            }
            *(big ? &tc.size : &tc.slices) = x;
        } else if (!strcmp(a, "--layout")) {
            if (!strcmp(v, "auto"))
                po.layout = LAYOUT_AUTO;
            else if (!strcmp(v, "side-by-side"))
                po.layout = LAYOUT_SIDE_BY_SIDE;
            else if (!strcmp(v, "folders"))
                po.layout = LAYOUT_FOLDERS;
            else if (!strcmp(v, "tiff"))
                po.layout = LAYOUT_TIFF;
            else {
                fprintf(stderr,
                        "banis-data: unknown layout '%s' (auto, side-by-side, folders, tiff)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--boxes")) {
            if (prepare_read_boxes(v, &po)) {
                fprintf(stderr, "banis-data: %s\n", err_message());
                return 1;
            }
        } else if (!strcmp(a, "--scale")) {
            po.scale = atoi(v);
            if (po.scale < 1 || po.scale > 64) {
                fprintf(stderr, "banis-data: --scale must be 1..64\n");
                return 2;
            }
        } else if (!strcmp(a, "--channels")) {
            if (sscanf(v, "%d,%d", &po.channel_a, &po.channel_b) != 2 || po.channel_a < 0 ||
                po.channel_b < 0) {
                fprintf(stderr, "banis-data: --channels takes A,B (e.g. 0,1)\n");
                return 2;
            }
        } else if (!strcmp(a, "--tile-scale")) {
            po.tile_scale = (int)strtol(v, &end, 10);
            if (*end || po.tile_scale < 1 || po.tile_scale > 64) {
                fprintf(stderr, "banis-data: --tile-scale must be 1..64\n");
                return 2;
            }
        } else if (!strcmp(a, "--stride")) {
            po.tile_stride = (int)strtol(v, &end, 10);
            if (*end || po.tile_stride < 8 || po.tile_stride > 4096) {
                fprintf(stderr, "banis-data: --stride must be 8..4096\n");
                return 2;
            }
        } else if (!strcmp(a, "--min-foreground")) {
            po.tile_min_foreground = strtod(v, &end);
            if (*end || !(po.tile_min_foreground >= 0 && po.tile_min_foreground <= 1)) {
                fprintf(stderr, "banis-data: --min-foreground must be 0..1\n");
                return 2;
            }
        } else if (!strcmp(a, "--tiff-channels")) {
            po.tiff_channels = atoi(v);
            if (po.tiff_channels < 1 || po.tiff_channels > 16) {
                fprintf(stderr, "banis-data: --tiff-channels must be 1..16\n");
                return 2;
            }
        } else
            return usage();
    }
    if (!out) return usage();
    if (!strcmp(cmd, "tissue")) {
        if (!access(out, F_OK)) {
            fprintf(stderr, "banis-data: %s exists: choose another --out, or remove it\n", out);
            return 1;
        }
        return write_tissue(out, &tc, seed);
    }
    if (!raw && po.tiles) {
        fprintf(stderr, "banis-data: --tiles applies to prepare\n");
        return 2;
    }
    static const char *const ours[] = {"dataset.safetensors", "contact_sheet.png", "pair_0000.png",
                                       "tile_map.png", "tiles.csv"};
    const char *there = files_first_present(out, ours, 5);
    if (there) {
        fprintf(stderr,
                "banis-data: %s holds a data set already (%s): choose another --out, or remove "
                "it\n",
                out, there);
        return 1;
    }
    banis_dataset *d;
    if (raw) {
        d = banis_prepare(raw, &po);
        if (!d) {
            fprintf(stderr, "banis-data: %s\n", err_message());
            return 1;
        }
        if (d->n == 0) {
            fprintf(stderr, "banis-data: %s gave no pairs\n", raw);
            banis_dataset_free(d);
            return 1;
        }
        printf("read %s: %d pairs\n", d->source, d->n);
        banis_split split;
        if (banis_split_data(d, 0.1, 1, &split)) {
            printf("warning: %s\n", err_message());
        } else {
            printf("test split (banis-train's at seed 1): %d test, %d train pairs, %s\n",
                   split.n_test, split.n_train, split.how);
            banis_split_free(&split);
        }
    } else {
        synth_config c = synth_defaults();
        d = banis_synthetic(&c, n, seed);
        if (!d) {
            fprintf(stderr, "banis-data: out of memory for %d pairs\n", n);
            return 1;
        }
    }
    char stage[4200]; // everything into a staging folder, then moved into out at once
    int rc = files_stage_begin(out, stage, sizeof stage);
    if (rc)
        err_set("cannot create %s: %s", out, strerror(errno));
    else if ((rc = write_outputs(d, stage, raw == NULL)))
        files_stage_abort(stage);
    else if ((rc = files_stage_commit(stage, out)))
        err_set("moving the outputs into %s: %s", out, strerror(errno));
    if (!rc)
        printf("wrote %s: dataset.safetensors (%d pairs of 64x64, A = membrane, B = nuclei, in "
               "[-1, 1]), contact_sheet.png%s\n",
               out, d->n,
               !raw          ? ", pair_NNNN.png"
               : d->tile_map ? ", tile_map.png, tiles.csv"
                             : "");
    if (rc) fprintf(stderr, "banis-data: %s\n", err_message());
    banis_dataset_free(d);
    return rc ? 1 : 0;
}
