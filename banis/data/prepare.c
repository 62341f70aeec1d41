// Real images into a data set (dataset.h): the layouts (side by side, A/ and B/ folders, TIFF
// stacks with their channels), each file's pairs through the paper's pipeline (pipeline.c).
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../tensor/error.h"
#include "dataset.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool image_name(const char *n) {
    const char *dot = strrchr(n, '.');
    return dot &&
           (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff"));
}

// Sorted image file names in dir.
static int list_images(const char *dir, char ***names) {
    DIR *d = opendir(dir);
    if (!d) {
        err_set("%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !image_name(e->d_name)) continue;
        if (!strcmp(e->d_name, "contact_sheet.png"))
            continue; // the overview banis-data writes, not a pair
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **g = realloc(v, sizeof *v * (size_t)cap);
            if (!g) break;
            v = g;
        }
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n == 0) {
        free(v);
        err_set("%s: no PNG or TIFF images in this folder", dir);
        return -1;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *names = v;
    return n;
}

static void free_names(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

#define TILE_MAPS 4 // fields drawn on the tile map: the first field of the first groups

// What preparing a folder carries from file to file.
typedef struct {
    banis_dataset *d;
    prepare_options o; // tiling: the scale chosen on the first field holds for all
    float *ca, *cb;    // room for PREP_MAX_BOXES pairs
    int kept, skipped, fields, n_maps, map_group;
    bool scale_given; // --tile-scale; else chosen on the first field from nucleus_px
    double nucleus_px;
    image *maps[TILE_MAPS];
} prep_ctx;

// A new group named `name`: its index, or -1 (said).
static int new_group(prep_ctx *x, const char *name) {
    banis_dataset *d = x->d;
    char **g = realloc(d->group_names, sizeof *g * (size_t)(d->n_groups + 1));
    if (!g) {
        err_set("out of host memory");
        return -1;
    }
    d->group_names = g;
    if (!(g[d->n_groups] = strdup(name))) {
        err_set("out of host memory");
        return -1;
    }
    return d->n_groups++;
}

// The group of a single-slice file: the series of files named like it but for a trailing
// number before the extension ("emb1_z03.png": series "emb1_z#.png", slice 3); a name without
// one is a group of its own. -1 (said) when out of memory.
static int series_group(prep_ctx *x, const char *name, int *slice) {
    const char *dot = strrchr(name, '.');
    size_t end = dot ? (size_t)(dot - name) : strlen(name), digits = end;
    while (digits > 0 && name[digits - 1] >= '0' && name[digits - 1] <= '9') digits--;
    char series[300];
    *slice = 0;
    if (digits == end || end - digits > 8)
        snprintf(series, sizeof series, "%s", name);
    else {
        *slice = atoi(name + digits);
        snprintf(series, sizeof series, "%.*s#%s", (int)digits, name, dot ? dot : "");
    }
    for (int g = 0; g < x->d->n_groups; g++)
        if (!strcmp(x->d->group_names[g], series)) return g;
    return new_group(x, series);
}

// One field (the raw A and B of a slice) into pairs: tiles, or the boxes / the auto crop.
static int prepare_field(prep_ctx *x, const image *ia, const image *ib, int group, int slice) {
    if (x->o.tiles) {
        image **map = x->n_maps < TILE_MAPS && group != x->map_group ? &x->maps[x->n_maps] : NULL;
        tile_report rep;
        if (prepare_tiles(ia, ib, &x->o, x->d, group, slice, map, &rep)) return -1;
        if (map && *map) {
            x->n_maps++;
            x->map_group = group;
        }
        if (!x->o.tile_scale) {
            x->o.tile_scale = rep.scale;
            x->nucleus_px = rep.nucleus_px;
        }
        x->kept += rep.kept;
        x->skipped += rep.skipped;
        x->fields++;
        return 0;
    }
    int got = prepare_pair(ia, ib, &x->o, x->ca, x->cb);
    if (got < 0) return -1;
    int32_t origin[PREP_MAX_BOXES * BANIS_ORIGIN];
    for (int k = 0; k < got; k++) {
        int32_t *o = origin + k * BANIS_ORIGIN;
        o[ORIGIN_GROUP] = group;
        o[ORIGIN_SLICE] = slice;
        o[ORIGIN_X] = o[ORIGIN_Y] = -1;
    }
    return banis_dataset_append(x->d, x->ca, x->cb, origin, got);
}

// The tile maps side by side, 4 pixels apart, into d->tile_map.
static int join_maps(prep_ctx *x) {
    int w = 0, h = 0;
    for (int i = 0; i < x->n_maps; i++) {
        w += x->maps[i]->w + (i ? 4 : 0);
        h = x->maps[i]->h > h ? x->maps[i]->h : h;
    }
    if (!x->n_maps) return 0;
    image *m = image_new(w, h, 3);
    if (!m) return -1;
    for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++) m->data[i] = 0.25f;
    for (int i = 0, x0 = 0; i < x->n_maps; x0 += x->maps[i]->w + 4, i++)
        for (int y = 0; y < x->maps[i]->h; y++)
            memcpy(image_at(m, x0, y), image_at(x->maps[i], 0, y),
                   sizeof(float) * 3 * (size_t)x->maps[i]->w);
    x->d->tile_map = m;
    return 0;
}

static image *grey_page(const char *path, image **pages, int i) {
    image *g = image_grayscale(pages[i]);
    if (!g) err_prefix("%s: ", path);
    return g;
}

static const char *layout_name(data_layout l) {
    return l == LAYOUT_FOLDERS        ? "folders"
           : l == LAYOUT_TIFF         ? "tiff"
           : l == LAYOUT_SIDE_BY_SIDE ? "side-by-side"
                                      : "auto";
}

static bool is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

// A file whose pages form a stack: several pages, 2 channels per pixel, or metadata saying so.
static bool is_stack(int n_pages, image **pages, const image_stack_info *info) {
    return n_pages > 1 || pages[0]->c == 2 || (info->source[0] && info->channels > 1);
}

// How the single-channel pages of a TIFF stack hold channels, slices and frames: from its
// ImageJ/OME metadata, or --tiff-channels; what neither settles is refused, naming the flag.
static int stack_geometry(const char *path, int n_pages, const image_stack_info *meta,
                          const prepare_options *o, image_stack_info *g) {
    if (meta->source[0]) {
        if (o->tiff_channels > 0 && o->tiff_channels != meta->channels) {
            err_set("%s: its %s metadata says %d channel%s, --tiff-channels says %d: drop the flag "
                    "(or fix the file)",
                    path, meta->source, meta->channels, meta->channels == 1 ? "" : "s",
                    o->tiff_channels);
            return -1;
        }
        long long pages = (long long)meta->channels * meta->slices * meta->frames; // each <= 4096
        if (pages != n_pages) {
            err_set("%s: its %s metadata says %d channels x %d slices x %d frames = %lld pages; "
                    "the file has %d",
                    path, meta->source, meta->channels, meta->slices, meta->frames, pages, n_pages);
            return -1;
        }
        *g = *meta;
        return 0;
    }
    if (o->tiff_channels <= 0) {
        err_set(
            "%s: %d single-channel pages and no ImageJ or OME description of its channels: give "
            "--tiff-channels N (pages alternate channels: page = slice * N + channel)",
            path, n_pages);
        return -1;
    }
    if (n_pages % o->tiff_channels) {
        err_set("%s: %d pages do not divide into %d channels", path, n_pages, o->tiff_channels);
        return -1;
    }
    *g = (image_stack_info){.channels = o->tiff_channels,
                            .slices = n_pages / o->tiff_channels,
                            .frames = 1,
                            .order = "CZT"};
    return 0;
}

// The pairs of one TIFF stack: every slice (and frame), or the middle half of them.
static int prepare_stack(prep_ctx *x, const char *path, const char *name, image **pa, int na,
                         const image_stack_info *meta) {
    const prepare_options *o = &x->o;
    bool multi = pa[0]->c > 1; // channels interleaved in each page: pages are slices
    image_stack_info g = {.channels = pa[0]->c, .slices = na, .frames = 1, .order = "CZT"};
    if (multi && meta->source[0] && meta->channels != pa[0]->c && meta->channels != 1) {
        err_set("%s: its %s metadata says %d channels, its pages hold %d", path, meta->source,
                meta->channels, pa[0]->c);
        return -1;
    }
    if (!multi && stack_geometry(path, na, meta, o, &g)) return -1;
    if (o->channel_a >= g.channels || o->channel_b >= g.channels) {
        err_set("%s: channels %d and %d requested (--channels); the file has %d", path,
                o->channel_a, o->channel_b, g.channels);
        return -1;
    }
    int count = g.slices * g.frames, s0 = 0, s1 = count;
    if (o->middle_half && count >= 4) {
        s0 = count / 4;
        s1 = s0 + count / 2;
    }
    for (int i = 0; i < na; i++)
        if (pa[i]->w != pa[0]->w || pa[i]->h != pa[0]->h || pa[i]->c != pa[0]->c) {
            err_set("%s: page %d is %dx%d with %d channels, page 0 %dx%d with %d", path, i,
                    pa[i]->w, pa[i]->h, pa[i]->c, pa[0]->w, pa[0]->h, pa[0]->c);
            return -1;
        }
    int group = new_group(x, name);
    if (group < 0) return -1;
    for (int s = s0; s < s1; s++) {
        int z = s % g.slices, t = s / g.slices;
        image *ia, *ib;
        if (multi) {
            ia = image_channel(pa[s], o->channel_a);
            ib = ia ? image_channel(pa[s], o->channel_b) : NULL;
        } else {
            ia = image_channel(pa[image_stack_page(&g, o->channel_a, z, t)], 0);
            ib = ia ? image_channel(pa[image_stack_page(&g, o->channel_b, z, t)], 0) : NULL;
        }
        int rc = ib ? prepare_field(x, ia, ib, group, s) : -1;
        image_free(ia);
        image_free(ib);
        if (rc) {
            if (g.frames > 1)
                err_prefix("%s slice %d frame %d: ", path, z, t);
            else
                err_prefix("%s slice %d: ", path, z);
            return -1;
        }
    }
    return 0;
}

// The pair of one side-by-side image: membrane on the left half, nuclei on the right.
static int prepare_side_by_side(prep_ctx *x, const char *path, const char *name, image **pa) {
    int slice, group = series_group(x, name, &slice);
    image *g = group >= 0 ? grey_page(path, pa, 0) : NULL;
    if (!g) return -1;
    if (g->w < 2 * x->o.scale) {
        err_set("%s: %dx%d is too small to hold two side-by-side channels", path, g->w, g->h);
        image_free(g);
        return -1;
    }
    image *l = image_crop(g, 0, 0, g->w / 2, g->h),
          *r = l ? image_crop(g, g->w / 2, 0, g->w / 2, g->h) : NULL;
    int rc = l && r ? prepare_field(x, l, r, group, slice) : -1;
    image_free(l);
    image_free(r);
    image_free(g);
    if (rc) {
        err_prefix("%s: ", path);
        return -1;
    }
    return 0;
}

// The pair of A/name (read already: pa) and B/name.
static int prepare_folders(prep_ctx *x, const char *dir, const char *name, const char *path,
                           image **pa) {
    int slice, group = series_group(x, name, &slice);
    if (group < 0) return -1;
    char path_b[4096];
    snprintf(path_b, sizeof path_b, "%s/B/%s", dir, name);
    image **pb = NULL;
    int nb = image_read(path_b, &pb);
    if (nb < 0) {
        err_prefix("no match for %s: ", path);
        return -1;
    }
    if (nb > 1) {
        err_set("%s: %d pages where the folders layout reads one slice per file: give "
                "--layout tiff",
                path_b, nb);
        image_free_pages(pb, nb);
        return -1;
    }
    image *ga = grey_page(path, pa, 0), *gb = ga ? grey_page(path_b, pb, 0) : NULL;
    int rc = gb ? prepare_field(x, ga, gb, group, slice) : -1;
    image_free(ga);
    image_free(gb);
    image_free_pages(pb, nb);
    if (rc) {
        err_prefix("%s: ", path);
        return -1;
    }
    return 0;
}

// LAYOUT_AUTO: the first file decides (a stack, or one grey page of two channels side by
// side; a colour image is ambiguous and refused); `note` says what was chosen and why.
static int decide_layout(data_layout *layout, const char *path, const char *name, bool stack,
                         image **pa, int na, const image_stack_info *info, char *note,
                         size_t note_size) {
    if (stack)
        *layout = LAYOUT_TIFF;
    else if (pa[0]->c >= 3) {
        err_set("%s: a single colour image, which could be one slice side by side (membrane left, "
                "nuclei right) or two channels in its colours: give --layout side-by-side, or "
                "--layout tiff --channels A,B",
                path);
        return -1;
    } else
        *layout = LAYOUT_SIDE_BY_SIDE;
    snprintf(note, note_size, "layout %s, from %s: %s", layout_name(*layout), name,
             !stack            ? "one grey page"
             : info->source[0] ? info->source
             : na > 1          ? "several pages"
                               : "channels");
    return 0;
}

// The pairs of one file of the layout (LAYOUT_AUTO: decided by this file).
static int prepare_file(prep_ctx *x, const char *dir, const char *sub, const char *name,
                        data_layout *layout, char *note, size_t note_size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", sub, name);
    image **pa = NULL;
    image_stack_info info;
    int na = image_read_stack(path, &pa, &info);
    if (na < 0) return -1;
    bool stack = is_stack(na, pa, &info);
    int rc = 0;
    if (*layout == LAYOUT_AUTO)
        rc = decide_layout(layout, path, name, stack, pa, na, &info, note, note_size);
    if (!rc && stack && *layout != LAYOUT_TIFF) {
        err_set("%s: a stack (%d page%s of %d channel%s%s%s) where the %s layout reads one slice "
                "per file: give --layout tiff",
                path, na, na == 1 ? "" : "s", pa[0]->c, pa[0]->c == 1 ? "" : "s",
                info.source[0] ? ", described by " : "", info.source, layout_name(*layout));
        rc = -1;
    }
    if (!rc && *layout == LAYOUT_SIDE_BY_SIDE)
        rc = prepare_side_by_side(x, path, name, pa);
    else if (!rc && *layout == LAYOUT_FOLDERS)
        rc = prepare_folders(x, dir, name, path, pa);
    else if (!rc)
        rc = prepare_stack(x, path, name, pa, na, &info);
    image_free_pages(pa, na);
    return rc;
}

static bool has_name(char **names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

// The folders layout pairs A/NAME with B/NAME: every image in either needs its partner. Refused
// naming the first few without one (-1), or, with skip_unpaired, those of A/ marked in `skip`
// and all of them listed in `note`.
static int check_pairs(const char *dir, char **a, int na, bool *skip, const prepare_options *o,
                       char *note, size_t note_size) {
    char sub[4096], list[600] = "";
    snprintf(sub, sizeof sub, "%s/B", dir);
    char **b = NULL;
    int nb = list_images(sub, &b), unpaired = 0;
    if (nb < 0) nb = 0; // an empty B/: every A image is unpaired
    size_t at = 0;
    for (int side = 0; side < 2; side++) {
        char **mine = side ? b : a, **other = side ? a : b;
        int n_mine = side ? nb : na, n_other = side ? na : nb;
        for (int i = 0; i < n_mine; i++) {
            if (has_name(other, n_other, mine[i])) continue;
            if (!side) skip[i] = true;
            if (unpaired++ < 4 && at < sizeof list)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s/%s/%s",
                                       unpaired > 1 ? ", " : "", dir, side ? "B" : "A", mine[i]);
        }
    }
    free_names(b, nb);
    if (!unpaired) return 0;
    if (unpaired > 4 && at < sizeof list)
        snprintf(list + at, sizeof list - at, " and %d more", unpaired - 4);
    if (!o->skip_unpaired) {
        err_set("%d image%s without a partner of the same name in the other folder (the folders "
                "layout pairs A/NAME with B/NAME): %s; add or remove them, or give "
                "--skip-unpaired",
                unpaired, unpaired > 1 ? "s" : "", list);
        return -1;
    }
    size_t n = strlen(note);
    snprintf(note + n, note_size - n, "%sskipped %d unpaired: %s", n ? "; " : "", unpaired, list);
    return 0;
}

// What tiling made of the fields, for the data set's source.
static void tiling_note(const prep_ctx *x, char *note, size_t size) {
    size_t n = strlen(note);
    char why[96] = "given";
    if (!x->scale_given && x->nucleus_px > 0)
        snprintf(why, sizeof why, "median nucleus %.1f px across, %.1f px in the tiles",
                 x->nucleus_px, x->nucleus_px / x->o.tile_scale);
    else if (!x->scale_given && x->fields)
        snprintf(why, sizeof why, "no nuclei found to size it");
    snprintf(note + n, size - n,
             "%s%dx%d tiles at 1/%d (%s), stride %d: %d kept, %d with foreground under %.0f%% "
             "skipped, from %d fields",
             n ? "; " : "", BANIS_SIDE, BANIS_SIDE, x->o.tile_scale, why, x->o.tile_stride, x->kept,
             x->skipped, 100 * x->o.tile_min_foreground, x->fields);
}

banis_dataset *banis_prepare(const char *dir, const prepare_options *o) {
    prep_ctx x = {.o = *o, .map_group = -1, .scale_given = o->tile_scale > 0};
    x.d = calloc(1, sizeof *x.d);
    int n_names = 0;
    char **names = NULL;
    char sub[4096], path_b[4096], note[800] = "";
    bool *skip = NULL;
    x.ca = malloc(sizeof(float) * BANIS_PIXELS * PREP_MAX_BOXES);
    x.cb = malloc(sizeof(float) * BANIS_PIXELS * PREP_MAX_BOXES);
    if (!x.d || !x.ca || !x.cb) {
        err_set("out of host memory");
        goto fail;
    }
    if (o->tiles && o->n_boxes) {
        err_set("--tiles and --boxes both given: tiles cover the whole field, boxes crop it");
        goto fail;
    }
    data_layout layout = o->layout;
    if (layout == LAYOUT_AUTO) {
        snprintf(sub, sizeof sub, "%s/A", dir);
        snprintf(path_b, sizeof path_b, "%s/B", dir);
        if (is_dir(sub) && is_dir(path_b)) {
            layout = LAYOUT_FOLDERS;
            snprintf(note, sizeof note, "layout folders: found A/ and B/");
        }
    }
    snprintf(sub, sizeof sub, "%s%s", dir, layout == LAYOUT_FOLDERS ? "/A" : "");
    n_names = list_images(sub, &names);
    if (n_names < 0) goto fail;
    skip = calloc((size_t)n_names, sizeof *skip);
    if (!skip) {
        err_set("out of host memory");
        goto fail;
    }
    if (layout == LAYOUT_FOLDERS && check_pairs(dir, names, n_names, skip, o, note, sizeof note))
        goto fail;
    for (int f = 0; f < n_names; f++)
        if (!skip[f] && prepare_file(&x, dir, sub, names[f], &layout, note, sizeof note)) goto fail;
    if (o->tiles) {
        tiling_note(&x, note, sizeof note);
        if (join_maps(&x)) {
            err_set("out of host memory");
            goto fail;
        }
    }
    int used = 0;
    for (int f = 0; f < n_names; f++) used += !skip[f];
    snprintf(x.d->source, sizeof x.d->source, "%s (%d files%s%s)", dir, used, note[0] ? "; " : "",
             note);
    free_names(names, n_names);
    free(skip);
    free(x.ca);
    free(x.cb);
    for (int i = 0; i < x.n_maps; i++) image_free(x.maps[i]);
    return x.d;
fail:
    free_names(names, n_names > 0 ? n_names : 0);
    free(skip);
    free(x.ca);
    free(x.cb);
    for (int i = 0; i < x.n_maps; i++) image_free(x.maps[i]);
    banis_dataset_free(x.d);
    return NULL;
}
