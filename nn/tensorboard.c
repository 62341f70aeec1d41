#include <stddef.h>
#include "tensorboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "../tensor/error.h"

struct tb_writer {
    FILE *f;
};

uint32_t tb_crc32c(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

static size_t put_varint(uint8_t *b, uint64_t v) {
    size_t n = 0;
    do {
        b[n++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

static int write_record(tb_writer *w, const uint8_t *data, size_t n) {
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t c1 = masked(tb_crc32c(len, 8)), c2 = masked(tb_crc32c(data, n));
    uint8_t b1[4], b2[4];
    for (int i = 0; i < 4; i++) {
        b1[i] = (uint8_t)(c1 >> (8 * i));
        b2[i] = (uint8_t)(c2 >> (8 * i));
    }
    if (fwrite(len, 1, 8, w->f) != 8 || fwrite(b1, 1, 4, w->f) != 4 ||
        fwrite(data, 1, n, w->f) != n || fwrite(b2, 1, 4, w->f) != 4) {
        err_set("TensorBoard events: write failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

// Event { double wall_time = 1; int64 step = 2; string file_version = 3 | Summary summary = 5 }
static size_t event_header(uint8_t *b, int64_t step) {
    size_t n = 0;
    double t = now();
    b[n++] = 0x09;
    memcpy(b + n, &t, 8);
    n += 8;
    b[n++] = 0x10;
    n += put_varint(b + n, (uint64_t)step);
    return n;
}

tb_writer *tb_open(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/events.out.tfevents.%ld.banis", dir, (long)now());
    tb_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->f = fopen(path, "ab");
    if (!w->f) {
        err_set("%s: cannot create: %s", path, strerror(errno));
        free(w);
        return NULL;
    }
    uint8_t b[64];
    size_t n = event_header(b, 0);
    const char *v = "brain.Event:2";
    b[n++] = 0x1A;
    b[n++] = (uint8_t)strlen(v);
    memcpy(b + n, v, strlen(v));
    n += strlen(v);
    if (write_record(w, b, n)) {
        tb_close(w);
        return NULL;
    }
    return w;
}

// Event { header; Summary summary = 5 { repeated Value value = 1 } } around one Value whose
// bytes are `head` then `tail` (an image's PNG is framed without being copied first).
static int write_value(tb_writer *w, int64_t step, const uint8_t *head, size_t hn,
                       const uint8_t *tail, size_t tn) {
    uint8_t *buf = malloc(hn + tn + 64);
    if (!buf) {
        err_set("TensorBoard events: out of memory");
        return -1;
    }
    size_t n = event_header(buf, step);
    uint8_t sum[16];
    size_t sn = 0;
    sum[sn++] = 0x0A;
    sn += put_varint(sum + sn, hn + tn);
    buf[n++] = 0x2A;
    n += put_varint(buf + n, sn + hn + tn);
    memcpy(buf + n, sum, sn), n += sn;
    memcpy(buf + n, head, hn), n += hn;
    if (tn) memcpy(buf + n, tail, tn), n += tn;
    int rc = write_record(w, buf, n);
    free(buf);
    return rc;
}

// Summary.Value's tag = 1.
static size_t put_tag(uint8_t *b, const char *tag) {
    size_t tl = strlen(tag) > 100 ? 100 : strlen(tag);
    b[0] = 0x0A;
    b[1] = (uint8_t)tl;
    memcpy(b + 2, tag, tl);
    return tl + 2;
}

int tb_scalar(tb_writer *w, const char *tag, float value, int64_t step) {
    uint8_t val[128]; // Value { tag = 1; float simple_value = 2 }
    size_t vn = put_tag(val, tag);
    val[vn++] = 0x15;
    memcpy(val + vn, &value, 4);
    vn += 4;
    return write_value(w, step, val, vn, NULL, 0);
}

int tb_image(tb_writer *w, const char *tag, const uint8_t *png, size_t png_bytes, int width,
             int height, int colorspace, int64_t step) {
    // Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4 }
    uint8_t img[48];
    size_t in = 0;
    img[in++] = 0x08;
    in += put_varint(img + in, (uint64_t)height);
    img[in++] = 0x10;
    in += put_varint(img + in, (uint64_t)width);
    img[in++] = 0x18;
    in += put_varint(img + in, (uint64_t)colorspace);
    img[in++] = 0x22;
    in += put_varint(img + in, png_bytes);
    uint8_t head[256]; // Value { tag = 1; Image image = 4 }, then the Image's fields up to its PNG
    size_t hn = put_tag(head, tag);
    head[hn++] = 0x22;
    hn += put_varint(head + hn, in + png_bytes);
    memcpy(head + hn, img, in), hn += in;
    return write_value(w, step, head, hn, png, png_bytes);
}

int tb_session_start(tb_writer *w, int64_t step) {
    uint8_t b[64];
    size_t n = event_header(b, step);
    // Event.session_log = 6 { SessionLog.status = 1: START }
    b[n++] = 0x32;
    b[n++] = 2;
    b[n++] = 0x08;
    b[n++] = 1;
    return write_record(w, b, n);
}

int tb_flush(tb_writer *w) { return fflush(w->f); }

void tb_close(tb_writer *w) {
    if (!w) return;
    fclose(w->f);
    free(w);
}
