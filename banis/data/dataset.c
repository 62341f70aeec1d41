// Real images through the paper's preprocessing; storage, split, batches, pair sheets.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../nn/safetensors.h"
#include "../../tensor/error.h"
#include "dataset.h"

void banis_dataset_free(banis_dataset *d) {
    if (!d) return;
    free(d->a);
    free(d->b);
    free(d->labels);
    free(d->membrane);
    free(d->nuclei);
    free(d);
}

prepare_options prepare_defaults(void) {
    return (prepare_options){
        .layout = LAYOUT_AUTO, .scale = 4, .channel_a = 0, .channel_b = 1, .tiff_channels = 0};
}

int prepare_read_boxes(const char *path, prepare_options *o) {
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0;
    o->n_boxes = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        int b[4];
        char extra;
        int k = sscanf(line, "%d %d %d %d %c", &b[0], &b[1], &b[2], &b[3], &extra);
        if (k <= 0) continue; // blank
        if (k != 4 || b[0] < 0 || b[2] < 0 || b[1] <= b[0] || b[3] <= b[2]) {
            fclose(f);
            err_set("%s:%d: expected 'row0 row1 col0 col1' with row0 < row1, col0 < col1", path,
                    lineno);
            return -1;
        }
        if (o->n_boxes == PREP_MAX_BOXES) {
            fclose(f);
            err_set("%s: more than %d boxes", path, PREP_MAX_BOXES);
            return -1;
        }
        memcpy(o->boxes[o->n_boxes++], b, sizeof b);
    }
    fclose(f);
    if (!o->n_boxes) {
        err_set("%s: no boxes", path);
        return -1;
    }
    return 0;
}

void prepare_pad(const image *crop, float *out) {
    // the background: mean of the crop's first 3 rows
    double s = 0;
    int rows = crop->h < 3 ? crop->h : 3;
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < crop->w; x++) s += *image_at(crop, x, y);
    float bg = (float)(s / (rows * crop->w));
    for (int i = 0; i < BANIS_PIXELS; i++) out[i] = bg;
    int w = crop->w < BANIS_SIDE ? crop->w : BANIS_SIDE,
        h = crop->h < BANIS_SIDE ? crop->h : BANIS_SIDE;
    int sx = (crop->w - w) / 2, sy = (crop->h - h) / 2; // centre-crop when larger
    int ox = (BANIS_SIDE - w) / 2, oy = (BANIS_SIDE - h) / 2;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            out[(oy + y) * BANIS_SIDE + ox + x] = *image_at(crop, sx + x, sy + y);
}

// Otsu's threshold over values in [0, max].
static float otsu(const image *im) {
    int hist[256] = {0};
    float mx = image_max(im);
    if (mx <= 0) return 0;
    size_t n = (size_t)im->w * (size_t)im->h;
    for (size_t i = 0; i < n; i++) {
        int b = (int)(im->data[i] / mx * 255);
        hist[b < 0 ? 0 : b > 255 ? 255 : b]++;
    }
    double sum = 0, sum_b = 0, w_b = 0, best = -1;
    for (int i = 0; i < 256; i++) sum += i * (double)hist[i];
    int t = 0;
    for (int i = 0; i < 256; i++) {
        w_b += hist[i];
        if (w_b == 0 || w_b == (double)n) continue;
        sum_b += i * (double)hist[i];
        double mb = sum_b / w_b, mf = (sum - sum_b) / ((double)n - w_b);
        double between = w_b * ((double)n - w_b) * (mb - mf) * (mb - mf);
        if (between > best) {
            best = between;
            t = i;
        }
    }
    return (float)(t + 0.5) / 255 * mx;
}

static image *shrink(const image *raw, int scale) {
    image *blur = image_gaussian_blur(raw, 5, 1.5);
    if (!blur) return NULL;
    int w = raw->w / scale, h = raw->h / scale;
    image *small = w > 0 && h > 0 ? image_resize_lanczos(blur, w, h) : NULL;
    if (!small && (w <= 0 || h <= 0))
        err_set("image of %dx%d is smaller than the scale factor %d", raw->w, raw->h, scale);
    image_free(blur);
    return small;
}

static int emit(const image *sa, const image *sb, int x0, int y0, int w, int h, float ma, float mb,
                float *out_a, float *out_b) {
    image *ca = image_crop(sa, x0, y0, w, h), *cb = ca ? image_crop(sb, x0, y0, w, h) : NULL;
    if (!ca || !cb) {
        image_free(ca);
        return -1;
    }
    if (ca->w > ca->h) { // a crop wider than tall is transposed
        image *ta = image_transpose(ca), *tb = image_transpose(cb);
        image_free(ca);
        image_free(cb);
        ca = ta;
        cb = tb;
        if (!ca || !cb) {
            image_free(ca);
            image_free(cb);
            return -1;
        }
    }
    prepare_pad(ca, out_a);
    prepare_pad(cb, out_b);
    // (x - m/2) / (m/2), m the raw image's maximum: [0, m] -> [-1, 1]
    for (int i = 0; i < BANIS_PIXELS; i++) {
        out_a[i] = ma > 0 ? (out_a[i] - ma / 2) / (ma / 2) : -1;
        out_b[i] = mb > 0 ? (out_b[i] - mb / 2) / (mb / 2) : -1;
        out_a[i] = out_a[i] < -1 ? -1 : out_a[i] > 1 ? 1 : out_a[i];
        out_b[i] = out_b[i] < -1 ? -1 : out_b[i] > 1 ? 1 : out_b[i];
    }
    image_free(ca);
    image_free(cb);
    return 0;
}

int prepare_pair(const image *raw_a, const image *raw_b, const prepare_options *o, float *out_a,
                 float *out_b) {
    if (raw_a->w != raw_b->w || raw_a->h != raw_b->h) {
        err_set("the two channels differ in size (%dx%d and %dx%d)", raw_a->w, raw_a->h, raw_b->w,
                raw_b->h);
        return -1;
    }
    int scale = o->scale > 0 ? o->scale : 1;
    image *ga = image_grayscale(raw_a), *gb = ga ? image_grayscale(raw_b) : NULL;
    image *sa = gb ? shrink(ga, scale) : NULL, *sb = sa ? shrink(gb, scale) : NULL;
    float ma = ga ? image_max(ga) : 0, mb = gb ? image_max(gb) : 0;
    int count = -1;
    if (!sb) goto done;
    count = 0;
    if (o->n_boxes) {
        for (int k = 0; k < o->n_boxes; k++) {
            const int *bx = o->boxes[k]; // [row0, row1, col0, col1] at raw scale
            int y0 = bx[0] / scale, y1 = bx[1] / scale, x0 = bx[2] / scale, x1 = bx[3] / scale;
            if (x1 > sa->w || y1 > sa->h || x1 <= x0 || y1 <= y0) {
                err_set("box %d [%d,%d,%d,%d] lies outside the %dx%d image", k, bx[0], bx[1], bx[2],
                        bx[3], raw_a->w, raw_a->h);
                count = -1;
                goto done;
            }
            if (emit(sa, sb, x0, y0, x1 - x0, y1 - y0, ma, mb, out_a + count * BANIS_PIXELS,
                     out_b + count * BANIS_PIXELS)) {
                count = -1;
                goto done;
            }
            count++;
        }
    } else {
        // automatic: the bounding box of the foreground of both channels (Otsu), at most 64
        image *sum = image_new(sa->w, sa->h, 1);
        if (!sum) {
            count = -1;
            goto done;
        }
        for (size_t i = 0; i < (size_t)sa->w * (size_t)sa->h; i++)
            sum->data[i] = (ma > 0 ? sa->data[i] / ma : 0) + (mb > 0 ? sb->data[i] / mb : 0);
        float t = otsu(sum);
        int x0 = sa->w, y0 = sa->h, x1 = -1, y1 = -1;
        for (int y = 0; y < sa->h; y++)
            for (int x = 0; x < sa->w; x++)
                if (*image_at(sum, x, y) > t) {
                    x0 = x < x0 ? x : x0;
                    y0 = y < y0 ? y : y0;
                    x1 = x > x1 ? x : x1;
                    y1 = y > y1 ? y : y1;
                }
        image_free(sum);
        if (x1 < 0) {
            x0 = 0;
            y0 = 0;
            x1 = sa->w - 1;
            y1 = sa->h - 1;
        } // blank: take it all
        int cx = (x0 + x1 + 1) / 2, cy = (y0 + y1 + 1) / 2;
        int w = x1 - x0 + 1, h = y1 - y0 + 1;
        int side = BANIS_SIDE;
        if (w > h) {
            int t2 = side;
            side = t2;
        } // transposition happens after the crop
        w = w > side ? side : w;
        h = h > side ? side : h;
        x0 = cx - w / 2;
        y0 = cy - h / 2;
        x0 = x0 < 0 ? 0 : x0 + w > sa->w ? sa->w - w : x0;
        y0 = y0 < 0 ? 0 : y0 + h > sa->h ? sa->h - h : y0;
        if (emit(sa, sb, x0, y0, w, h, ma, mb, out_a, out_b))
            count = -1;
        else
            count = 1;
    }
done:
    image_free(ga);
    image_free(gb);
    image_free(sa);
    image_free(sb);
    return count;
}

// ---- folders ------------------------------------------------------------------------------
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

static int append(banis_dataset *d, int *cap, const float *a, const float *b, int k) {
    if (d->n + k > *cap) {
        int c = (*cap ? 2 * *cap : 256) + k;
        float *na = realloc(d->a, sizeof(float) * BANIS_PIXELS * (size_t)c);
        if (!na) return -1;
        d->a = na;
        float *nb = realloc(d->b, sizeof(float) * BANIS_PIXELS * (size_t)c);
        if (!nb) return -1;
        d->b = nb;
        *cap = c;
    }
    memcpy(d->a + (size_t)d->n * BANIS_PIXELS, a, sizeof(float) * BANIS_PIXELS * (size_t)k);
    memcpy(d->b + (size_t)d->n * BANIS_PIXELS, b, sizeof(float) * BANIS_PIXELS * (size_t)k);
    d->n += k;
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
static int prepare_stack(banis_dataset *d, int *cap, const char *path, image **pa, int na,
                         const image_stack_info *meta, const prepare_options *o, float *ca,
                         float *cb) {
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
        int got = ib ? prepare_pair(ia, ib, o, ca, cb) : -1;
        image_free(ia);
        image_free(ib);
        if (got < 0 || append(d, cap, ca, cb, got)) {
            if (g.frames > 1)
                err_prefix("%s slice %d frame %d: ", path, z, t);
            else
                err_prefix("%s slice %d: ", path, z);
            return -1;
        }
    }
    return 0;
}

banis_dataset *banis_prepare(const char *dir, const prepare_options *o) {
    banis_dataset *d = calloc(1, sizeof *d);
    int cap = 0, n_names = 0;
    char **names = NULL;
    char path[4096], path_b[4096], note[160] = "";
    float *ca = malloc(sizeof(float) * BANIS_PIXELS * PREP_MAX_BOXES);
    float *cb = malloc(sizeof(float) * BANIS_PIXELS * PREP_MAX_BOXES);
    if (!d || !ca || !cb) {
        err_set("out of host memory");
        goto fail;
    }
    data_layout layout = o->layout;
    char sub[4096];
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
    for (int f = 0; f < n_names; f++) {
        image **pa = NULL, **pb = NULL;
        int na = 0, nb = 0;
        image_stack_info info;
        snprintf(path, sizeof path, "%s/%s", sub, names[f]);
        na = image_read_stack(path, &pa, &info);
        if (na < 0) goto fail;
        bool stack = is_stack(na, pa, &info);
        if (layout == LAYOUT_AUTO) { // the first file decides; every later one must agree
            if (stack)
                layout = LAYOUT_TIFF;
            else if (pa[0]->c >= 3) {
                err_set("%s: a single colour image, which could be one slice side by side "
                        "(membrane left, nuclei "
                        "right) or two channels in its colours: give --layout side-by-side, or "
                        "--layout tiff "
                        "--channels A,B",
                        path);
                image_free_pages(pa, na);
                goto fail;
            } else
                layout = LAYOUT_SIDE_BY_SIDE;
            snprintf(note, sizeof note, "layout %s, from %s: %s", layout_name(layout), names[f],
                     !stack           ? "one grey page"
                     : info.source[0] ? info.source
                     : na > 1         ? "several pages"
                                      : "channels");
        }
        if (stack && layout != LAYOUT_TIFF) {
            err_set("%s: a stack (%d page%s of %d channel%s%s%s) where the %s layout reads one "
                    "slice per file: give "
                    "--layout tiff",
                    path, na, na == 1 ? "" : "s", pa[0]->c, pa[0]->c == 1 ? "" : "s",
                    info.source[0] ? ", described by " : "", info.source, layout_name(layout));
            image_free_pages(pa, na);
            goto fail;
        }
        int got = 0;
        if (layout == LAYOUT_SIDE_BY_SIDE) {
            image *g = grey_page(path, pa, 0);
            if (!g) {
                image_free_pages(pa, na);
                goto fail;
            }
            if (g->w < 2 * o->scale) {
                err_set("%s: %dx%d is too small to hold two side-by-side channels", path, g->w,
                        g->h);
                image_free(g);
                image_free_pages(pa, na);
                goto fail;
            }
            image *l = image_crop(g, 0, 0, g->w / 2, g->h),
                  *r = l ? image_crop(g, g->w / 2, 0, g->w / 2, g->h) : NULL;
            got = l && r ? prepare_pair(l, r, o, ca, cb) : -1;
            image_free(l);
            image_free(r);
            image_free(g);
            if (got < 0 || append(d, &cap, ca, cb, got)) {
                err_prefix("%s: ", path);
                image_free_pages(pa, na);
                goto fail;
            }
        } else if (layout == LAYOUT_FOLDERS) {
            snprintf(path_b, sizeof path_b, "%s/B/%s", dir, names[f]);
            nb = image_read(path_b, &pb);
            if (nb < 0) {
                err_prefix("no match for %s: ", path);
                image_free_pages(pa, na);
                goto fail;
            }
            if (nb > 1) {
                err_set("%s: %d pages where the folders layout reads one slice per file: give "
                        "--layout tiff",
                        path_b, nb);
                image_free_pages(pa, na);
                image_free_pages(pb, nb);
                goto fail;
            }
            image *ga = grey_page(path, pa, 0), *gb = ga ? grey_page(path_b, pb, 0) : NULL;
            got = gb ? prepare_pair(ga, gb, o, ca, cb) : -1;
            image_free(ga);
            image_free(gb);
            image_free_pages(pb, nb);
            if (got < 0 || append(d, &cap, ca, cb, got)) {
                err_prefix("%s: ", path);
                image_free_pages(pa, na);
                goto fail;
            }
        } else if (prepare_stack(d, &cap, path, pa, na, &info, o, ca, cb)) {
            image_free_pages(pa, na);
            goto fail;
        }
        image_free_pages(pa, na);
    }
    snprintf(d->source, sizeof d->source, "%s (%d files%s%s)", dir, n_names, note[0] ? "; " : "",
             note);
    free_names(names, n_names);
    free(ca);
    free(cb);
    return d;
fail:
    free_names(names, n_names > 0 ? n_names : 0);
    free(ca);
    free(cb);
    banis_dataset_free(d);
    return NULL;
}

// ---- storage ------------------------------------------------------------------------------
int banis_dataset_save(const banis_dataset *d, const char *path) {
    tensor_scope_begin();
    nn_tensor_list l = {0};
    nn_list_add(
        &l, "A",
        tensor_from_host(TENSOR_F32, SHAPE(d->n, 1, BANIS_SIDE, BANIS_SIDE), d->a, DEVICE_CPU));
    nn_list_add(
        &l, "B",
        tensor_from_host(TENSOR_F32, SHAPE(d->n, 1, BANIS_SIDE, BANIS_SIDE), d->b, DEVICE_CPU));
    st_meta meta[1] = {{"source", ""}};
    snprintf(meta[0].value, sizeof meta[0].value, "%s", d->source);
    int rc = l.n == 2 && l.items[0].t && l.items[1].t ? st_save(path, &l, 1, meta) : -1;
    nn_list_free(&l);
    tensor_scope_end();
    return rc;
}

banis_dataset *banis_dataset_load(const char *path) {
    st_file *f = st_open(path);
    if (!f) return NULL;
    const st_entry *ea = st_find(f, "A"), *eb = st_find(f, "B");
    banis_dataset *d = NULL;
    if (!ea || !eb || ea->dtype != TENSOR_F32 || eb->dtype != TENSOR_F32 || ea->ndim != 4 ||
        eb->ndim != 4 || ea->shape[0] != eb->shape[0] || ea->shape[1] != 1 ||
        ea->shape[2] != BANIS_SIDE || ea->shape[3] != BANIS_SIDE || eb->shape[1] != 1 ||
        eb->shape[2] != BANIS_SIDE || eb->shape[3] != BANIS_SIDE) {
        err_set("%s: not a BANIS data set (needs float32 tensors A and B of shape (N, 1, 64, 64))",
                path);
        goto done;
    }
    d = calloc(1, sizeof *d);
    if (!d) goto done;
    d->n = (int)ea->shape[0];
    d->a = malloc(ea->end - ea->begin + 1);
    d->b = malloc(eb->end - eb->begin + 1);
    if (!d->a || !d->b) {
        banis_dataset_free(d);
        d = NULL;
        err_set("%s: out of host memory", path);
        goto done;
    }
    memcpy(d->a, f->bytes + f->data_start + ea->begin, ea->end - ea->begin);
    memcpy(d->b, f->bytes + f->data_start + eb->begin, eb->end - eb->begin);
    for (size_t i = 0; i < (size_t)d->n * BANIS_PIXELS * 2;
         i++) { // NaN in data poisons every weight at once
        const float v =
            i < (size_t)d->n * BANIS_PIXELS ? d->a[i] : d->b[i - (size_t)d->n * BANIS_PIXELS];
        if (isfinite(v)) continue;
        size_t j = i % ((size_t)d->n * BANIS_PIXELS);
        err_set("%s: image %s of pair %zu has a non-finite value (%g) at pixel (%zu, %zu)", path,
                i < (size_t)d->n * BANIS_PIXELS ? "A" : "B", j / BANIS_PIXELS, (double)v,
                j % BANIS_PIXELS / BANIS_SIDE, j % BANIS_SIDE);
        banis_dataset_free(d);
        d = NULL;
        goto done;
    }
    const char *src = st_meta_get(f, "source");
    snprintf(d->source, sizeof d->source, "%s", src ? src : path);
done:
    st_close(f);
    return d;
}

// ---- split and batches ------------------------------------------------------------------
static void shuffle(int *v, int n, rng *r) {
    for (int i = n - 1; i > 0; i--) {
        uint32_t w[4];
        rng_block(r, (uint64_t)i, 0, w);
        int j = (int)(((uint64_t)w[0] * (uint64_t)(i + 1)) >> 32);
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    r->offset += (uint64_t)n;
}

banis_split banis_split_make(int n, double test_fraction, uint64_t seed) {
    banis_split s = {0};
    int *all = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!all) return s;
    for (int i = 0; i < n; i++) all[i] = i;
    rng r;
    rng_init(&r, seed);
    shuffle(all, n, &r);
    s.n_test = (int)lround(n * test_fraction);
    if (n >= 2 && s.n_test < 1 && test_fraction > 0) s.n_test = 1;
    s.n_train = n - s.n_test;
    s.test = malloc(sizeof(int) * (size_t)(s.n_test ? s.n_test : 1));
    s.train = malloc(sizeof(int) * (size_t)(s.n_train ? s.n_train : 1));
    memcpy(s.test, all, sizeof(int) * (size_t)s.n_test);
    memcpy(s.train, all + s.n_test, sizeof(int) * (size_t)s.n_train);
    free(all);
    return s;
}

void banis_split_free(banis_split *s) {
    free(s->train);
    free(s->test);
    *s = (banis_split){0};
}

void banis_sampler_init(banis_sampler *s, const int *pool, int n, uint64_t seed) {
    s->pool = pool;
    s->n_pool = n;
    s->order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) s->order[i] = pool[i];
    rng_init(&s->r, seed);
    s->at = n; // shuffle on first use
}

void banis_sampler_free(banis_sampler *s) { free(s->order); }

void banis_sampler_next(banis_sampler *s, int count, int *out) {
    for (int k = 0; k < count; k++) {
        if (s->at >= s->n_pool) {
            shuffle(s->order, s->n_pool, &s->r);
            s->at = 0;
        }
        out[k] = s->order[s->at++];
    }
}

int banis_batch(const banis_dataset *d, const int *idx, int count, tensor_dtype dt,
                tensor_device_type dev, tensor **a, tensor **b) {
    double *ha = malloc(sizeof(double) * BANIS_PIXELS * (size_t)count);
    double *hb = malloc(sizeof(double) * BANIS_PIXELS * (size_t)count);
    if (!ha || !hb) {
        free(ha);
        free(hb);
        err_set("batch: out of host memory");
        return -1;
    }
    for (int k = 0; k < count; k++)
        for (int i = 0; i < BANIS_PIXELS; i++) {
            ha[(size_t)k * BANIS_PIXELS + (size_t)i] =
                d->a[(size_t)idx[k] * BANIS_PIXELS + (size_t)i];
            hb[(size_t)k * BANIS_PIXELS + (size_t)i] =
                d->b[(size_t)idx[k] * BANIS_PIXELS + (size_t)i];
        }
    *a = tensor_from_doubles(dt, SHAPE(count, 1, BANIS_SIDE, BANIS_SIDE), ha, dev);
    *b = tensor_from_doubles(dt, SHAPE(count, 1, BANIS_SIDE, BANIS_SIDE), hb, dev);
    free(ha);
    free(hb);
    return *a && *b ? 0 : -1;
}

int banis_write_pairs_png(const char *path, const float *a, const float *b, int n, int per_row) {
    const int gap = 2, cell_w = 3 * BANIS_SIDE + 2 * gap, cell_h = BANIS_SIDE;
    int rows = (n + per_row - 1) / per_row;
    image *sheet = image_new(per_row * (cell_w + 2 * gap), rows * (cell_h + 2 * gap), 3);
    if (!sheet) return -1;
    for (size_t i = 0; i < (size_t)sheet->w * (size_t)sheet->h * 3; i++) sheet->data[i] = 0.25f;
    for (int k = 0; k < n; k++) {
        int x0 = (k % per_row) * (cell_w + 2 * gap) + gap,
            y0 = (k / per_row) * (cell_h + 2 * gap) + gap;
        for (int y = 0; y < BANIS_SIDE; y++)
            for (int x = 0; x < BANIS_SIDE; x++) {
                float va = (a[(size_t)k * BANIS_PIXELS + (size_t)(y * BANIS_SIDE + x)] + 1) / 2;
                float vb = (b[(size_t)k * BANIS_PIXELS + (size_t)(y * BANIS_SIDE + x)] + 1) / 2;
                float *pa = image_at(sheet, x0 + x, y0 + y),
                      *pb = image_at(sheet, x0 + BANIS_SIDE + gap + x, y0 + y);
                float *po = image_at(sheet, x0 + 2 * (BANIS_SIDE + gap) + x, y0 + y);
                pa[0] = pa[1] = pa[2] = va;
                pb[0] = pb[1] = pb[2] = vb;
                po[0] = va; // membrane magenta (red + blue), nuclei green
                po[1] = vb;
                po[2] = va;
            }
    }
    int rc = image_write_png(path, sheet, 0, 1);
    image_free(sheet);
    return rc;
}
