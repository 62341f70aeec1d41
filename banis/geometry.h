// The geometry of membrane/nuclei pairs without ground truth: a membrane image segmented into
// walls and cells, a nucleus image into nuclei, and what follows from the two together (nuclei
// per cell, the share of nucleus signal inside cells and off the walls). On sets of pairs: a
// summary, a distance between the feature distributions of two sets (a Frechet distance on
// these geometry features: not FID, there are no Inception weights here), and how close each
// image of a set lies to its nearest training image (memorisation).
//
// Images are 64x64 in [-1, 1] (the data set's scale). The segmentation (geometry.c says why):
//   walls   the membrane image smoothed (Gaussian, sigma GEOM_SMOOTH), above Otsu's threshold of
//           its own values; none when the two classes' means differ by less than
//           GEOM_MIN_CONTRAST (an image of noise or of nothing has no walls)
//   cells   4-connected regions of the non-wall pixels that do not touch the image's border (the
//           embryo's outline closes them) and have at least GEOM_MIN_CELL_PX pixels; smaller
//           holes are counted as wall
//   nuclei  the nucleus image smoothed alike, above its Otsu threshold with the same contrast
//           rule, 4-connected regions of at least GEOM_MIN_NUCLEUS_PX pixels
//   signal  the smoothed nucleus image above its background (the mean below its threshold), on
//           the pixels above the threshold
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"

#define GEOM_SMOOTH         0.5
#define GEOM_MIN_CONTRAST   0.1 // in [0, 1] units: 5% of the image's range [-1, 1]
#define GEOM_MIN_CELL_PX    4
#define GEOM_MIN_NUCLEUS_PX 3

// One pair's segmentation.
typedef struct {
    int32_t cell[BANIS_PIXELS];    // 1..cells inside a cell, 0 on a wall or outside the embryo
    uint8_t wall[BANIS_PIXELS];    // 1 on a wall (the outline is one)
    int32_t nucleus[BANIS_PIXELS]; // 1..nuclei, 0 elsewhere
    int cells, nuclei;
} geometry_seg;

// The features of a pair, in this order (GEOM_FEATURES of them); a pair without cells has
// nuclei per cell 0, one without nucleus signal an inside share of 0.
enum {
    GF_CELLS,           // cells in the embryo
    GF_CELL_AREA,       // their mean area, pixels
    GF_CELL_AREA_CV,    // the areas' standard deviation over their mean
    GF_WALL_THICKNESS,  // wall pixels x 2 / wall edge length (a strip of width t gives t)
    GF_NUCLEI,          // nuclei
    GF_NUCLEUS_AREA,    // their mean area, pixels
    GF_NUCLEI_PER_CELL, // nuclei with most of their pixels in one cell, over the cells
    GF_INSIDE,          // share of the nucleus signal on cell pixels (inside a cell, off walls)
    GEOM_FEATURES
};
extern const char *const geometry_feature_names[GEOM_FEATURES];

typedef struct {
    double f[GEOM_FEATURES];
    double signal, signal_inside, signal_on_walls; // nucleus signal, summed over pixels
    int nuclei_in_cells;                           // nuclei assigned to a cell
} geometry_pair;

// Segments and measures one pair (a: membrane, b: nuclei); seg may be NULL. -1: out of memory.
int geometry_measure(const float *a, const float *b, geometry_pair *out, geometry_seg *seg);

// A set of pairs, summarised.
typedef struct {
    int pairs;
    double cells, cells_sd;  // cells per embryo, mean and standard deviation
    int no_cells;            // pairs in which no cell was found
    double nuclei;           // nuclei per image
    double nuclei_per_cell;  // nuclei in cells over cells, all pairs pooled
    double inside, on_walls; // % of the nucleus signal inside cells, on walls (pooled)
    double cell_area, wall_thickness, nucleus_area; // means over the pairs that have them
} geometry_summary;

// Measures n pairs (a, b: n x 64 x 64): each pair's features into f (n x GEOM_FEATURES, may be
// NULL) and the summary into s (may be NULL). -1: out of memory.
int geometry_measure_set(const float *a, const float *b, int n, double *f, geometry_summary *s);

// The Frechet distance between Gaussians fitted to two sets of feature rows (n x GEOM_FEATURES),
// each feature divided first by the reference set's standard deviation (1 where it is 0):
//   |mu_x - mu_r|^2 + tr(S_x + S_r - 2 (S_r^1/2 S_x S_r^1/2)^1/2)
// 0 for two sets alike in mean and covariance; NaN when a set has fewer than 2 rows.
double geometry_distance(const double *ref, int n_ref, const double *x, int n_x);
// The same on any dimension d (the rows of ref and x have d values; no scaling): for the tests.
double frechet_distance(const double *ref, int n_ref, const double *x, int n_x, int d);

// Memorisation: the distance from an image pair to its nearest training pair, the mean absolute
// difference over both channels after 4x4 average pooling (16x16 per channel; in [-1, 1] units).
#define MEM_POOL 4
// A generator is flagged when its pairs' median distance is below this share of the real test
// pairs' (they are closer to the training images than new images of the same kind are).
#define MEM_FLAG_RATIO 0.5
typedef struct {
    int n, n_test, n_train;
    double median_gen, median_test; // median distance to the nearest training pair
    double ratio;                   // median_gen / median_test
    double closer_than_any_test;    // % of the generated pairs nearer than every test pair is
    bool flagged;                   // ratio < MEM_FLAG_RATIO
} memorisation;
// Each of n pairs (a, b) against the training pairs idx_train of d, and d's test pairs idx_test
// against the same; -1 when out of memory.
int memorisation_measure(const banis_dataset *d, const int *idx_train, int n_train,
                         const int *idx_test, int n_test, const float *a, const float *b, int n,
                         memorisation *out);
// The nearest-training distance of each of n pairs (a, b) against m training pairs (ta, tb):
// into dist (n values). -1 when out of memory.
int memorisation_distances(const float *ta, const float *tb, int m, const float *a, const float *b,
                           int n, double *dist);

// A picture of the segmentation: for each of n pairs, [overlay | segmentation] (overlay:
// membrane magenta, nuclei green; segmentation: walls grey, each cell a dark colour of its own,
// nucleus pixels green inside a cell and red on a wall or outside), per_row pairs to a row.
int geometry_write_png(const char *path, const float *a, const float *b, int n, int per_row);
