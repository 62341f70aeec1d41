// Operations on images (image.h): channels, blur, Lanczos resizing, crops, pastes.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../tensor/error.h"
#include "image.h"

image *image_grayscale(const image *im) {
    image *g = image_new(im->w, im->h, 1);
    if (!g) return NULL;
    g->bit_depth = im->bit_depth;
    for (size_t i = 0; i < (size_t)im->w * (size_t)im->h; i++) {
        const float *p = im->data + i * (size_t)im->c;
        g->data[i] = im->c >= 3 ? 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2] : p[0];
    }
    return g;
}

image *image_channel(const image *im, int ch) {
    if (ch < 0 || ch >= im->c) {
        err_set("channel %d requested from an image of %d channel%s", ch, im->c,
                im->c == 1 ? "" : "s");
        return NULL;
    }
    image *g = image_new(im->w, im->h, 1);
    if (!g) return NULL;
    g->bit_depth = im->bit_depth;
    for (size_t i = 0; i < (size_t)im->w * (size_t)im->h; i++)
        g->data[i] = im->data[i * (size_t)im->c + (size_t)ch];
    return g;
}

static int reflect(int i, int n) { // OpenCV's BORDER_REFLECT_101
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
}

image *image_gaussian_blur(const image *im, int k, double sigma) {
    double kern[64];
    if (k < 1 || k > 63 || k % 2 == 0) {
        err_set("gaussian blur: kernel size %d must be odd, 1..63", k);
        return NULL;
    }
    double s = 0;
    for (int i = 0; i < k; i++) {
        double x = i - k / 2;
        kern[i] = exp(-x * x / (2 * sigma * sigma));
        s += kern[i];
    }
    for (int i = 0; i < k; i++) kern[i] /= s;
    image *tmp = image_new(im->w, im->h, im->c), *out = image_new(im->w, im->h, im->c);
    if (!tmp || !out) {
        image_free(tmp);
        image_free(out);
        return NULL;
    }
    out->bit_depth = im->bit_depth;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++)
            for (int c = 0; c < im->c; c++) {
                double a = 0;
                for (int i = 0; i < k; i++)
                    a += kern[i] * image_at(im, reflect(x + i - k / 2, im->w), y)[c];
                image_at(tmp, x, y)[c] = (float)a;
            }
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++)
            for (int c = 0; c < im->c; c++) {
                double a = 0;
                for (int i = 0; i < k; i++)
                    a += kern[i] * image_at(tmp, x, reflect(y + i - k / 2, im->h))[c];
                image_at(out, x, y)[c] = (float)a;
            }
    image_free(tmp);
    return out;
}

static double lanczos3(double x) {
    if (x == 0) return 1;
    if (x <= -3 || x >= 3) return 0;
    double px = M_PI * x;
    return 3 * sin(px) * sin(px / 3) / (px * px);
}

// Separable Lanczos-3, the kernel stretched by the scale when shrinking (antialiased, as PIL).
static image *resize_axis(const image *im, int n_out, bool horizontal) {
    int n_in = horizontal ? im->w : im->h;
    image *out = horizontal ? image_new(n_out, im->h, im->c) : image_new(im->w, n_out, im->c);
    if (!out) return NULL;
    out->bit_depth = im->bit_depth;
    double scale = (double)n_in / n_out, support = 3 * (scale > 1 ? scale : 1);
    double stretch = scale > 1 ? scale : 1;
    for (int o = 0; o < n_out; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support);
        double wsum = 0;
        for (int i = lo; i <= hi; i++) wsum += lanczos3((i + 0.5 - center) / stretch);
        int other = horizontal ? im->h : im->w;
        for (int j = 0; j < other; j++)
            for (int c = 0; c < im->c; c++) {
                double a = 0;
                for (int i = lo; i <= hi; i++) {
                    double wgt = lanczos3((i + 0.5 - center) / stretch);
                    if (wgt == 0) continue;
                    int ii = i < 0 ? 0 : i >= n_in ? n_in - 1 : i;
                    a += wgt * (horizontal ? image_at(im, ii, j) : image_at(im, j, ii))[c];
                }
                (horizontal ? image_at(out, o, j) : image_at(out, j, o))[c] = (float)(a / wsum);
            }
    }
    return out;
}

image *image_resize_lanczos(const image *im, int w, int h) {
    image *a = resize_axis(im, w, true);
    if (!a) return NULL;
    image *b = resize_axis(a, h, false);
    image_free(a);
    return b;
}

image *image_crop(const image *im, int x0, int y0, int w, int h) {
    if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 + w > im->w || y0 + h > im->h) {
        err_set("crop [%d,%d %dx%d] outside a %dx%d image", x0, y0, w, h, im->w, im->h);
        return NULL;
    }
    image *out = image_new(w, h, im->c);
    if (!out) return NULL;
    out->bit_depth = im->bit_depth;
    for (int y = 0; y < h; y++)
        memcpy(image_at(out, 0, y), image_at(im, x0, y0 + y), sizeof(float) * (size_t)(w * im->c));
    return out;
}

image *image_transpose(const image *im) {
    image *out = image_new(im->h, im->w, im->c);
    if (!out) return NULL;
    out->bit_depth = im->bit_depth;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++)
            memcpy(image_at(out, y, x), image_at(im, x, y), sizeof(float) * (size_t)im->c);
    return out;
}

float image_max(const image *im) {
    float m = -INFINITY;
    for (size_t i = 0; i < (size_t)im->w * (size_t)im->h * (size_t)im->c; i++)
        if (im->data[i] > m) m = im->data[i];
    return m;
}

void image_paste(image *dst, const image *src, int x, int y) {
    for (int j = 0; j < src->h; j++)
        for (int i = 0; i < src->w; i++) {
            int dx = x + i, dy = y + j;
            if (dx < 0 || dy < 0 || dx >= dst->w || dy >= dst->h) continue;
            for (int c = 0; c < dst->c; c++)
                image_at(dst, dx, dy)[c] = image_at(src, i, j)[c < src->c ? c : 0];
        }
}

int image_label_regions(const uint8_t *mask, int w, int h, bool eight, int32_t *labels) {
    size_t n = (size_t)w * (size_t)h;
    int *stack = malloc(sizeof(int) * (n ? n : 1));
    if (!stack) return -1;
    for (size_t p = 0; p < n; p++) labels[p] = 0;
    int count = 0;
    for (size_t start = 0; start < n; start++) {
        if (!mask[start] || labels[start]) continue;
        int top = 0;
        labels[start] = ++count;
        stack[top++] = (int)start;
        while (top) { // each pixel is pushed once: labelled when pushed
            int p = stack[--top], x = p % w, y = p / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    if ((!dx && !dy) || (!eight && dx && dy)) continue;
                    int nx = x + dx, ny = y + dy;
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    size_t q = (size_t)ny * (size_t)w + (size_t)nx;
                    if (!mask[q] || labels[q]) continue;
                    labels[q] = count;
                    stack[top++] = (int)q;
                }
        }
    }
    free(stack);
    return count;
}
