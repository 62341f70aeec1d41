// BANIS's data: paired 64x64 images of the same embryo slice in two channels, A = membrane
// and B = nuclei, scaled to [-1, 1]. From the built-in synthetic embryo generator (the
// default; it also gives the ground-truth geometry) or from users' microscopy images through
// the paper's preprocessing.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "../../tensor/tensor.h"
#include "../../tensor/rng.h"
#include "image.h"

#define BANIS_SIDE   64
#define BANIS_PIXELS (BANIS_SIDE * BANIS_SIDE)

typedef struct {
    int n;        // pairs
    float *a, *b; // n x 64 x 64 each, in [-1, 1]
    // Ground truth (synthetic data only, else NULL): the cell label of each pixel (0 outside
    // the embryo), and the noiseless membrane and nuclei masks.
    int16_t *labels;
    uint8_t *membrane, *nuclei;
    char source[256];
} banis_dataset;

void banis_dataset_free(banis_dataset *d);

// ---- the synthetic embryos ------------------------------------------------------------------
typedef struct {
    int min_cells, max_cells; // 2..50 by default: embryos from the 2-cell stage on
    int supersample;          // rendered at 64*supersample, reduced to 64 (default 3)
    double psf_sigma;         // point-spread blur in 64-scale pixels (default 0.7)
    double photons;           // shot noise: signal 1 collects this many photons (default 300)
    double read_noise;        // Gaussian, in [0,1] units (default 0.02)
} synth_config;

synth_config synth_defaults(void);
// Pair `index` of the stream `seed`: deterministic. Any output pointer may be NULL.
void synth_pair(const synth_config *c, uint64_t seed, int index, float *a, float *b,
                int16_t *labels, uint8_t *membrane, uint8_t *nuclei);

banis_dataset *banis_synthetic(const synth_config *c, int n, uint64_t seed);

// ---- real images ----------------------------------------------------------------------------
typedef enum {
    LAYOUT_AUTO,         // from the files: DIR/A + DIR/B folders; stacks (several pages, several
                         // channels, or ImageJ/OME metadata); single grey pages side by side
    LAYOUT_SIDE_BY_SIDE, // each file holds one slice: membrane left half, nuclei right half
    LAYOUT_FOLDERS,      // DIR/A/name and DIR/B/name, matched by file name
    LAYOUT_TIFF,         // multi-page or multi-channel TIFF stacks
} data_layout;

#define PREP_MAX_BOXES 16
typedef struct {
    data_layout layout;
    int n_boxes;                  // 0: crop around the foreground automatically
    int boxes[PREP_MAX_BOXES][4]; // [row0, row1, col0, col1] at the raw image's scale
    int scale;                    // resize factor (default 4: 512 -> 128)
    // TIFF: which channels hold A and B. Multi-channel pages: sample index; single-channel
    // pages: the channel count and page order from ImageJ's or OME's metadata, else
    // tiff_channels N given (pages alternate channels: page = slice * N + channel); 0 = from
    // the file (a stack that does not say is refused, naming the flag).
    int channel_a, channel_b, tiff_channels;
    bool middle_half; // keep the middle half of each stack's slices (the paper: 15 of 30)
    // The folders layout: an image in A/ or B/ without its partner of the same name in the
    // other is refused, naming it, unless skipped (then listed in the data set's source).
    bool skip_unpaired;
} prepare_options;

prepare_options prepare_defaults(void);
// Parses a boxes file: one "row0 row1 col0 col1" per line, '#' starts a comment.
int prepare_read_boxes(const char *path, prepare_options *o);
// The paper's pipeline for one raw pair (A and B grey images of one slice): appends a 64x64
// crop pair per box (or the auto crop) to out_a/out_b (room for n_boxes or 1). Returns count.
int prepare_pair(const image *raw_a, const image *raw_b, const prepare_options *o, float *out_a,
                 float *out_b);
// Reads a folder in the given layout and preprocesses it all.
banis_dataset *banis_prepare(const char *dir, const prepare_options *o);

// Pad a crop to 64x64, centred, with the mean of its first 3 rows (cropping if larger).
void prepare_pad(const image *crop, float *out64);

// ---- storage: a prepared set is a safetensors file with tensors "A" and "B" (N,1,64,64)
int banis_dataset_save(const banis_dataset *d, const char *path);
banis_dataset *banis_dataset_load(const char *path);

// ---- split and batches ----------------------------------------------------------------------
typedef struct {
    int *train, *test;
    int n_train, n_test;
} banis_split;

// 90/10 (test_fraction) split, deterministic from the seed.
banis_split banis_split_make(int n, double test_fraction, uint64_t seed);
void banis_split_free(banis_split *s);

typedef struct {
    const int *pool;
    int n_pool;
    int *order;
    int at;
    rng r;
} banis_sampler;

// Shuffled batches without replacement, reshuffled each epoch.
void banis_sampler_init(banis_sampler *s, const int *pool, int n, uint64_t seed);
void banis_sampler_free(banis_sampler *s);
void banis_sampler_next(banis_sampler *s, int count, int *out);
// A batch of pairs as tensors (count, 1, 64, 64).
int banis_batch(const banis_dataset *d, const int *idx, int count, tensor_dtype dt,
                tensor_device_type dev, tensor **a, tensor **b);

// Writes a PNG pair sheet: rows of [A | B | overlay] (membrane magenta, nuclei green).
int banis_write_pairs_png(const char *path, const float *a, const float *b, int n, int per_row);
