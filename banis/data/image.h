// Images on the host: decoding PNG and TIFF (8/16-bit, grey or multi-channel, multi-page),
// writing PNG, and the small image operations the data pipeline and the sample grids need.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAGE_MAX_SIDE  16384 // larger images are refused as absurd
#define IMAGE_MAX_PAGES 4096

// A float image, row-major, channels interleaved. Raw intensities (0..255 or 0..65535).
typedef struct {
    int w, h, c;
    int bit_depth; // of the source file: 8, 16 or 32 (signed and float images start at 0: their
                   // minimum is subtracted, so the paper's normalisation by the maximum holds)
    float *data;
} image;

image *image_new(int w, int h, int c);
void image_free(image *im);
static inline float *image_at(const image *im, int x, int y) {
    return im->data + ((size_t)y * (size_t)im->w + (size_t)x) * (size_t)im->c;
}

// Reads every page (TIFF) or the one image (PNG). Returns the page count, or -1 with an error
// naming the file. *pages is an array of images to free with image_free_pages.
int image_read(const char *path, image ***pages);
// Decodes from memory (used by the fuzzer); `name` appears in error messages.
int image_decode(const char *name, const unsigned char *bytes, size_t n, image ***pages);

// What a TIFF says about how its pages form a stack: ImageJ's description ("channels=3\n
// slices=5\n...", pages in C, Z, T order) or OME-XML's <Pixels SizeC SizeZ SizeT
// DimensionOrder>. Without either, source is "" and the counts are 0 (unknown).
typedef struct {
    char source[8]; // "ImageJ", "OME" or ""
    int channels, slices, frames;
    char order[4]; // C, Z, T as they vary across pages, fastest first ("CZT" for ImageJ)
} image_stack_info;
// Parses an ImageDescription; 0 with source "" when it is neither, -1 when it is one of them
// but inconsistent (a count < 1 or > IMAGE_MAX_PAGES, an order that is not a permutation).
int image_parse_description(const char *desc, image_stack_info *info);
// image_read, plus what the file says about its stack (info->source "" for PNG and plain TIFF).
int image_read_stack(const char *path, image ***pages, image_stack_info *info);
// The page holding channel c of slice z, frame t under `info`'s order.
int image_stack_page(const image_stack_info *info, int c, int z, int t);
void image_free_pages(image **pages, int n);

// Writes 8-bit PNG (1 = grey, 3 = RGB) from values in [lo, hi] (clamped). Atomic.
int image_write_png(const char *path, const image *im, float lo, float hi);
// A TIFF of n grey 16-bit pages (values rounded and clipped to 0..65535), the description (NULL:
// none) on the first page, in either byte order; written to a temporary file, then renamed.
int image_write_tiff16(const char *path, image *const *pages, int n, const char *description,
                       bool big_endian);

// ---- operations ---------------------------------------------------------------------------
image *image_grayscale(const image *im); // luminance (ITU-R 601) or copy
image *image_channel(const image *im, int channel);
image *image_gaussian_blur(const image *im, int ksize, double sigma); // 'reflect' borders
image *image_resize_lanczos(const image *im, int w, int h);           // a = 3
image *image_crop(const image *im, int x0, int y0, int w, int h);
image *image_transpose(const image *im);
float image_max(const image *im);
// Draws `src` (1 channel) into `dst` at (x, y), mapping [lo, hi] to channel values.
void image_paste(image *dst, const image *src, int x, int y);
// Connected regions of the set pixels of a w x h mask (4-connected, or 8 when eight): labels[p]
// is the region's number, 1 up, in the order their first pixel appears (row-major), 0 where the
// mask is 0. Returns the region count, or -1 when out of memory.
int image_label_regions(const uint8_t *mask, int w, int h, bool eight, int32_t *labels);
