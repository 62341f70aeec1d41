#include "image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

#include "../../tensor/error.h"

image *image_new(int w, int h, int c) {
    if (w <= 0 || h <= 0 || c <= 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || c > 4) {
        err_set("image of %dx%dx%d is out of bounds (sides 1..%d, 1..4 channels)", w, h, c,
                IMAGE_MAX_SIDE);
        return NULL;
    }
    image *im = calloc(1, sizeof *im);
    if (!im) return NULL;
    im->data = calloc((size_t)w * (size_t)h * (size_t)c, sizeof *im->data);
    if (!im->data) {
        free(im);
        err_set("out of host memory for a %dx%d image", w, h);
        return NULL;
    }
    im->w = w;
    im->h = h;
    im->c = c;
    im->bit_depth = 8;
    return im;
}

void image_free(image *im) {
    if (!im) return;
    free(im->data);
    free(im);
}

void image_free_pages(image **pages, int n) {
    for (int i = 0; pages && i < n; i++) image_free(pages[i]);
    free(pages);
}

// ---- PNG ----------------------------------------------------------------------------------
typedef struct {
    const unsigned char *p;
    size_t n, at;
} mem_reader;

static void png_mem_read(png_structp png, png_bytep out, png_size_t len) {
    mem_reader *r = png_get_io_ptr(png);
    if (r->n - r->at < len) png_error(png, "file is truncated");
    memcpy(out, r->p + r->at, len);
    r->at += len;
}

static _Thread_local char png_msg[256];
static void png_err(png_structp png, png_const_charp msg) {
    snprintf(png_msg, sizeof png_msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_warn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static int decode_png(const char *name, const unsigned char *bytes, size_t n, image ***pages) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, png_err, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    // what the error path frees: volatile, since setjmp returns into this frame
    image *volatile im = NULL;
    png_bytep *volatile rows = NULL;
    unsigned char *volatile buf = NULL;
    mem_reader r = {bytes, n, 0};
    if (!info) {
        err_set("%s: out of memory starting the PNG decoder", name);
        png_destroy_read_struct(&png, NULL, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        err_set("%s: corrupt PNG: %s", name, png_msg);
        free(rows);
        free(buf);
        image_free(im);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_set_read_fn(png, &r, png_mem_read);
    png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    png_read_info(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (depth == 16) png_set_swap(png); // host order (little-endian)
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    int c = png_get_channels(png, info), d = png_get_bit_depth(png, info);
    im = image_new(w, h, c);
    if (!im) png_error(png, "image dimensions out of bounds");
    im->bit_depth = d;
    size_t rowbytes = png_get_rowbytes(png, info);
    buf = malloc(rowbytes * (size_t)h);
    rows = malloc(sizeof *rows * (size_t)h);
    if (!buf || !rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = buf + rowbytes * (size_t)y;
    png_read_image(png, rows);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w * c; x++)
            im->data[(size_t)y * (size_t)(w * c) + (size_t)x] =
                d == 16 ? ((uint16_t *)rows[y])[x] : rows[y][x];
    free(buf);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *pages = malloc(sizeof **pages);
    if (!*pages) {
        image_free(im);
        err_set("%s: out of memory", name);
        return -1;
    }
    (*pages)[0] = im;
    return 1;
}

int image_write_png(const char *path, const image *im, float lo, float hi) {
    if (im->c != 1 && im->c != 3) {
        err_set("%s: PNG output takes 1 or 3 channels, not %d", path, im->c);
        return -1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        err_set("%s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_err, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *row = malloc((size_t)im->w * (size_t)im->c);
    if (!info || !row || setjmp(png_jmpbuf(png))) {
        err_set("%s: writing PNG failed: %s", path, png_msg);
        png_destroy_write_struct(&png, &info);
        free(row);
        fclose(f);
        unlink(tmp);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8,
                 im->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    float scale = hi > lo ? 255.0f / (hi - lo) : 0;
    for (int y = 0; y < im->h; y++) {
        for (int x = 0; x < im->w * im->c; x++) {
            float v = (im->data[(size_t)y * (size_t)(im->w * im->c) + (size_t)x] - lo) * scale;
            row[x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    if (fflush(f) || fsync(fileno(f)) || fclose(f)) {
        err_set("%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path)) {
        err_set("%s: rename failed: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

// ---- TIFF ---------------------------------------------------------------------------------
typedef struct {
    const unsigned char *p;
    toff_t n, at;
} tiff_mem;

static tmsize_t tm_read(thandle_t h, void *buf, tmsize_t size) {
    tiff_mem *m = h;
    if (size < 0) return -1;
    toff_t left = m->at < m->n ? m->n - m->at : 0;
    tmsize_t k = (toff_t)size < left ? size : (tmsize_t)left;
    memcpy(buf, m->p + m->at, (size_t)k);
    m->at += (toff_t)k;
    return k;
}
static tmsize_t tm_write(thandle_t h, void *buf, tmsize_t size) {
    (void)h;
    (void)buf;
    (void)size;
    return -1;
}
static toff_t tm_seek(thandle_t h, toff_t off, int whence) {
    tiff_mem *m = h;
    toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->at : m->n;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    m->at = base + off;
    return m->at;
}
static int tm_close(thandle_t h) {
    (void)h;
    return 0;
}
static toff_t tm_size(thandle_t h) { return ((tiff_mem *)h)->n; }
static int tm_map(thandle_t h, void **base, toff_t *size) {
    (void)h;
    (void)base;
    (void)size;
    return 0;
}
static void tm_unmap(thandle_t h, void *base, toff_t size) {
    (void)h;
    (void)base;
    (void)size;
}

static _Thread_local char tiff_msg[256];
static void tiff_error(const char *module, const char *fmt, va_list ap) {
    (void)module;
    vsnprintf(tiff_msg, sizeof tiff_msg, fmt, ap);
}

// ---- stack metadata ------------------------------------------------------------------------
// The integer value after `key` (e.g. "channels=") at a line start, or 0 when absent.
static int imagej_value(const char *desc, const char *key, bool *bad) {
    size_t k = strlen(key);
    for (const char *p = desc; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, key, k)) {
            char *end;
            long v = strtol(p + k, &end, 10);
            if (end == p + k || v < 1 || v > IMAGE_MAX_PAGES) *bad = true;
            return (int)v;
        }
    return 0;
}

// The value of XML attribute `name` inside the element starting at `el` (up to its '>').
static bool xml_attr(const char *el, const char *name, char *out, size_t n) {
    const char *end = strchr(el, '>');
    size_t k = strlen(name);
    for (const char *p = el; (p = strstr(p, name)) && (!end || p < end); p += k) {
        if (p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n' && p[-1] != '\r') continue;
        const char *q = p + k;
        while (*q == ' ') q++;
        if (*q++ != '=') continue;
        while (*q == ' ') q++;
        char quote = *q++;
        if (quote != '"' && quote != '\'') continue;
        const char *close = strchr(q, quote);
        if (!close || (size_t)(close - q) >= n) return false;
        memcpy(out, q, (size_t)(close - q));
        out[close - q] = 0;
        return true;
    }
    return false;
}

int image_parse_description(const char *desc, image_stack_info *info) {
    memset(info, 0, sizeof *info);
    if (!desc) return 0;
    bool bad = false;
    if (!strncmp(desc, "ImageJ=", 7)) {
        snprintf(info->source, sizeof info->source, "ImageJ");
        snprintf(info->order, sizeof info->order, "CZT"); // ImageJ hyperstacks: XYCZT
        info->channels = imagej_value(desc, "channels=", &bad);
        info->slices = imagej_value(desc, "slices=", &bad);
        info->frames = imagej_value(desc, "frames=", &bad);
        int images = imagej_value(desc, "images=", &bad);
        if (!info->channels) info->channels = 1;
        if (!info->frames) info->frames = 1;
        if (!info->slices)
            info->slices = images && !bad ? images / (info->channels * info->frames) : 1;
        if (bad || info->slices < 1) return -1;
        return 0;
    }
    const char *px = strstr(desc, "<Pixels ");
    if (!px) px = strstr(desc, ":Pixels "); // a namespace prefix (<ome:Pixels ...>)
    if (!px || !strstr(desc, "OME")) return 0;
    snprintf(info->source, sizeof info->source, "OME");
    char v[32], order[16];
    const char *names[3] = {"SizeC", "SizeZ", "SizeT"};
    int *dst[3] = {&info->channels, &info->slices, &info->frames};
    for (int i = 0; i < 3; i++) {
        long x = xml_attr(px, names[i], v, sizeof v) ? strtol(v, NULL, 10) : 1;
        if (x < 1 || x > IMAGE_MAX_PAGES) return -1;
        *dst[i] = (int)x;
    }
    if (!xml_attr(px, "DimensionOrder", order, sizeof order))
        snprintf(order, sizeof order, "XYCZT");
    if (strlen(order) != 5 || strncmp(order, "XY", 2) || !strchr(order + 2, 'C') ||
        !strchr(order + 2, 'Z') || !strchr(order + 2, 'T'))
        return -1;
    snprintf(info->order, sizeof info->order, "%s", order + 2);
    return 0;
}

int image_stack_page(const image_stack_info *info, int c, int z, int t) {
    int page = 0, stride = 1;
    for (int i = 0; i < 3; i++) {
        char d = info->order[i];
        int idx = d == 'C'   ? c
                  : d == 'Z' ? z
                             : t,
            size = d == 'C'   ? info->channels
                   : d == 'Z' ? info->slices
                              : info->frames;
        page += idx * stride;
        stride *= size;
    }
    return page;
}

static int decode_tiff(const char *name, const unsigned char *bytes, size_t n, image ***pages_out,
                       image_stack_info *info) {
    TIFFSetErrorHandler(tiff_error);
    TIFFSetWarningHandler(NULL);
    tiff_mem m = {bytes, n, 0};
    tiff_msg[0] = 0;
    TIFF *tif = TIFFClientOpen(name, "rm", &m, tm_read, tm_write, tm_seek, tm_close, tm_size,
                               tm_map, tm_unmap);
    if (!tif) {
        err_set("%s: corrupt TIFF: %s", name, tiff_msg[0] ? tiff_msg : "cannot open");
        return -1;
    }
    if (info) {
        char *desc = NULL;
        if (TIFFGetField(tif, TIFFTAG_IMAGEDESCRIPTION, &desc) != 1) desc = NULL;
        if (image_parse_description(desc, info)) {
            err_set("%s: its %s description is inconsistent (channels, slices, frames or order)",
                    name, info->source);
            TIFFClose(tif);
            return -1;
        }
    }
    image **pages = NULL;
    int np = 0;
    do {
        uint32_t w = 0, h = 0;
        uint16_t bps = 0, spp = 1, fmt = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG;
        TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
        TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
        TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
        TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
        TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
        if (np >= IMAGE_MAX_PAGES) {
            err_set("%s: more than %d pages", name, IMAGE_MAX_PAGES);
            goto fail;
        }
        // unsigned 8/16/32, signed 16/32, float 32 (what ImageJ saves after processing)
        bool ok_kind = (fmt == SAMPLEFORMAT_UINT && (bps == 8 || bps == 16 || bps == 32)) ||
                       (fmt == SAMPLEFORMAT_INT && (bps == 16 || bps == 32)) ||
                       (fmt == SAMPLEFORMAT_IEEEFP && bps == 32);
        if (!ok_kind || spp < 1 || spp > 4 || planar != PLANARCONFIG_CONTIG) {
            err_set(
                "%s: page %d: unsupported TIFF (%u bits, %u samples, format %u, planar %u); read "
                "are "
                "8/16/32-bit unsigned, 16/32-bit signed and 32-bit float, 1-4 interleaved channels",
                name, np, bps, spp, fmt, planar);
            goto fail;
        }
        image *im =
            image_new((int)(w > IMAGE_MAX_SIDE ? 0 : w), (int)(h > IMAGE_MAX_SIDE ? 0 : h), spp);
        if (!im) {
            err_prefix("%s: page %d: ", name, np);
            goto fail;
        }
        im->bit_depth = bps;
        image **grown = realloc(pages, sizeof *pages * (size_t)(np + 1));
        if (!grown) {
            image_free(im);
            err_set("%s: out of memory", name);
            goto fail;
        }
        pages = grown;
        pages[np++] = im;
        tmsize_t sl = TIFFScanlineSize(tif);
        if (sl < (tmsize_t)((size_t)w * spp * (bps / 8))) {
            err_set("%s: page %d: inconsistent scanline size", name, np - 1);
            goto fail;
        }
        unsigned char *line = _TIFFmalloc(sl);
        if (!line) {
            err_set("%s: out of memory", name);
            goto fail;
        }
        for (uint32_t y = 0; y < h; y++) {
            if (TIFFReadScanline(tif, line, y, 0) < 0) {
                _TIFFfree(line);
                err_set("%s: page %d row %u: %s", name, np - 1, y,
                        tiff_msg[0] ? tiff_msg : "unreadable (truncated?)");
                goto fail;
            }
            float *row = im->data + (size_t)y * (size_t)w * spp;
            for (size_t x = 0; x < (size_t)w * spp; x++) {
                double v = fmt == SAMPLEFORMAT_IEEEFP ? (double)((float *)line)[x]
                           : fmt == SAMPLEFORMAT_INT  ? (bps == 16 ? (double)((int16_t *)line)[x]
                                                                   : (double)((int32_t *)line)[x])
                           : bps == 32                ? (double)((uint32_t *)line)[x]
                           : bps == 16                ? (double)((uint16_t *)line)[x]
                                                      : (double)line[x];
                if (!isfinite(v)) {
                    _TIFFfree(line);
                    err_set("%s: page %d: pixel (%u, %zu) is not finite (%g)", name, np - 1, y,
                            x / spp, v);
                    goto fail;
                }
                row[x] = (float)v;
            }
        }
        _TIFFfree(line);
        if (fmt !=
            SAMPLEFORMAT_UINT) { // signed or float: the image's own range, shifted to start at 0
            size_t count = (size_t)w * h * spp;
            float lo = count ? im->data[0] : 0;
            for (size_t i = 1; i < count; i++) lo = im->data[i] < lo ? im->data[i] : lo;
            for (size_t i = 0; i < count; i++) im->data[i] -= lo;
        }
    } while (TIFFReadDirectory(tif));
    TIFFClose(tif);
    *pages_out = pages;
    return np;
fail:
    TIFFClose(tif);
    image_free_pages(pages, np);
    return -1;
}

static int decode(const char *name, const unsigned char *bytes, size_t n, image ***pages,
                  image_stack_info *info) {
    if (info) memset(info, 0, sizeof *info);
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && !memcmp(bytes, png_sig, 8)) return decode_png(name, bytes, n, pages);
    if (n >= 4 && ((bytes[0] == 'I' && bytes[1] == 'I' && bytes[2] == 42 && bytes[3] == 0) ||
                   (bytes[0] == 'M' && bytes[1] == 'M' && bytes[2] == 0 && bytes[3] == 42) ||
                   (bytes[0] == 'I' && bytes[1] == 'I' && bytes[2] == 43 && bytes[3] == 0) ||
                   (bytes[0] == 'M' && bytes[1] == 'M' && bytes[2] == 0 && bytes[3] == 43)))
        return decode_tiff(name, bytes, n, pages, info);
    err_set("%s: not a PNG or TIFF file (%s)", name, n < 8 ? "too short" : "unknown signature");
    return -1;
}

int image_decode(const char *name, const unsigned char *bytes, size_t n, image ***pages) {
    return decode(name, bytes, n, pages, NULL);
}

int image_read(const char *path, image ***pages) { return image_read_stack(path, pages, NULL); }

int image_read_stack(const char *path, image ***pages, image_stack_info *info) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END)) {
        fclose(f);
        err_set("%s: cannot seek: %s", path, strerror(errno));
        return -1;
    }
    long size = ftell(f);
    rewind(f);
    if (size < 0 || size > (1L << 31)) {
        fclose(f);
        err_set("%s: unreadable size or larger than 2 GiB", path);
        return -1;
    }
    unsigned char *buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        err_set("%s: read failed", path);
        return -1;
    }
    fclose(f);
    int n = decode(path, buf, (size_t)size, pages, info);
    free(buf);
    return n;
}

int image_write_tiff16(const char *path, image *const *pages, int n, const char *description,
                       bool big_endian) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    TIFFSetErrorHandler(tiff_error);
    tiff_msg[0] = 0;
    TIFF *t = TIFFOpen(tmp, big_endian ? "wb" : "wl");
    if (!t) {
        err_set("%s: cannot create: %s", tmp, tiff_msg[0] ? tiff_msg : strerror(errno));
        return -1;
    }
    int rc = 0;
    uint16_t *row = malloc(sizeof(uint16_t) * (size_t)(n ? pages[0]->w : 1));
    for (int p = 0; p < n && !rc && row; p++) {
        const image *im = pages[p];
        if (im->c != 1 || im->w != pages[0]->w || im->h != pages[0]->h) {
            err_set("%s: page %d is not a grey page of the first page's size", path, p);
            rc = -1;
            break;
        }
        if (p == 0 && description) TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, description);
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, im->w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, im->h);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 16);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_SUBFILETYPE, FILETYPE_PAGE);
        TIFFSetField(t, TIFFTAG_PAGENUMBER, p, n);
        for (int y = 0; y < im->h && !rc; y++) {
            for (int x = 0; x < im->w; x++) {
                float v = *image_at(im, x, y);
                row[x] = (uint16_t)(v < 0 ? 0 : v > 65535 ? 65535 : v + 0.5f);
            }
            if (TIFFWriteScanline(t, row, (uint32_t)y, 0) < 0) rc = -1;
        }
        if (!rc && !TIFFWriteDirectory(t)) rc = -1;
        if (rc) err_set("%s: writing page %d failed: %s", path, p, tiff_msg);
    }
    if (!row) {
        err_set("%s: out of host memory", path);
        rc = -1;
    }
    free(row);
    TIFFClose(t);
    if (!rc && rename(tmp, path)) {
        err_set("%s: rename failed: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc) unlink(tmp);
    return rc;
}
