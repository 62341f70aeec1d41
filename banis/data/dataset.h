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
    // Where each pair came from (real images only, else NULL): n x BANIS_ORIGIN ints, see below.
    // The test split keeps a group whole, or cuts it along its slices or rows (banis_split_data).
    int32_t *origin;
    char **group_names; // n_groups of them: the file, or the series' name with '#' for its number
    int n_groups;
    int cap; // pairs allocated (banis_dataset_append)
    char source[256];
    image *tile_map; // tiling only: the first fields with their tiles outlined (not stored)
} banis_dataset;

// origin[i * BANIS_ORIGIN + ...]: the group (one stack file, or a series of single-slice files
// named alike but for a trailing number: "emb1_z03.png" is slice 3 of group "emb1_z"), the
// slice within it (a stack's slice index, a series' number), and the tile's corner (x, y) in
// the prepared field, -1 when not tiled.
enum { ORIGIN_GROUP, ORIGIN_SLICE, ORIGIN_X, ORIGIN_Y, BANIS_ORIGIN };

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

// ---- synthetic tissue: a field filled with cells (for tiling; no ground truth kept) ---------
typedef struct {
    int size, slices;  // a size x size field, slices z-planes (default 512, 16)
    double cell_px;    // cell spacing in pixels (16)
    double nucleus_px; // nucleus diameter at its widest (5)
    int lumens;        // round cell-free holes (3)
} tissue_config;

tissue_config tissue_defaults(void);
// 3 x slices grey pages of 16-bit camera counts, in ImageJ's CZT order (membrane, nuclei,
// cytoplasm per slice); NULL (said) when out of memory. Deterministic from the seed.
image **tissue_stack(const tissue_config *c, uint64_t seed);

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
    // Tiling (for tissue that fills the field, where the embryo crop would shrink it to a
    // thumbnail): 64x64 tiles every tile_stride pixels of the field resized by 1/tile_scale
    // (0: chosen so that the median nucleus is about TILE_NUCLEUS_PX across), keeping tiles whose
    // foreground (Otsu's threshold on the field) covers at least tile_min_foreground.
    bool tiles;
    int tile_scale, tile_stride;
    double tile_min_foreground;
} prepare_options;

#define TILE_NUCLEUS_PX 6.0 // the synthetic embryos' nuclei are 4-9 px across at 64x64

// What tiling one field found (prepare_tiles).
typedef struct {
    int scale;         // the factor used
    double nucleus_px; // median nucleus diameter in the raw field (0: none found)
    int kept, skipped; // tiles
} tile_report;

prepare_options prepare_defaults(void);
// Parses a boxes file: one "row0 row1 col0 col1" per line, '#' starts a comment.
int prepare_read_boxes(const char *path, prepare_options *o);
// The paper's pipeline for one raw pair (A and B grey images of one slice): appends a 64x64
// crop pair per box (or the auto crop) to out_a/out_b (room for n_boxes or 1). Returns count.
int prepare_pair(const image *raw_a, const image *raw_b, const prepare_options *o, float *out_a,
                 float *out_b);
// Tiling of one raw field: appends its kept tiles to d (with their origin: group, slice and
// corner), drawing them onto `map` when non-NULL (the field at its prepared scale in colour,
// kept tiles outlined white, skipped ones red). 0, or -1 (said).
int prepare_tiles(const image *raw_a, const image *raw_b, const prepare_options *o,
                  banis_dataset *d, int group, int slice, image **map, tile_report *rep);
// The median diameter of nuclei in a raw nuclei image (Otsu's threshold, 4-connected regions of
// at least 3 pixels), in pixels; 0 when it finds none.
double prepare_nucleus_diameter(const image *nuclei);
// Appends k pairs to d (origin: k x BANIS_ORIGIN, or NULL when d has none). 0, or -1 (said).
int banis_dataset_append(banis_dataset *d, const float *a, const float *b, const int32_t *origin,
                         int k);
// Reads a folder in the given layout and preprocesses it all.
banis_dataset *banis_prepare(const char *dir, const prepare_options *o);

// Otsu's threshold of an image's values in [0, its maximum].
float prepare_otsu(const image *im);
// Pad a crop to 64x64, centred, with the mean of its first 3 rows (cropping if larger).
void prepare_pad(const image *crop, float *out64);

// ---- storage: a prepared set is a safetensors file with tensors "A" and "B" (N,1,64,64)
int banis_dataset_save(const banis_dataset *d, const char *path);
banis_dataset *banis_dataset_load(const char *path);

// ---- split and batches ----------------------------------------------------------------------
typedef struct {
    int *train, *test;
    int n_train, n_test; // their sum is below the set's size when pairs were left out between
    char how[200];       // how it was made, for the reports
} banis_split;

// 90/10 (test_fraction) random split, deterministic from the seed: for independent pairs.
banis_split banis_split_make(int n, double test_fraction, uint64_t seed);
// The split of a data set: random when its pairs are independent (synthetic); for real images
// never across near copies: whole groups to the test split when there are at least
// SPLIT_MIN_GROUPS; else the last slices of each group (the slice before them left out); else,
// for one field's tiles, the tiles of its last rows (those overlapping them left out).
// 0, or -1 (said: no split gives both sides a pair).
#define SPLIT_MIN_GROUPS 5
int banis_split_data(const banis_dataset *d, double test_fraction, uint64_t seed, banis_split *s);
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
