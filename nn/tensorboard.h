// Scalar and image summaries in TensorBoard's event-file format (TFRecord framing of Event protocol
// buffers), so `tensorboard --logdir RUN` shows the training curves. No TensorFlow needed.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct tb_writer tb_writer;

tb_writer *tb_open(const char *dir); // creates DIR/events.out.tfevents.<time>.banis
int tb_scalar(tb_writer *w, const char *tag, float value, int64_t step);
// An image summary from an encoded PNG of width x height (colorspace: 1 grey, 3 RGB, 4 RGBA):
// TensorBoard's Images tab shows it beside the scalars.
int tb_image(tb_writer *w, const char *tag, const uint8_t *png, size_t png_bytes, int width,
             int height, int colorspace, int64_t step);
// SessionLog START at `step`: TensorBoard then discards the points a stopped run wrote after
// its last checkpoint (it purges the older events of steps >= step), as TensorFlow does on resume.
int tb_session_start(tb_writer *w, int64_t step);
int tb_flush(tb_writer *w);
void tb_close(tb_writer *w);
uint32_t tb_crc32c(const uint8_t *p, size_t n); // Castagnoli, as TFRecord uses
