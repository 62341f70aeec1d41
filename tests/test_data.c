// Data: the synthetic generator (determinism, geometric invariants), loaders for each layout
// and format, the preprocessing steps on hand-worked cases, and bad input refused by name.
#include <check.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "../banis/data/dataset.h"
#include "../tensor/error.h"
#include "check_runner.h"

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_data_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

START_TEST(test_synth_determinism) {
    synth_config c = synth_defaults();
    static float a1[BANIS_PIXELS], b1[BANIS_PIXELS], a2[BANIS_PIXELS], b2[BANIS_PIXELS],
        a3[BANIS_PIXELS];
    synth_pair(&c, 7, 3, a1, b1, NULL, NULL, NULL);
    synth_pair(&c, 7, 3, a2, b2, NULL, NULL, NULL);
    ck_assert_int_eq(memcmp(a1, a2, sizeof a1), 0);
    ck_assert_int_eq(memcmp(b1, b2, sizeof b1), 0);
    synth_pair(&c, 7, 4, a3, NULL, NULL, NULL, NULL);
    ck_assert_int_ne(memcmp(a1, a3, sizeof a1), 0);
    for (int i = 0; i < BANIS_PIXELS; i++)
        ck_assert(a1[i] >= -1 && a1[i] <= 1 && b1[i] >= -1 && b1[i] <= 1);
    // the whole-set generator agrees with the per-pair one (threads do not change numbers)
    banis_dataset *d = banis_synthetic(&c, 6, 7);
    ck_assert_int_eq(memcmp(d->a + 3 * BANIS_PIXELS, a1, sizeof a1), 0);
    banis_dataset_free(d);
}
END_TEST

START_TEST(test_synth_geometry_invariants) {
    synth_config c = synth_defaults();
    banis_dataset *d = banis_synthetic(&c, 300, 11);
    long inter = 0, sum = 0, nuclei_px = 0, membrane_px = 0;
    int cells_seen = 0;
    for (int k = 0; k < d->n; k++) {
        const int16_t *lab = d->labels + (size_t)k * BANIS_PIXELS;
        const uint8_t *mem = d->membrane + (size_t)k * BANIS_PIXELS,
                      *nuc = d->nuclei + (size_t)k * BANIS_PIXELS;
        int max_label = 0;
        for (int i = 0; i < BANIS_PIXELS; i++) {
            max_label = lab[i] > max_label ? lab[i] : max_label;
            inter += mem[i] && nuc[i];
            sum += mem[i] + nuc[i];
            nuclei_px += nuc[i];
            membrane_px += mem[i];
            if (!nuc[i]) continue;
            ck_assert_int_gt(lab[i], 0); // inside the embryo
            // inside its cell: no 4-neighbour of a nucleus pixel belongs to another cell
            int x = i % BANIS_SIDE, y = i / BANIS_SIDE;
            const int dx[4] = {1, -1, 0, 0}, dy[4] = {0, 0, 1, -1};
            for (int t = 0; t < 4; t++) {
                int xx = x + dx[t], yy = y + dy[t];
                if (xx < 0 || yy < 0 || xx >= BANIS_SIDE || yy >= BANIS_SIDE) continue;
                ck_assert_int_eq(lab[yy * BANIS_SIDE + xx], lab[i]);
            }
        }
        cells_seen = max_label > cells_seen ? max_label : cells_seen;
    }
    double dice = 2.0 * (double)inter / (double)sum;
    ck_assert_msg(dice < 0.02, "membrane/nuclei Dice %.4f", dice);
    ck_assert_int_gt(nuclei_px, 1000); // the masks are not trivially empty
    ck_assert_int_gt(membrane_px, 10000);
    ck_assert_int_ge(cells_seen, 30); // embryos up to ~50 cells occur
    banis_dataset_free(d);
}
END_TEST

START_TEST(test_preprocess_steps_hand_worked) {
    // pad: a 5x3 crop (3 wide, 5 tall), background = mean of its first 3 rows only (1..9: 5,
    // where all 5 rows would give 8), the crop centred
    image *crop5 = image_new(3, 5, 1);
    for (int i = 0; i < 15; i++) crop5->data[i] = (float)(i + 1);
    static float out[BANIS_PIXELS];
    prepare_pad(crop5, out);
    ck_assert_float_eq_tol(out[0], 5.0f, 1e-6);
    ck_assert_float_eq_tol(out[63 * 64 + 63], 5.0f, 1e-6);
    int ox = (64 - 3) / 2, oy = (64 - 5) / 2;
    ck_assert_float_eq(out[oy * 64 + ox], 1);
    ck_assert_float_eq(out[(oy + 4) * 64 + ox + 2], 15);
    ck_assert_float_eq_tol(out[(oy - 1) * 64 + ox], 5.0f, 1e-6); // the row above: background
    image_free(crop5);
    // a 2x3 crop (2 rows): the mean of the rows it has
    image *crop = image_new(3, 2, 1);
    float v[6] = {1, 2, 3, 4, 5, 6};
    memcpy(crop->data, v, sizeof v);
    prepare_pad(crop, out);
    ck_assert_float_eq_tol(out[0], 3.5f, 1e-6);
    oy = (64 - 2) / 2;
    ck_assert_float_eq(out[oy * 64 + ox], 1);
    ck_assert_float_eq(out[(oy + 1) * 64 + ox + 2], 6);
    // transpose
    image *t = image_transpose(crop);
    ck_assert_int_eq(t->w, 2);
    ck_assert_float_eq(*image_at(t, 1, 2), 6);
    ck_assert_float_eq(*image_at(t, 1, 0), 4);
    // gaussian 5x5 sigma 1.5: an impulse spreads into the normalised kernel
    image *imp = image_new(9, 9, 1);
    *image_at(imp, 4, 4) = 1;
    image *bl = image_gaussian_blur(imp, 5, 1.5);
    double g[5], s = 0;
    for (int i = 0; i < 5; i++) s += g[i] = exp(-(i - 2) * (i - 2) / (2 * 1.5 * 1.5));
    ck_assert_double_eq_tol(*image_at(bl, 4, 4), g[2] * g[2] / (s * s), 1e-6);
    ck_assert_double_eq_tol(*image_at(bl, 6, 5), g[4] * g[3] / (s * s), 1e-6);
    double total = 0;
    for (int i = 0; i < 81; i++) total += bl->data[i];
    ck_assert_double_eq_tol(total, 1, 1e-6);
    // Lanczos: a constant stays constant; a ramp stays a ramp in the interior
    image *ramp = image_new(64, 8, 1);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 64; x++) *image_at(ramp, x, y) = (float)x;
    image *small = image_resize_lanczos(ramp, 16, 2);
    ck_assert_double_eq_tol(*image_at(small, 8, 1), 8 * 4 + 1.5, 1e-3); // centre of pixels 32..35
    // normalisation through prepare_pair: 0 -> -1, m -> 1 (m the raw maximum)
    image *ra = image_new(64, 64, 1), *rb = image_new(64, 64, 1);
    for (int i = 0; i < 64 * 64; i++) {
        ra->data[i] = 200;
        rb->data[i] = 0;
    }
    prepare_options o = prepare_defaults();
    o.scale = 1;
    static float pa[BANIS_PIXELS * PREP_MAX_BOXES], pb[BANIS_PIXELS * PREP_MAX_BOXES];
    ck_assert_int_eq(prepare_pair(ra, rb, &o, pa, pb), 1);
    ck_assert_float_eq_tol(pa[100], 1, 1e-5);
    ck_assert_float_eq_tol(pb[100], -1, 1e-5);
    image_free(crop);
    image_free(t);
    image_free(imp);
    image_free(bl);
    image_free(ramp);
    image_free(small);
    image_free(ra);
    image_free(rb);
}
END_TEST

// A raw slice: membrane rings (A) and nucleus dots (B) from the generator, at 4x scale.
static void raw_pair(image **a, image **b, int seed) {
    synth_config c = synth_defaults();
    static float sa[BANIS_PIXELS], sb[BANIS_PIXELS];
    synth_pair(&c, 5, seed, sa, sb, NULL, NULL, NULL);
    *a = image_new(128, 128, 1);
    *b = image_new(128, 128, 1);
    for (int y = 0; y < 128; y++)
        for (int x = 0; x < 128; x++) {
            *image_at(*a, x, y) = (sa[(y / 2) * 64 + x / 2] + 1) * 127.5f;
            *image_at(*b, x, y) = (sb[(y / 2) * 64 + x / 2] + 1) * 127.5f;
        }
}

START_TEST(test_side_by_side_layout) {
    make_tmpdir();
    for (int k = 0; k < 3; k++) {
        image *a, *b;
        raw_pair(&a, &b, k);
        image *both = image_new(256, 128, 1);
        image_paste(both, a, 0, 0);
        image_paste(both, b, 128, 0);
        char path[512];
        snprintf(path, sizeof path, "%s/slice_%d.png", tmpdir, k);
        ck_assert_int_eq(image_write_png(path, both, 0, 255), 0);
        image_free(a);
        image_free(b);
        image_free(both);
    }
    prepare_options o = prepare_defaults();
    o.scale = 2;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 3);
    // the membrane channel is the brighter ring image: A's mean exceeds B's
    double ma = 0, mb = 0;
    for (int i = 0; i < 3 * BANIS_PIXELS; i++) {
        ck_assert(d->a[i] >= -1 && d->a[i] <= 1);
        ma += d->a[i];
        mb += d->b[i];
    }
    ck_assert_double_gt(ma, mb);
    // with boxes: two crops per slice
    o.n_boxes = 2;
    int boxes[2][4] = {{0, 120, 0, 100}, {10, 90, 20, 128}};
    memcpy(o.boxes, boxes, sizeof boxes);
    banis_dataset *d2 = banis_prepare(tmpdir, &o);
    ck_assert_msg(d2 != NULL, "%s", err_message());
    ck_assert_int_eq(d2->n, 6);
    // a box outside the image is refused, naming the file
    o.boxes[1][3] = 400;
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "slice_0.png"));
    // round trip through the stored form
    char path[512];
    snprintf(path, sizeof path, "%s/set.safetensors", tmpdir);
    ck_assert_int_eq(banis_dataset_save(d, path), 0);
    banis_dataset *back = banis_dataset_load(path);
    ck_assert_ptr_nonnull(back);
    ck_assert_int_eq(back->n, 3);
    ck_assert_int_eq(memcmp(back->a, d->a, sizeof(float) * 3 * BANIS_PIXELS), 0);
    banis_dataset_free(d);
    banis_dataset_free(d2);
    banis_dataset_free(back);
}
END_TEST

// One image of raw_pair(seed) (which 0: A, 1: B) written as tmpdir/name; its path in p.
static void write_raw(char *p, size_t size, const char *name, int which, int seed) {
    image *a, *b;
    raw_pair(&a, &b, seed);
    snprintf(p, size, "%s/%s", tmpdir, name);
    ck_assert_int_eq(image_write_png(p, which ? b : a, 0, 255), 0);
    image_free(a);
    image_free(b);
}

START_TEST(test_folders_layout_and_unmatched) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/A", tmpdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/B", tmpdir);
    mkdir(p, 0755);
    for (int k = 0; k < 2; k++) {
        image *a, *b;
        raw_pair(&a, &b, 10 + k);
        snprintf(p, sizeof p, "%s/A/s%d.png", tmpdir, k);
        ck_assert_int_eq(image_write_png(p, a, 0, 255), 0);
        snprintf(p, sizeof p, "%s/B/s%d.png", tmpdir, k);
        ck_assert_int_eq(image_write_png(p, b, 0, 255), 0);
        image_free(a);
        image_free(b);
    }
    prepare_options o = prepare_defaults();
    o.layout = LAYOUT_FOLDERS;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 2);
    // each pair is A/sK with B/sK: the files read back and put through the pipeline by hand
    for (int k = 0; k < 2; k++) {
        static float ea[BANIS_PIXELS * PREP_MAX_BOXES], eb[BANIS_PIXELS * PREP_MAX_BOXES];
        image **pa, **pb;
        snprintf(p, sizeof p, "%s/A/s%d.png", tmpdir, k);
        ck_assert_int_eq(image_read(p, &pa), 1);
        snprintf(p, sizeof p, "%s/B/s%d.png", tmpdir, k);
        ck_assert_int_eq(image_read(p, &pb), 1);
        image *ga = image_grayscale(pa[0]), *gb = image_grayscale(pb[0]);
        ck_assert_int_eq(prepare_pair(ga, gb, &o, ea, eb), 1);
        ck_assert_msg(
            !memcmp(ea, d->a + (size_t)k * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS) &&
                !memcmp(eb, d->b + (size_t)k * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS),
            "pair %d is not A/s%d with B/s%d", k, k, k);
        ck_assert(memcmp(eb, d->b + (size_t)(1 - k) * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS));
        image_free(ga);
        image_free(gb);
        image_free_pages(pa, 1);
        image_free_pages(pb, 1);
    }
    banis_dataset_free(d);
    // an A image without its B partner
    write_raw(p, sizeof p, "A/s9.png", 0, 20);
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_msg(strstr(err_message(), "/A/s9.png") && strstr(err_message(), "--skip-unpaired"),
                  "%s", err_message());
    // and a B image without its A partner (it used to be ignored: 2 pairs, no word)
    snprintf(p, sizeof p, "%s/A/s9.png", tmpdir);
    unlink(p);
    write_raw(p, sizeof p, "B/z.png", 1, 21);
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_msg(strstr(err_message(), "/B/z.png") && strstr(err_message(), "1 image without"),
                  "%s", err_message());
    // both kinds at once, skipped on request: the pairs that are whole, the others listed
    write_raw(p, sizeof p, "A/s9.png", 0, 22);
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_msg(strstr(err_message(), "2 images without") && strstr(err_message(), "/A/s9.png") &&
                      strstr(err_message(), "/B/z.png"),
                  "%s", err_message());
    o.skip_unpaired = true;
    d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 2);
    ck_assert_msg(strstr(d->source, "(2 files") && strstr(d->source, "skipped 2 unpaired") &&
                      strstr(d->source, "s9.png") && strstr(d->source, "z.png"),
                  "%s", d->source);
    banis_dataset_free(d);
}
END_TEST

// A TIFF of `pages` pages of `spp` interleaved channels; channel c of page pg is a disc whose
// brightness encodes (page, channel) and whose radius grows with the page, so each page's
// preprocessed crop differs. `desc`: an ImageDescription on the first page (ImageJ, OME) or NULL.
static void write_tiff_desc(const char *path, int pages, int spp, int bps, int w, int h,
                            int value_step, const char *desc) {
    TIFF *t = TIFFOpen(path, "w");
    ck_assert_ptr_nonnull(t);
    unsigned char *row = malloc((size_t)(w * spp * bps / 8));
    for (int pg = 0; pg < pages; pg++) {
        if (pg == 0 && desc) TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, desc);
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bps);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_SUBFILETYPE, FILETYPE_PAGE);
        TIFFSetField(t, TIFFTAG_PAGENUMBER, pg, pages);
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w * spp; x++) {
                // channel c of page pg: a disc whose brightness encodes (page, channel)
                int c = x % spp, px = x / spp;
                int r = w / 8 + 2 * pg;
                int inside = (px - w / 2) * (px - w / 2) + (y - h / 2) * (y - h / 2) < r * r;
                int v = inside ? (pg * spp + c + 1) * value_step : 0;
                if (bps == 16)
                    ((uint16_t *)row)[x] = (uint16_t)v;
                else
                    row[x] = (unsigned char)v;
            }
            TIFFWriteScanline(t, row, (uint32_t)y, 0);
        }
        TIFFWriteDirectory(t);
    }
    free(row);
    TIFFClose(t);
}

static void write_tiff(const char *path, int pages, int spp, int bps, int w, int h,
                       int value_step) {
    write_tiff_desc(path, pages, spp, bps, w, h, value_step, NULL);
}

// One page of a w x h TIFF of the given sample format, pixel (x, y) = f(x, y).
static void write_tiff_kind(const char *path, int fmt, int bps, int w, int h,
                            double (*f)(int, int)) {
    TIFF *t = TIFFOpen(path, "w");
    ck_assert_ptr_nonnull(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bps);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, fmt);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    unsigned char *row = malloc((size_t)(w * bps / 8));
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double v = f(x, y);
            if (fmt == SAMPLEFORMAT_IEEEFP)
                ((float *)row)[x] = (float)v;
            else if (bps == 16)
                ((int16_t *)row)[x] = (int16_t)v;
            else if (fmt == SAMPLEFORMAT_INT)
                ((int32_t *)row)[x] = (int32_t)v;
            else
                ((uint32_t *)row)[x] = (uint32_t)v;
        }
        TIFFWriteScanline(t, row, (uint32_t)y, 0);
    }
    free(row);
    TIFFClose(t);
}

static double ramp(int x, int y) { return (x - 10) * 0.25 + y * 0.5; } // -2.5 at (0, 0)
static double ramp_int(int x, int y) { return (x - 10) * 100 + y; }
static double ramp_big(int x, int y) { return x * 100000.0 + y; } // beyond 16 bits
static double with_nan(int x, int y) { return x == 3 && y == 5 ? NAN : x; }

// ImageJ's float output and signed integers are read; the image's minimum becomes 0, so the
// paper's normalisation by the maximum sees the image's own range. NaN is refused by pixel.
START_TEST(test_tiff_float_and_signed) {
    make_tmpdir();
    char p[512];
    struct {
        int fmt, bps;
        double (*f)(int, int);
        double min;
    } k[] = {{SAMPLEFORMAT_IEEEFP, 32, ramp, -2.5},
             {SAMPLEFORMAT_INT, 16, ramp_int, -1000},
             {SAMPLEFORMAT_INT, 32, ramp_int, -1000},
             {SAMPLEFORMAT_UINT, 32, ramp_big, 0}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        snprintf(p, sizeof p, "%s/kind%zu.tif", tmpdir, i);
        double (*f)(int, int) = k[i].f;
        write_tiff_kind(p, k[i].fmt, k[i].bps, 24, 16, f);
        image **pages;
        int n = image_read(p, &pages);
        ck_assert_msg(n == 1, "%s: %s", p, err_message());
        double lo = k[i].fmt == SAMPLEFORMAT_UINT ? 0 : f(0, 0); // the minimum is at (0, 0)
        ck_assert_double_eq(lo, k[i].min);
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 24; x++) {
                double want = f(x, y) - lo;
                ck_assert_msg(fabs(*image_at(pages[0], x, y) - want) < 1e-3,
                              "%s (%d, %d): %g, want %g", p, x, y,
                              (double)*image_at(pages[0], x, y), want);
            }
        image_free_pages(pages, n);
    }
    snprintf(p, sizeof p, "%s/nan.tif", tmpdir);
    write_tiff_kind(p, SAMPLEFORMAT_IEEEFP, 32, 8, 8, with_nan);
    image **pages;
    ck_assert_int_lt(image_read(p, &pages), 0);
    ck_assert_msg(strstr(err_message(), "nan.tif: page 0: pixel (5, 3) is not finite"), "%s",
                  err_message());
}
END_TEST

START_TEST(test_tiff_stacks) {
    make_tmpdir();
    char p[512];
    // 16-bit, 8 single-channel pages alternating A, B: 4 slices
    snprintf(p, sizeof p, "%s/stack16.tif", tmpdir);
    write_tiff(p, 8, 1, 16, 64, 64, 1000);
    image **pages;
    int n = image_read(p, &pages);
    ck_assert_int_eq(n, 8);
    ck_assert_int_eq(pages[0]->bit_depth, 16);
    ck_assert_float_eq(*image_at(pages[5], 32, 32), 6000);
    image_free_pages(pages, n);
    prepare_options o = prepare_defaults();
    o.layout = LAYOUT_TIFF;
    o.scale = 1;
    // no metadata says how many channels the 8 pages hold: refused, naming the flag
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "stack16.tif"));
    ck_assert_ptr_nonnull(strstr(err_message(), "--tiff-channels"));
    o.tiff_channels = 2;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 4);
    banis_dataset_free(d);
    // the middle half of the slices, as the paper keeps 15 of 30
    o.middle_half = true;
    d = banis_prepare(tmpdir, &o);
    ck_assert_int_eq(d->n, 2);
    banis_dataset_free(d);
    unlink(p);
    // 8-bit, 2 pages of 3 interleaved channels; A = channel 2, B = channel 0
    snprintf(p, sizeof p, "%s/multi8.tif", tmpdir);
    write_tiff(p, 2, 3, 8, 48, 40, 20);
    o = prepare_defaults();
    o.layout = LAYOUT_TIFF;
    o.scale = 1;
    o.channel_a = 2;
    o.channel_b = 0;
    d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 2);
    banis_dataset_free(d);
    // a channel the file does not have is refused, naming it
    o.channel_a = 5;
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "multi8.tif"));
}
END_TEST

// Each pair of `d` must be prepare_pair of pages (a_page[i], b_page[i]) of `file`'s pages.
static void assert_pairs_from_pages(const banis_dataset *d, const char *file,
                                    const prepare_options *o, int n, const int *a_page,
                                    const int *b_page) {
    image **pages;
    int np = image_read(file, &pages);
    ck_assert_int_gt(np, 0);
    ck_assert_int_eq(d->n, n);
    static float ea[BANIS_PIXELS * PREP_MAX_BOXES], eb[BANIS_PIXELS * PREP_MAX_BOXES];
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(prepare_pair(pages[a_page[i]], pages[b_page[i]], o, ea, eb), 1);
        ck_assert_msg(!memcmp(ea, d->a + (size_t)i * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS),
                      "pair %d: A is not page %d", i, a_page[i]);
        ck_assert_msg(!memcmp(eb, d->b + (size_t)i * BANIS_PIXELS, sizeof(float) * BANIS_PIXELS),
                      "pair %d: B is not page %d", i, b_page[i]);
    }
    image_free_pages(pages, np);
}

START_TEST(test_stack_metadata) {
    image_stack_info in;
    // ImageJ hyperstack descriptions: pages in C, Z, T order
    ck_assert_int_eq(
        image_parse_description("ImageJ=1.54f\nimages=12\nchannels=3\nslices=2\nframes=2\n"
                                "hyperstack=true\nmode=composite\n",
                                &in),
        0);
    ck_assert_str_eq(in.source, "ImageJ");
    ck_assert_int_eq(in.channels, 3);
    ck_assert_int_eq(in.slices, 2);
    ck_assert_int_eq(in.frames, 2);
    ck_assert_int_eq(image_stack_page(&in, 2, 1, 1), 2 + 3 * 1 + 6 * 1); // c + C z + C Z t
    ck_assert_int_eq(image_parse_description("ImageJ=1.53t\nimages=10\nchannels=2\n", &in), 0);
    ck_assert_int_eq(in.slices, 5); // from images / channels
    ck_assert_int_eq(image_parse_description("ImageJ=1.53t\nchannels=0\n", &in), -1);
    // OME-XML: the order from DimensionOrder (XYZCT: Z fastest, then C)
    ck_assert_int_eq(
        image_parse_description(
            "<?xml version=\"1.0\"?><OME "
            "xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">"
            "<Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XYZCT\" "
            "Type=\"uint16\" "
            "SizeX=\"64\" SizeY=\"64\" SizeC=\"2\" SizeZ=\"3\" SizeT=\"1\"></Pixels></Image></OME>",
            &in),
        0);
    ck_assert_str_eq(in.source, "OME");
    ck_assert_int_eq(in.channels, 2);
    ck_assert_int_eq(in.slices, 3);
    ck_assert_str_eq(in.order, "ZCT");
    ck_assert_int_eq(image_stack_page(&in, 1, 2, 0), 2 + 3 * 1); // z + Z c
    ck_assert_int_eq(
        image_parse_description("<OME><Pixels DimensionOrder=\"XYQCT\" SizeC=\"2\"/></OME>", &in),
        -1);
    ck_assert_int_eq(image_parse_description("made by a camera", &in), 0);
    ck_assert_str_eq(in.source, "");

    make_tmpdir();
    char p[512];
    // a 3-channel ImageJ hyperstack, 2 slices (pages c0z0 c1z0 c2z0 c0z1 c1z1 c2z1), membrane in
    // channel 2, nuclei in channel 0. Read before as 2-channel alternating pages (3 wrong pairs).
    snprintf(p, sizeof p, "%s/hyper.tif", tmpdir);
    write_tiff_desc(p, 6, 1, 16, 64, 64, 1000,
                    "ImageJ=1.54f\nimages=6\nchannels=3\nslices=2\nhyperstack=true\n");
    prepare_options o = prepare_defaults(); // layout auto
    o.scale = 1;
    o.channel_a = 2;
    o.channel_b = 0;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_ptr_nonnull(strstr(d->source, "layout tiff"));
    ck_assert_ptr_nonnull(strstr(d->source, "ImageJ"));
    assert_pairs_from_pages(d, p, &o, 2, (int[]){2, 5}, (int[]){0, 3});
    banis_dataset_free(d);
    // a --tiff-channels that contradicts the metadata is refused, naming both
    o.tiff_channels = 2;
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "hyper.tif"));
    ck_assert_ptr_nonnull(strstr(err_message(), "says 3 channels"));
    ck_assert_ptr_nonnull(strstr(err_message(), "--tiff-channels says 2"));
    // a channel the file does not have
    o.tiff_channels = 0;
    o.channel_a = 3;
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "the file has 3"));
    unlink(p);
    // metadata that does not match the page count
    snprintf(p, sizeof p, "%s/short.tif", tmpdir);
    write_tiff_desc(p, 5, 1, 16, 64, 64, 1000, "ImageJ=1.54f\nimages=6\nchannels=3\nslices=2\n");
    o = prepare_defaults();
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "short.tif"));
    ck_assert_ptr_nonnull(strstr(err_message(), "the file has 5"));
    unlink(p);
    // OME-TIFF, DimensionOrder XYZCT: pages z0c0 z1c0 z2c0 z0c1 z1c1 z2c1
    snprintf(p, sizeof p, "%s/ome.tif", tmpdir);
    write_tiff_desc(
        p, 6, 1, 16, 64, 64, 1000,
        "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">"
        "<Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XYZCT\" Type=\"uint16\" "
        "SizeX=\"64\" SizeY=\"64\" SizeC=\"2\" SizeZ=\"3\" SizeT=\"1\"/></Image></OME>");
    o = prepare_defaults();
    o.scale = 1;
    d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    assert_pairs_from_pages(d, p, &o, 3, (int[]){0, 1, 2}, (int[]){3, 4, 5});
    banis_dataset_free(d);
    unlink(p);
}
END_TEST

START_TEST(test_layout_detection) {
    make_tmpdir();
    char p[512];
    // a folder of stacks, default options: read as stacks (before: side by side, "2 pairs" of
    // the halves of the first page)
    snprintf(p, sizeof p, "%s/s1.tif", tmpdir);
    write_tiff_desc(p, 4, 1, 16, 64, 64, 1000, "ImageJ=1.54f\nimages=4\nchannels=2\nslices=2\n");
    snprintf(p, sizeof p, "%s/s2.tif", tmpdir);
    write_tiff_desc(p, 4, 1, 16, 64, 64, 1000, "ImageJ=1.54f\nimages=4\nchannels=2\nslices=2\n");
    prepare_options o = prepare_defaults();
    o.scale = 1;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 4);
    ck_assert_ptr_nonnull(strstr(d->source, "layout tiff"));
    banis_dataset_free(d);
    // the same files with --layout side-by-side: refused, naming the file and the flag
    o.layout = LAYOUT_SIDE_BY_SIDE;
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "s1.tif"));
    ck_assert_ptr_nonnull(strstr(err_message(), "--layout tiff"));
    // a grey side-by-side slice among stacks: the first file decided, the others must agree
    o.layout = LAYOUT_AUTO;
    image *a, *b;
    raw_pair(&a, &b, 3);
    image *both = image_new(256, 128, 1);
    image_paste(both, a, 0, 0);
    image_paste(both, b, 128, 0);
    snprintf(p, sizeof p, "%s/s0_flat.png", tmpdir);
    ck_assert_int_eq(image_write_png(p, both, 0, 255), 0);
    ck_assert_ptr_null(banis_prepare(tmpdir, &o)); // s0_flat.png first: side by side, then s1.tif
    ck_assert_ptr_nonnull(strstr(err_message(), "s1.tif"));
    snprintf(p, sizeof p, "%s/s1.tif", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/s2.tif", tmpdir);
    unlink(p);
    // grey single pages: side by side
    d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 1);
    ck_assert_ptr_nonnull(strstr(d->source, "layout side-by-side"));
    banis_dataset_free(d);
    // a colour single page says nothing about its layout: refused with both flags
    image *rgb = image_new(256, 128, 3);
    for (int i = 0; i < 256 * 128; i++)
        for (int c = 0; c < 3; c++) rgb->data[i * 3 + c] = both->data[i];
    snprintf(p, sizeof p, "%s/s0_flat.png", tmpdir);
    ck_assert_int_eq(image_write_png(p, rgb, 0, 255), 0);
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "s0_flat.png"));
    ck_assert_ptr_nonnull(strstr(err_message(), "--layout side-by-side"));
    o.layout = LAYOUT_SIDE_BY_SIDE; // said: read as grey, side by side
    d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 1);
    banis_dataset_free(d);
    unlink(p);
    // A/ and B/ folders: the folders layout
    snprintf(p, sizeof p, "%s/A", tmpdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/B", tmpdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/A/x.png", tmpdir);
    image_write_png(p, a, 0, 255);
    snprintf(p, sizeof p, "%s/B/x.png", tmpdir);
    image_write_png(p, b, 0, 255);
    o.layout = LAYOUT_AUTO;
    d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 1);
    ck_assert_ptr_nonnull(strstr(d->source, "layout folders"));
    banis_dataset_free(d);
    image_free(a);
    image_free(b);
    image_free(both);
    image_free(rgb);
}
END_TEST

// A grey PNG written by libpng itself (not our writer): depth 8 or 16, rows of `w` values.
static void write_grey_png(const char *path, int w, int h, int depth, const unsigned *values) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(png && info && !setjmp(png_jmpbuf(png)));
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    unsigned char *row = malloc((size_t)w * 2);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            unsigned v = values ? values[(y * w + x) % 6] : (unsigned)x % 256;
            if (depth == 16) {
                row[2 * x] = (unsigned char)(v >> 8); // big-endian, as PNG stores it
                row[2 * x + 1] = (unsigned char)(v & 255);
            } else
                row[x] = (unsigned char)v;
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
}

START_TEST(test_16_bit_png_and_the_size_limit) {
    make_tmpdir();
    char p[512];
    // 16-bit grey: every value read exactly, above 255 too, and the depth said
    static const unsigned v16[6] = {0, 1, 255, 256, 40000, 65535};
    snprintf(p, sizeof p, "%s/deep.png", tmpdir);
    write_grey_png(p, 3, 2, 16, v16);
    image **pages;
    ck_assert_int_eq(image_read(p, &pages), 1);
    ck_assert_int_eq(pages[0]->bit_depth, 16);
    ck_assert_int_eq(pages[0]->w, 3);
    ck_assert_int_eq(pages[0]->h, 2);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(pages[0]->data[i], (float)v16[i]);
    ck_assert_float_eq(image_max(pages[0]), 65535);
    image_free_pages(pages, 1);
    // 16,384 pixels a side is the limit: a row of 16,384 is read, one of 16,385 refused by name
    snprintf(p, sizeof p, "%s/wide.png", tmpdir);
    write_grey_png(p, IMAGE_MAX_SIDE, 1, 8, NULL);
    ck_assert_int_eq(image_read(p, &pages), 1);
    ck_assert_int_eq(pages[0]->w, 16384);
    image_free_pages(pages, 1);
    snprintf(p, sizeof p, "%s/too_wide.png", tmpdir);
    write_grey_png(p, IMAGE_MAX_SIDE + 1, 1, 8, NULL);
    ck_assert_int_eq(image_read(p, &pages), -1);
    ck_assert_msg(strstr(err_message(), "too_wide.png"), "%s", err_message());
    ck_assert_ptr_null(image_new(IMAGE_MAX_SIDE + 1, 1, 1));
}
END_TEST

START_TEST(test_bad_input_refused) {
    make_tmpdir();
    char p[512];
    image **pages;
    // empty folder
    prepare_options o = prepare_defaults();
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "no PNG or TIFF"));
    // a truncated PNG
    image *a, *b;
    raw_pair(&a, &b, 1);
    snprintf(p, sizeof p, "%s/cut.png", tmpdir);
    image_write_png(p, a, 0, 255);
    image_free(a);
    image_free(b);
    FILE *f = fopen(p, "r+");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    ck_assert_int_eq(truncate(p, size / 2), 0);
    ck_assert_int_lt(image_read(p, &pages), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "cut.png"));
    ck_assert_ptr_nonnull(strstr(err_message(), "corrupt PNG"));
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "cut.png"));
    unlink(p);
    // not an image at all
    snprintf(p, sizeof p, "%s/text.png", tmpdir);
    f = fopen(p, "w");
    fputs("this is not a picture", f);
    fclose(f);
    ck_assert_int_lt(image_read(p, &pages), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "not a PNG or TIFF"));
    unlink(p);
    // absurd dimensions: a valid 20000 x 1 PNG
    snprintf(p, sizeof p, "%s/wide.png", tmpdir);
    f = fopen(p, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, 20000, 1, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    unsigned char *row = calloc(20000, 1);
    png_write_row(png, row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
    ck_assert_int_lt(image_read(p, &pages), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "wide.png"));
    unlink(p);
    // a boxes file with a bad line
    snprintf(p, sizeof p, "%s/boxes.txt", tmpdir);
    f = fopen(p, "w");
    fputs("# embryo boxes\n60 310 80 260\n80 30 250 440\n", f);
    fclose(f);
    ck_assert_int_ne(prepare_read_boxes(p, &o), 0);
    ck_assert_ptr_nonnull(strstr(err_message(), "boxes.txt:3"));
    // a data set file that is not one
    ck_assert_ptr_null(banis_dataset_load(p));
    ck_assert_ptr_nonnull(strstr(err_message(), "boxes.txt"));
}
END_TEST

START_TEST(test_split_and_sampler) {
    banis_split s = banis_split_make(200, 0.1, 3), s2 = banis_split_make(200, 0.1, 3);
    ck_assert_int_eq(s.n_test, 20);
    ck_assert_int_eq(s.n_train, 180);
    ck_assert_int_eq(memcmp(s.test, s2.test, sizeof(int) * 20), 0);
    int seen[200] = {0};
    for (int i = 0; i < 20; i++) seen[s.test[i]]++;
    for (int i = 0; i < 180; i++) seen[s.train[i]]++;
    for (int i = 0; i < 200; i++) ck_assert_int_eq(seen[i], 1); // a partition
    banis_sampler sm;
    banis_sampler_init(&sm, s.train, s.n_train, 9);
    int batch[180], count[200] = {0};
    banis_sampler_next(&sm, 180, batch); // one epoch: each training index exactly once
    for (int i = 0; i < 180; i++) count[batch[i]]++;
    for (int i = 0; i < 180; i++) ck_assert_int_eq(count[s.train[i]], 1);
    banis_sampler_free(&sm);
    banis_split_free(&s);
    banis_split_free(&s2);
}
END_TEST

// ---- tiling and the grouped split ---------------------------------------------------------
// A field of w x h: membrane walls every 16 px over a cytoplasm-bright background (A) and a
// disc of radius r_nuc in each cell (B), over
// the columns x < tissue_w; blank beyond.
static void tissue_field(image **a, image **b, int w, int h, int tissue_w, double r_nuc) {
    *a = image_new(w, h, 1);
    *b = image_new(w, h, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            bool in = x < tissue_w;
            int cx = x % 16, cy = y % 16;
            *image_at(*a, x, y) = in && (cx == 0 || cy == 0) ? 1000 : in ? 500 : 0;
            *image_at(*b, x, y) = in && hypot(cx - 8, cy - 8) < r_nuc ? 2000 : 0;
        }
}

START_TEST(test_nucleus_diameter) {
    for (int k = 0; k < 2; k++) {
        double r = k ? 5 : 3;
        image *a, *b;
        tissue_field(&a, &b, 128, 128, 128, r);
        // pixels nearer than r to the centre, by hand: 25 (r 3), 69 (r 5); diameter 2 sqrt(A/pi)
        int area = 0;
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) area += hypot(x - 8, y - 8) < r;
        ck_assert_int_eq(area, k ? 69 : 25);
        double want = 2 * sqrt(area / M_PI), got = prepare_nucleus_diameter(b);
        ck_assert_msg(fabs(got - want) < 1.0, "radius %g: diameter %g, want %g", r, got, want);
        image_free(a);
        image_free(b);
    }
    image *blank = image_new(64, 64, 1); // zeros: no nuclei
    ck_assert_double_eq(prepare_nucleus_diameter(blank), 0);
    image_free(blank);
}
END_TEST

START_TEST(test_tiles_of_a_field) {
    image *a, *b;
    tissue_field(&a, &b, 256, 256, 128, 3); // tissue on the left half, blank on the right
    prepare_options o = prepare_defaults();
    o.tiles = true;
    o.tile_scale = 1;
    banis_dataset *d = calloc(1, sizeof *d);
    tile_report rep;
    image *map = NULL;
    ck_assert_int_eq(prepare_tiles(a, b, &o, d, 3, 7, &map, &rep), 0);
    ck_assert_int_eq(rep.kept, 8); // the 4 x 2 tiles over the tissue
    ck_assert_int_eq(rep.skipped, 8);
    ck_assert_int_eq(d->n, 8);
    ck_assert_ptr_nonnull(map);
    ck_assert_int_eq(map->w, 256);
    ck_assert_float_eq(*image_at(map, 200, 0), 1); // a skipped tile's outline: red
    ck_assert_float_lt(image_at(map, 200, 0)[1], 0.5);
    ck_assert_float_eq(image_at(map, 0, 100)[1], 1); // a kept one: white
    for (int i = 0; i < d->n; i++) {
        const int32_t * or = d->origin + i * BANIS_ORIGIN;
        ck_assert_int_eq(or [ORIGIN_GROUP], 3);
        ck_assert_int_eq(or [ORIGIN_SLICE], 7);
        ck_assert_int_lt(or [ORIGIN_X], 128);
        ck_assert_int_eq(or [ORIGIN_X] % 64, 0);
        // at scale 1 a tile is the raw pixels, (v - m/2) / (m/2) with the field's maxima
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) {
                float va = *image_at(a, or [ORIGIN_X] + x, or [ORIGIN_Y] + y),
                      vb = *image_at(b, or [ORIGIN_X] + x, or [ORIGIN_Y] + y);
                ck_assert_float_eq_tol(d->a[i * BANIS_PIXELS + y * 64 + x], (va - 500) / 500, 1e-6);
                ck_assert_float_eq_tol(d->b[i * BANIS_PIXELS + y * 64 + x], (vb - 1000) / 1000,
                                       1e-6);
            }
    }
    image_free(map);
    banis_dataset_free(d);
    // stride 32: 7 x 7 positions, those reaching into the tissue (x0 <= 96: 4 columns) kept
    d = calloc(1, sizeof *d);
    o.tile_stride = 32;
    ck_assert_int_eq(prepare_tiles(a, b, &o, d, 0, 0, NULL, &rep), 0);
    ck_assert_int_eq(rep.kept + rep.skipped, 49);
    ck_assert_int_eq(rep.kept, 7 * 4);
    banis_dataset_free(d);
    // scale 2: a 128 x 128 field, 2 x 2 tiles; the automatic scale: nuclei 6 px across -> 1
    d = calloc(1, sizeof *d);
    o.tile_stride = 64;
    o.tile_scale = 2;
    o.tile_min_foreground = 0;
    ck_assert_int_eq(prepare_tiles(a, b, &o, d, 0, 0, NULL, &rep), 0);
    ck_assert_int_eq(rep.scale, 2);
    ck_assert_int_eq(rep.kept, 4);
    o.tile_scale = 0;
    ck_assert_int_eq(prepare_tiles(a, b, &o, d, 0, 0, NULL, &rep), 0);
    ck_assert_int_eq(rep.scale, 1);
    ck_assert_double_gt(rep.nucleus_px, 5);
    // too small a field for one tile at the scale asked: refused, naming the flag
    o.tile_scale = 5;
    ck_assert_int_eq(prepare_tiles(a, b, &o, d, 0, 0, NULL, &rep), -1);
    ck_assert_ptr_nonnull(strstr(err_message(), "--tile-scale"));
    banis_dataset_free(d);
    image_free(a);
    image_free(b);
}
END_TEST

// A data set of n pairs whose origins come from f(i, origin); the pixels are the pair's index.
static banis_dataset *with_origins(int n, int groups, void (*f)(int, int32_t *)) {
    banis_dataset *d = calloc(1, sizeof *d);
    static float px[BANIS_PIXELS];
    for (int i = 0; i < n; i++) {
        int32_t o[BANIS_ORIGIN];
        f(i, o);
        for (int k = 0; k < BANIS_PIXELS; k++) px[k] = (float)i;
        ck_assert_int_eq(banis_dataset_append(d, px, px, o, 1), 0);
    }
    d->n_groups = groups;
    d->group_names = calloc((size_t)groups, sizeof *d->group_names);
    for (int g = 0; g < groups; g++) {
        char name[32];
        snprintf(name, sizeof name, "stack%d.tif", g);
        d->group_names[g] = strdup(name);
    }
    snprintf(d->source, sizeof d->source, "hand-made origins");
    return d;
}
static void ten_groups(int i, int32_t *o) { // 10 groups of 5 slices
    o[ORIGIN_GROUP] = i / 5;
    o[ORIGIN_SLICE] = i % 5;
    o[ORIGIN_X] = o[ORIGIN_Y] = -1;
}
static void one_stack(int i, int32_t *o) { // 20 slices of 2 tiles
    o[ORIGIN_GROUP] = 0;
    o[ORIGIN_SLICE] = i / 2;
    o[ORIGIN_X] = 64 * (i % 2);
    o[ORIGIN_Y] = 0;
}
static void one_field(int i, int32_t *o) { // one field, tiles every 32 px: 15 x 15
    o[ORIGIN_GROUP] = 0;
    o[ORIGIN_SLICE] = 0;
    o[ORIGIN_X] = 32 * (i % 15);
    o[ORIGIN_Y] = 32 * (i / 15);
}
static void two_slices(int i, int32_t *o) { // two groups of one untiled slice each
    o[ORIGIN_GROUP] = i % 2;
    o[ORIGIN_SLICE] = 0;
    o[ORIGIN_X] = o[ORIGIN_Y] = -1;
}

START_TEST(test_grouped_split) {
    banis_split s;
    // whole groups: 5 of 50 pairs, none of a group on both sides
    banis_dataset *d = with_origins(50, 10, ten_groups);
    ck_assert_int_eq(banis_split_data(d, 0.1, 3, &s), 0);
    ck_assert_int_eq(s.n_test, 5);
    ck_assert_int_eq(s.n_train, 45);
    for (int i = 0; i < s.n_test; i++)
        for (int j = 0; j < s.n_train; j++) ck_assert_int_ne(s.test[i] / 5, s.train[j] / 5);
    ck_assert_ptr_nonnull(strstr(s.how, "by group: 1 of 10"));
    banis_split s2; // the seed picks the groups
    int differs = 0;
    for (uint64_t seed = 4; seed < 10 && !differs; seed++) {
        ck_assert_int_eq(banis_split_data(d, 0.1, seed, &s2), 0);
        differs = s2.test[0] / 5 != s.test[0] / 5;
        banis_split_free(&s2);
    }
    ck_assert(differs);
    banis_split_free(&s);
    banis_dataset_free(d);
    // one stack: the last 2 of 20 slices test, slice 17 left out, the rest train
    d = with_origins(40, 1, one_stack);
    ck_assert_int_eq(banis_split_data(d, 0.1, 3, &s), 0);
    ck_assert_int_eq(s.n_test, 4);
    ck_assert_int_eq(s.n_train, 34);
    for (int i = 0; i < s.n_test; i++) ck_assert_int_ge(s.test[i] / 2, 18);
    for (int i = 0; i < s.n_train; i++) ck_assert_int_le(s.train[i] / 2, 16);
    ck_assert_ptr_nonnull(strstr(s.how, "by slices"));
    banis_split_free(&s);
    banis_dataset_free(d);
    // one field: the tiles of its last rows test; no training tile overlaps a test tile
    d = with_origins(225, 1, one_field);
    ck_assert_int_eq(banis_split_data(d, 0.1, 3, &s), 0);
    ck_assert_int_ge(s.n_test, 22);
    ck_assert_int_gt(s.n_train, 150);
    ck_assert_int_lt(s.n_train + s.n_test, 225); // the overlapping row left out
    for (int i = 0; i < s.n_test; i++)
        for (int j = 0; j < s.n_train; j++) {
            const int32_t *t = d->origin + s.test[i] * BANIS_ORIGIN,
                          *r = d->origin + s.train[j] * BANIS_ORIGIN;
            bool overlap =
                abs(t[ORIGIN_X] - r[ORIGIN_X]) < 64 && abs(t[ORIGIN_Y] - r[ORIGIN_Y]) < 64;
            ck_assert_msg(!overlap, "test tile %d overlaps training tile %d", s.test[i],
                          s.train[j]);
        }
    ck_assert_ptr_nonnull(strstr(s.how, "by rows"));
    banis_split_free(&s);
    banis_dataset_free(d);
    // two single slices: no honest split, said
    d = with_origins(2, 2, two_slices);
    ck_assert_int_eq(banis_split_data(d, 0.1, 3, &s), -1);
    ck_assert_ptr_nonnull(strstr(err_message(), "near copies"));
    banis_dataset_free(d);
    // synthetic pairs (no origins): the plain random split
    synth_config c = synth_defaults();
    d = banis_synthetic(&c, 40, 1);
    ck_assert_int_eq(banis_split_data(d, 0.1, 3, &s), 0);
    s2 = banis_split_make(40, 0.1, 3);
    ck_assert_int_eq(s.n_test, s2.n_test);
    ck_assert_int_eq(memcmp(s.test, s2.test, sizeof(int) * (size_t)s.n_test), 0);
    ck_assert_ptr_nonnull(strstr(s.how, "random"));
    banis_split_free(&s);
    banis_split_free(&s2);
    banis_dataset_free(d);
}
END_TEST

// The synthetic tissue as a 16-bit big-endian ImageJ hyperstack, prepared with --tiles: the
// file reads back as written, nuclei come out several pixels across, the tiles hold the raw
// field's pixels, the saved set keeps their origins, and the split cuts along the slices.
START_TEST(test_tiling_a_tissue_stack) {
    make_tmpdir();
    tissue_config tc = tissue_defaults();
    tc.size = 192;
    tc.slices = 6;
    tc.lumens = 1;
    image **pages = tissue_stack(&tc, 4);
    ck_assert_ptr_nonnull(pages);
    char path[512];
    snprintf(path, sizeof path, "%s/tissue.tif", tmpdir);
    const char *desc = "ImageJ=1.54f\nimages=18\nchannels=3\nslices=6\nframes=1\nhyperstack=true\n";
    ck_assert_int_eq(image_write_tiff16(path, pages, 18, desc, true), 0);
    FILE *f = fopen(path, "rb");
    char order[2];
    ck_assert_int_eq(fread(order, 1, 2, f), 2);
    fclose(f);
    ck_assert_int_eq(memcmp(order, "MM", 2), 0); // big-endian
    image **back;
    image_stack_info info;
    ck_assert_int_eq(image_read_stack(path, &back, &info), 18);
    ck_assert_int_eq(info.channels, 3);
    ck_assert_int_eq(info.slices, 6);
    for (int p = 0; p < 18; p++)
        for (int i = 0; i < 192 * 192; i++)
            ck_assert_float_eq(back[p]->data[i], roundf(pages[p]->data[i]));
    double nucleus = prepare_nucleus_diameter(back[1]);
    ck_assert_msg(nucleus > 3.5 && nucleus < 7.5, "nucleus %g px across", nucleus);
    prepare_options o = prepare_defaults();
    o.tiles = true;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_ptr_nonnull(strstr(d->source, "tiles at 1/1"));
    ck_assert_int_gt(d->n, 6 * 5);
    ck_assert_int_le(d->n, 6 * 9);
    ck_assert_int_eq(d->n_groups, 1);
    ck_assert_str_eq(d->group_names[0], "tissue.tif");
    ck_assert_ptr_nonnull(d->tile_map);
    for (int i = 0; i < d->n; i++) { // the raw pixels of slice z, scaled by that field's maxima
        const int32_t * or = d->origin + i * BANIS_ORIGIN;
        const image *ra = back[3 * or [ORIGIN_SLICE]], *rb = back[3 * or [ORIGIN_SLICE] + 1];
        float ma = image_max(ra), mb = image_max(rb);
        for (int k = 0; k < BANIS_PIXELS; k += 97) {
            float va = *image_at(ra, or [ORIGIN_X] + k % 64, or [ORIGIN_Y] + k / 64),
                  vb = *image_at(rb, or [ORIGIN_X] + k % 64, or [ORIGIN_Y] + k / 64);
            ck_assert_float_eq_tol(d->a[i * BANIS_PIXELS + k], (va - ma / 2) / (ma / 2), 1e-5);
            ck_assert_float_eq_tol(d->b[i * BANIS_PIXELS + k], (vb - mb / 2) / (mb / 2), 1e-5);
        }
    }
    snprintf(path, sizeof path, "%s/set.safetensors", tmpdir);
    ck_assert_int_eq(banis_dataset_save(d, path), 0);
    banis_dataset *l = banis_dataset_load(path);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(memcmp(l->origin, d->origin, sizeof(int32_t) * BANIS_ORIGIN * (size_t)d->n),
                     0);
    ck_assert_str_eq(l->group_names[0], "tissue.tif");
    banis_split s;
    ck_assert_int_eq(banis_split_data(l, 0.1, 1, &s), 0);
    for (int i = 0; i < s.n_test; i++) ck_assert_int_eq(l->origin[s.test[i] * BANIS_ORIGIN + 1], 5);
    for (int i = 0; i < s.n_train; i++)
        ck_assert_int_le(l->origin[s.train[i] * BANIS_ORIGIN + 1], 3);
    banis_split_free(&s);
    banis_dataset_free(l);
    banis_dataset_free(d);
    // without --tiles the field is shrunk to one 64x64 crop per slice (the embryo path)
    o.tiles = false;
    d = banis_prepare(tmpdir, &o);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d->n, 6);
    banis_dataset_free(d);
    o.tiles = true;
    o.n_boxes = 1;
    ck_assert_ptr_null(banis_prepare(tmpdir, &o));
    ck_assert_ptr_nonnull(strstr(err_message(), "--boxes"));
    image_free_pages(back, 18);
    image_free_pages(pages, 18);
}
END_TEST

// Single-slice files named alike but for a number are one series (their numbers its slices);
// other names are groups of their own.
START_TEST(test_series_groups) {
    make_tmpdir();
    char p[512];
    const char *names[] = {"emb_z01.png", "emb_z02.png", "emb_z10.png", "other.png"};
    for (int side = 0; side < 2; side++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, side ? "B" : "A");
        mkdir(p, 0755);
        for (int k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s/%s", side ? "B" : "A", names[k]);
            write_raw(p, sizeof p, name, side, 20 + k);
        }
    }
    prepare_options o = prepare_defaults();
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 4);
    ck_assert_int_eq(d->n_groups, 2);
    ck_assert_str_eq(d->group_names[0], "emb_z#.png");
    ck_assert_str_eq(d->group_names[1], "other.png");
    const int group[4] = {0, 0, 0, 1}, slice[4] = {1, 2, 10, 0};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(d->origin[i * BANIS_ORIGIN + ORIGIN_GROUP], group[i]);
        ck_assert_int_eq(d->origin[i * BANIS_ORIGIN + ORIGIN_SLICE], slice[i]);
        ck_assert_int_eq(d->origin[i * BANIS_ORIGIN + ORIGIN_X], -1);
    }
    banis_split s; // slice 10 of the series tests, slice 2 is left out
    ck_assert_int_eq(banis_split_data(d, 0.1, 1, &s), 0);
    ck_assert_int_eq(s.n_test, 1);
    ck_assert_int_eq(s.test[0], 2);
    ck_assert_int_eq(s.n_train, 2);
    ck_assert_int_eq(s.train[0], 0);
    ck_assert_int_eq(s.train[1], 3);
    banis_split_free(&s);
    banis_dataset_free(d);
}
END_TEST

// The channels asked for are the ones read: a page of 3 interleaved channels, each a disc in a
// place of its own (c at x = 12 + 12 c), prepared with --channels 2,0, gives A from channel 2
// and B from channel 0, equal to prepare_pair of those channels and unlike channel 1's or the
// two swapped.
START_TEST(test_channels_asked_are_read) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/three.tif", tmpdir);
    const int w = 48, h = 40;
    TIFF *t = TIFFOpen(p, "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 2, (uint16_t[]){0, 0});
    unsigned char row[48 * 3];
    image *ch[3];
    for (int c = 0; c < 3; c++) ch[c] = image_new(w, h, 1);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int v = hypot(x - (12 + 12 * c), y - 20) < 6 ? 200 : 10;
                row[3 * x + c] = (unsigned char)v;
                *image_at(ch[c], x, y) = (float)v;
            }
        TIFFWriteScanline(t, row, (uint32_t)y, 0);
    }
    TIFFClose(t);
    prepare_options o = prepare_defaults();
    o.layout = LAYOUT_TIFF;
    o.scale = 1;
    o.channel_a = 2;
    o.channel_b = 0;
    banis_dataset *d = banis_prepare(tmpdir, &o);
    ck_assert_msg(d != NULL, "%s", err_message());
    ck_assert_int_eq(d->n, 1);
    static float want_a[BANIS_PIXELS], want_b[BANIS_PIXELS], swap_a[BANIS_PIXELS],
        swap_b[BANIS_PIXELS], one_a[BANIS_PIXELS], one_b[BANIS_PIXELS];
    ck_assert_int_eq(prepare_pair(ch[2], ch[0], &o, want_a, want_b), 1);
    ck_assert_int_eq(prepare_pair(ch[0], ch[2], &o, swap_a, swap_b), 1);
    ck_assert_int_eq(prepare_pair(ch[1], ch[0], &o, one_a, one_b), 1);
    ck_assert_int_eq(memcmp(d->a, want_a, sizeof want_a), 0);
    ck_assert_int_eq(memcmp(d->b, want_b, sizeof want_b), 0);
    ck_assert_int_ne(memcmp(d->a, swap_a, sizeof swap_a), 0); // the channels differ
    ck_assert_int_ne(memcmp(d->a, one_a, sizeof one_a), 0);
    banis_dataset_free(d);
    for (int c = 0; c < 3; c++) image_free(ch[c]);
}
END_TEST

int main(void) {
    TCase *tc = check_case(
        "data", 120,
        CHECK_TESTS(test_synth_determinism, test_synth_geometry_invariants,
                    test_preprocess_steps_hand_worked, test_side_by_side_layout,
                    test_folders_layout_and_unmatched, test_tiff_stacks, test_stack_metadata,
                    test_layout_detection, test_tiff_float_and_signed, test_bad_input_refused,
                    test_16_bit_png_and_the_size_limit, test_split_and_sampler,
                    test_nucleus_diameter, test_tiles_of_a_field, test_grouped_split,
                    test_tiling_a_tissue_stack, test_series_groups, test_channels_asked_are_read));
    return check_main("data", tc);
}
