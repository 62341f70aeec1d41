// Tiling (dataset.h): tissue that fills the field cut into 64x64 tiles at a scale that keeps
// nuclei several pixels across, the tiles with too little foreground skipped, each kept tile's
// origin recorded for the split and drawn on a map of its field.
#include <math.h>
#include <stdlib.h>

#include "../../tensor/error.h"
#include "dataset.h"

static int cmp_area(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

double prepare_nucleus_diameter(const image *nuclei) {
    image *g = image_grayscale(nuclei);
    image *b = g ? image_gaussian_blur(g, 5, 1.0) : NULL; // noise would split nuclei
    size_t n = b ? (size_t)b->w * (size_t)b->h : 0;
    uint8_t *mask = b ? malloc(n) : NULL;
    int32_t *labels = mask ? malloc(sizeof(int32_t) * n) : NULL;
    int *areas = NULL, regions = -1;
    double d = 0;
    if (labels) {
        float t = prepare_otsu(b);
        for (size_t p = 0; p < n; p++) mask[p] = b->data[p] > t;
        regions = image_label_regions(mask, b->w, b->h, false, labels);
    }
    if (regions > 0 && (areas = calloc((size_t)regions + 1, sizeof *areas))) {
        for (size_t p = 0; p < n; p++) areas[labels[p]]++;
        int kept = 0; // regions of at least 3 pixels; the rest is noise
        for (int r = 1; r <= regions; r++)
            if (areas[r] >= 3) areas[kept++] = areas[r];
        if (kept) {
            qsort(areas, (size_t)kept, sizeof *areas, cmp_area);
            d = 2 * sqrt(areas[kept / 2] / M_PI);
        }
    }
    free(areas);
    free(labels);
    free(mask);
    image_free(b);
    image_free(g);
    return d;
}

static image *tile_field(const image *g, int scale) {
    if (scale == 1) return image_crop(g, 0, 0, g->w, g->h);
    double sigma = 0.4 * scale;
    int k = 2 * (int)ceil(3 * sigma) + 1;
    image *blur = image_gaussian_blur(g, k, sigma);
    image *small = blur ? image_resize_lanczos(blur, g->w / scale, g->h / scale) : NULL;
    image_free(blur);
    return small;
}

// The field in colour (membrane magenta, nuclei green, each by its maximum) to draw tiles on.
static image *tile_map_new(const image *sa, const image *sb) {
    image *m = image_new(sa->w, sa->h, 3);
    if (!m) return NULL;
    float ma = image_max(sa), mb = image_max(sb);
    for (size_t i = 0; i < (size_t)sa->w * (size_t)sa->h; i++) {
        float va = ma > 0 ? sa->data[i] / ma : 0, vb = mb > 0 ? sb->data[i] / mb : 0;
        m->data[3 * i] = va;
        m->data[3 * i + 1] = vb;
        m->data[3 * i + 2] = va;
    }
    return m;
}

static void outline(image *m, int x0, int y0, int side, float r, float g, float b) {
    for (int k = 0; k < side; k++) {
        const int xs[4] = {x0 + k, x0 + k, x0, x0 + side - 1},
                  ys[4] = {y0, y0 + side - 1, y0 + k, y0 + k};
        for (int e = 0; e < 4; e++) {
            float *p = image_at(m, xs[e], ys[e]);
            p[0] = r;
            p[1] = g;
            p[2] = b;
        }
    }
}

// Tile (x0, y0) of the scaled fields, normalised like the embryo crops: (v - m/2) / (m/2) with
// m the raw field's maximum, clipped to [-1, 1].
static void cut_tile(const image *s, int x0, int y0, float m, float *out) {
    for (int y = 0; y < BANIS_SIDE; y++)
        for (int x = 0; x < BANIS_SIDE; x++) {
            float v = m > 0 ? (*image_at(s, x0 + x, y0 + y) - m / 2) / (m / 2) : -1;
            out[y * BANIS_SIDE + x] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
}

int prepare_tiles(const image *raw_a, const image *raw_b, const prepare_options *o,
                  banis_dataset *d, int group, int slice, image **map, tile_report *rep) {
    *rep = (tile_report){0};
    if (raw_a->w != raw_b->w || raw_a->h != raw_b->h) {
        err_set("the two channels differ in size (%dx%d and %dx%d)", raw_a->w, raw_a->h, raw_b->w,
                raw_b->h);
        return -1;
    }
    image *ga = image_grayscale(raw_a), *gb = ga ? image_grayscale(raw_b) : NULL;
    image *sa = NULL, *sb = NULL, *fg = NULL;
    int rc = -1;
    if (!gb) goto done;
    rep->nucleus_px = o->tile_scale > 0 ? 0 : prepare_nucleus_diameter(gb);
    rep->scale =
        o->tile_scale > 0 ? o->tile_scale : (int)floor(rep->nucleus_px / TILE_NUCLEUS_PX + 0.5);
    if (rep->scale < 1) rep->scale = 1;
    if (raw_a->w / rep->scale < BANIS_SIDE || raw_a->h / rep->scale < BANIS_SIDE) {
        err_set("a field of %dx%d at scale 1/%d is smaller than a %dx%d tile: give a smaller "
                "--tile-scale (or do not tile)",
                raw_a->w, raw_a->h, rep->scale, BANIS_SIDE, BANIS_SIDE);
        goto done;
    }
    sa = tile_field(ga, rep->scale);
    sb = sa ? tile_field(gb, rep->scale) : NULL;
    fg = sb ? image_new(sa->w, sa->h, 1) : NULL;
    if (!fg) goto done;
    float ma = image_max(ga), mb = image_max(gb);
    for (size_t i = 0; i < (size_t)sa->w * (size_t)sa->h; i++)
        fg->data[i] = (ma > 0 ? sa->data[i] / ma : 0) + (mb > 0 ? sb->data[i] / mb : 0);
    float t = prepare_otsu(fg);
    if (map && !*map && !(*map = tile_map_new(sa, sb))) goto done;
    int stride = o->tile_stride > 0 ? o->tile_stride : BANIS_SIDE;
    float ta[BANIS_PIXELS], tb[BANIS_PIXELS];
    for (int y0 = 0; y0 + BANIS_SIDE <= sa->h; y0 += stride)
        for (int x0 = 0; x0 + BANIS_SIDE <= sa->w; x0 += stride) {
            int above = 0;
            for (int y = 0; y < BANIS_SIDE; y++)
                for (int x = 0; x < BANIS_SIDE; x++) above += *image_at(fg, x0 + x, y0 + y) > t;
            bool keep = above >= o->tile_min_foreground * BANIS_PIXELS;
            if (map && *map)
                outline(*map, x0, y0, BANIS_SIDE, 1, keep ? 1 : 0.15f, keep ? 1 : 0.15f);
            if (!keep) {
                rep->skipped++;
                continue;
            }
            cut_tile(sa, x0, y0, ma, ta);
            cut_tile(sb, x0, y0, mb, tb);
            const int32_t origin[BANIS_ORIGIN] = {group, slice, x0, y0};
            if (banis_dataset_append(d, ta, tb, origin, 1)) goto done;
            rep->kept++;
        }
    rc = 0;
done:
    image_free(ga);
    image_free(gb);
    image_free(sa);
    image_free(sb);
    image_free(fg);
    return rc;
}
