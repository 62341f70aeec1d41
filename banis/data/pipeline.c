// The paper's preprocessing of one raw pair (dataset.h): grayscale, blur, resize, the embryo
// boxes (or a crop around the foreground found by Otsu's threshold), transposing, padding to
// 64x64 and normalising by the raw image's maximum. It needs only the image code (the fuzzer
// links it alone).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "dataset.h"

prepare_options prepare_defaults(void) {
    return (prepare_options){.layout = LAYOUT_AUTO,
                             .scale = 4,
                             .channel_a = 0,
                             .channel_b = 1,
                             .tiff_channels = 0,
                             .tile_stride = BANIS_SIDE,
                             .tile_min_foreground = 0.25};
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

float prepare_otsu(const image *im) {
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
        float t = prepare_otsu(sum);
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
