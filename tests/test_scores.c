// The scores of generated pairs (banis/geometry.h, model.h): the segmentation and geometry on
// hand-made pairs with worked answers and against the synthetic embryos' ground truth, the
// Frechet distance against closed forms, memorisation flagged for a "generator" that returns
// training pairs, and the generated pairs' scores in gmi.md.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../banis/model.h"
#include "../tensor/error.h"
#include "check_runner.h"

enum { P = BANIS_PIXELS, S = BANIS_SIDE };

// A membrane drawn by hand: a square outline (rows and columns 8-9 and 54-55) and one inner wall
// (columns 31-32), at +1 on a -1 ground: two cells of 21 x 44 pixels.
static bool on_wall(int x, int y) {
    bool in_box = x >= 8 && x <= 55 && y >= 8 && y <= 55;
    bool ring = in_box && (x <= 9 || x >= 54 || y <= 9 || y >= 54);
    return ring || (in_box && (x == 31 || x == 32));
}
static void draw_membrane(float *a) {
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) a[y * S + x] = on_wall(x, y) ? 1 : -1;
}
// Discs of radius 4 at the given centres (pixel centres at x + 0.5).
static bool in_discs(int x, int y, const double (*c)[2], int n) {
    for (int i = 0; i < n; i++)
        if (hypot(x + 0.5 - c[i][0], y + 0.5 - c[i][1]) < 4) return true;
    return false;
}
static void draw_nuclei(float *b, const double (*c)[2], int n) {
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) b[y * S + x] = in_discs(x, y, c, n) ? 1 : -1;
}
static const double centres_in[2][2] = {{20.5, 32}, {43.5, 32}}; // one in each cell's middle
static const double walls[2][2] = {{32, 20}, {32, 44}};          // astride the inner wall

// Algorithm 1's Dice for the hand-drawn pair, counted from the drawings: both images are +-1,
// so the masks are exactly the walls and the discs.
static double dice_by_hand(const double (*c)[2], int n) {
    int w = 0, d = 0, both = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            w += on_wall(x, y);
            d += in_discs(x, y, c, n);
            both += on_wall(x, y) && in_discs(x, y, c, n);
        }
    return 2.0 * both / (w + d);
}

START_TEST(test_geometry_of_hand_made_pairs) {
    static float a[P], b[P], empty[P];
    static geometry_seg seg;
    geometry_pair g;
    draw_membrane(a);
    for (int p = 0; p < P; p++) empty[p] = -1;

    // nuclei inside the cells: two cells of 21 x 44, walls 2 wide (456 pixels, 452 edges between
    // wall and not: the outline's 192 outside and 172 inside, the inner wall's 88)
    draw_nuclei(b, centres_in, 2);
    ck_assert_int_eq(geometry_measure(a, b, &g, &seg), 0);
    ck_assert_int_eq(seg.cells, 2);
    ck_assert_double_eq(g.f[GF_CELLS], 2);
    ck_assert_double_eq(g.f[GF_CELL_AREA], 21 * 44);
    ck_assert_double_eq(g.f[GF_CELL_AREA_CV], 0);
    ck_assert_double_eq_tol(g.f[GF_WALL_THICKNESS], 2.0 * 456 / 452, 1e-12);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) ck_assert_int_eq(seg.wall[y * S + x], on_wall(x, y));
    ck_assert_int_eq(seg.cell[20 * S + 20], 1); // numbered in row-major order of first pixels
    ck_assert_int_eq(seg.cell[20 * S + 40], 2);
    ck_assert_int_eq(seg.cell[2 * S + 2], 0); // outside the embryo
    ck_assert_double_eq(g.f[GF_NUCLEI], 2);
    for (int y = 0; y < S; y++) // each disc is one nucleus (its rim smoothed), nothing else is
        for (int x = 0; x < S; x++) {
            int got = seg.nucleus[y * S + x];
            for (int k = 0; k < 2; k++) {
                double r = hypot(x + 0.5 - centres_in[k][0], y + 0.5 - centres_in[k][1]);
                if (r < 4) ck_assert_msg(got == k + 1, "(%d, %d) in disc %d: %d", x, y, k + 1, got);
            }
            ck_assert_msg(got >= 0 && got <= 2, "(%d, %d): nucleus %d of 2", x, y, got);
            if (got) {
                double r =
                    hypot(x + 0.5 - centres_in[got - 1][0], y + 0.5 - centres_in[got - 1][1]);
                ck_assert_msg(r < 5, "(%d, %d): nucleus %d, %.1f px from its centre", x, y, got, r);
            }
        }
    ck_assert_double_eq(g.f[GF_NUCLEI_PER_CELL], 1);
    ck_assert_double_eq(g.f[GF_INSIDE], 1);
    ck_assert_double_eq(g.signal_on_walls, 0);
    double gmi[3], dsc;
    int empties;
    banis_gmi_of_pairs(a, b, 1, gmi, &dsc, &empties);
    ck_assert_double_eq(dsc, 0); // the discs miss the walls: matched at every TS
    ck_assert_double_eq(gmi[0], 100);

    // nuclei on the inner wall: each disc split evenly between two cells and the wall, so no
    // cell holds most of one; a share of the signal lies on the wall
    draw_nuclei(b, walls, 2);
    ck_assert_int_eq(geometry_measure(a, b, &g, &seg), 0);
    ck_assert_double_eq(g.f[GF_NUCLEI], 2);
    ck_assert_double_eq(g.f[GF_NUCLEI_PER_CELL], 0);
    ck_assert_double_gt(g.signal_on_walls / g.signal, 0.2);
    ck_assert_double_lt(g.f[GF_INSIDE], 0.8);
    ck_assert_double_eq_tol(g.f[GF_INSIDE] + g.signal_on_walls / g.signal, 1, 1e-12);
    banis_gmi_of_pairs(a, b, 1, gmi, &dsc, &empties);
    // GMI's Dice is diluted by the walls' area: these nuclei are matched at TS 0.2 and 0.3
    // although they sit on a wall; the geometry says what GMI does not
    ck_assert_double_eq_tol(dsc, dice_by_hand(walls, 2), 1e-12);
    ck_assert_double_gt(dsc, 0.1);
    ck_assert_double_lt(dsc, 0.2);
    ck_assert(gmi[0] == 0 && gmi[1] == 100 && gmi[2] == 100);

    // an empty membrane: Algorithm 1's mask of it is empty, Dice 0, matched (GMI rewards
    // drawing nothing); the segmentation finds no wall and no cell, and no nucleus inside one
    draw_nuclei(b, centres_in, 2);
    ck_assert_int_eq(geometry_measure(empty, b, &g, &seg), 0);
    ck_assert_double_eq(g.f[GF_CELLS], 0);
    ck_assert_double_eq(g.f[GF_WALL_THICKNESS], 0);
    ck_assert_double_eq(g.f[GF_NUCLEI], 2);
    ck_assert_double_eq(g.f[GF_NUCLEI_PER_CELL], 0);
    ck_assert_double_eq(g.f[GF_INSIDE], 0);
    banis_gmi_of_pairs(empty, b, 1, gmi, &dsc, &empties);
    ck_assert_double_eq(dsc, 0);
    ck_assert_double_eq(gmi[2], 100);
    ck_assert_int_eq(empties, 1);

    // noise alone is no wall: too little contrast between Otsu's two classes
    rng r;
    rng_init(&r, 3);
    double noise[P];
    rng_fill_normal(&r, noise, P, -0.9, 0.02);
    for (int p = 0; p < P; p++) empty[p] = (float)noise[p];
    ck_assert_int_eq(geometry_measure(empty, empty, &g, &seg), 0);
    ck_assert_int_eq(seg.cells, 0);
    ck_assert_int_eq(seg.nuclei, 0);

    // the set's summary pools the three pairs above
    static float sa[3 * P], sb[3 * P];
    draw_membrane(sa);
    draw_membrane(sa + P);
    for (int p = 0; p < P; p++) sa[2 * P + p] = -1;
    draw_nuclei(sb, centres_in, 2);
    draw_nuclei(sb + P, walls, 2);
    draw_nuclei(sb + 2 * P, centres_in, 2);
    geometry_summary s;
    double f[3 * GEOM_FEATURES];
    ck_assert_int_eq(geometry_measure_set(sa, sb, 3, f, &s), 0);
    ck_assert_double_eq_tol(s.cells, 4.0 / 3, 1e-12);
    ck_assert_double_eq_tol(s.cells_sd, sqrt(4.0 / 3), 1e-12); // 2, 2, 0
    ck_assert_int_eq(s.no_cells, 1);
    ck_assert_double_eq(s.nuclei, 2);
    ck_assert_double_eq(s.nuclei_per_cell, 2.0 / 4); // 2 nuclei in cells of 4 cells
    ck_assert_double_eq(s.cell_area, 21 * 44);
    ck_assert_double_eq(f[GEOM_FEATURES + GF_NUCLEI_PER_CELL], 0);
    ck_assert_double_lt(s.inside, 100);
    ck_assert_double_gt(s.inside, 50);
}
END_TEST

// On the synthetic embryos the segmentation is checked against their ground truth: the cells
// it counts against the true cells (dense embryos lose a few, their walls merge), the nuclei
// against the true ones, and the nucleus signal it places inside cells (all of it, truly).
START_TEST(test_segmentation_against_synthetic_ground_truth) {
    enum { N = 300 };
    synth_config c = synth_defaults();
    banis_dataset *d = banis_synthetic(&c, N, 1);
    ck_assert_ptr_nonnull(d);
    static geometry_seg seg;
    double rel = 0, signal = 0, inside = 0;
    int exact = 0, nuclei_true = 0, nuclei_found = 0;
    for (int i = 0; i < N; i++) {
        size_t o = (size_t)i * P;
        geometry_pair g;
        ck_assert_int_eq(geometry_measure(d->a + o, d->b + o, &g, &seg), 0);
        bool cell_seen[65] = {0}, nucleus_seen[65] = {0};
        int cells = 0, nuclei = 0;
        for (int p = 0; p < P; p++) {
            int l = d->labels[o + p];
            if (l && !cell_seen[l]) cell_seen[l] = true, cells++;
            if (d->nuclei[o + p] && !nucleus_seen[l]) nucleus_seen[l] = true, nuclei++;
        }
        rel += abs(seg.cells - cells) / (double)cells;
        exact += seg.cells == cells;
        nuclei_true += nuclei;
        nuclei_found += seg.nuclei;
        signal += g.signal;
        inside += g.signal_inside;
    }
    // measured at this commit: |error| 7.2% on average, 237 of 300 exact, 2486 of 2771 nuclei,
    // 94.7% of the signal inside cells
    ck_assert_msg(rel / N <= 0.12, "cell count off by %.1f%% on average", 100 * rel / N);
    ck_assert_msg(exact >= 0.7 * N, "%d of %d embryos counted exactly", exact, N);
    ck_assert_msg(nuclei_found >= 0.85 * nuclei_true && nuclei_found <= 1.05 * nuclei_true,
                  "%d nuclei found of %d", nuclei_found, nuclei_true);
    ck_assert_msg(inside / signal >= 0.9, "%.1f%% of the nucleus signal inside cells",
                  100 * inside / signal);
    banis_dataset_free(d);
}
END_TEST

// Sample covariance (n - 1) of 2-D rows, by the formula.
static void cov2(const double *x, int n, double m[2], double c[4]) {
    m[0] = m[1] = 0;
    for (int i = 0; i < n; i++) m[0] += x[2 * i] / n, m[1] += x[2 * i + 1] / n;
    for (int j = 0; j < 4; j++) c[j] = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 2; k++)
                c[2 * j + k] += (x[2 * i + j] - m[j]) * (x[2 * i + k] - m[k]) / (n - 1);
}

START_TEST(test_frechet_distance_against_closed_forms) {
    // one dimension: (mu_x - mu_r)^2 + (sigma_x - sigma_r)^2; {0, 2}: mean 1, variance 2;
    // {3, 7}: mean 5, variance 8; 16 + (sqrt 8 - sqrt 2)^2 = 18
    const double r1[2] = {0, 2}, x1[2] = {3, 7};
    ck_assert_double_eq_tol(frechet_distance(r1, 2, x1, 2, 1), 18, 1e-12);
    ck_assert_double_eq_tol(frechet_distance(r1, 2, r1, 2, 1), 0, 1e-12);
    ck_assert(isnan(frechet_distance(r1, 1, x1, 2, 1)));
    // two dimensions, covariances that do not commute: M = S_r^1/2 S_x S_r^1/2 is similar to
    // S_r S_x, and for a 2x2 positive matrix tr M^1/2 = sqrt(tr M + 2 sqrt(det M))
    const double r2[10] = {0, 0, 1, 2, 3, 1, -1, 4, 2, 2},
                 x2[12] = {5, 1, 4, 4, 9, 2, 3, 0, 6, 6, 7, -3};
    double mr[2], cr[4], mx[2], cx[4];
    cov2(r2, 5, mr, cr);
    cov2(x2, 6, mx, cx);
    ck_assert_double_ne(cr[0] * cx[1] + cr[1] * cx[3], cx[0] * cr[1] + cx[1] * cr[3]); // no commute
    double tr_rx = cr[0] * cx[0] + cr[1] * cx[2] + cr[2] * cx[1] + cr[3] * cx[3];
    double det = (cr[0] * cr[3] - cr[1] * cr[2]) * (cx[0] * cx[3] - cx[1] * cx[2]);
    double want = (mx[0] - mr[0]) * (mx[0] - mr[0]) + (mx[1] - mr[1]) * (mx[1] - mr[1]) + cr[0] +
                  cr[3] + cx[0] + cx[3] - 2 * sqrt(tr_rx + 2 * sqrt(det));
    ck_assert_double_eq_tol(frechet_distance(r2, 5, x2, 6, 2), want, 1e-10);
    // the geometry distance: counts, areas and thickness as log(1 + v), then each feature in
    // the reference's standard deviations, then the Frechet distance; the same set is at 0
    double fr[6 * GEOM_FEATURES], fx[7 * GEOM_FEATURES], tr[6 * GEOM_FEATURES],
        tx[7 * GEOM_FEATURES];
    rng g;
    rng_init(&g, 11);
    rng_fill_normal(&g, fr, 6 * GEOM_FEATURES, 3, 1);
    rng_fill_normal(&g, fx, 7 * GEOM_FEATURES, 3.5, 2);
    for (int i = 0; i < 6 * GEOM_FEATURES; i++) fr[i] = fabs(fr[i]);
    for (int i = 0; i < 7 * GEOM_FEATURES; i++) fx[i] = fabs(fx[i]);
    const bool logged[GEOM_FEATURES] = {[GF_CELLS] = 1,
                                        [GF_CELL_AREA] = 1,
                                        [GF_WALL_THICKNESS] = 1,
                                        [GF_NUCLEI] = 1,
                                        [GF_NUCLEUS_AREA] = 1};
    for (int j = 0; j < GEOM_FEATURES; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < 6; i++) {
            double t = logged[j] ? log(1 + fr[i * GEOM_FEATURES + j]) : fr[i * GEOM_FEATURES + j];
            tr[i * GEOM_FEATURES + j] = t;
            m += t / 6;
        }
        for (int i = 0; i < 6; i++) v += pow(tr[i * GEOM_FEATURES + j] - m, 2) / 5;
        for (int i = 0; i < 6; i++) tr[i * GEOM_FEATURES + j] /= sqrt(v);
        for (int i = 0; i < 7; i++)
            tx[i * GEOM_FEATURES + j] =
                (logged[j] ? log(1 + fx[i * GEOM_FEATURES + j]) : fx[i * GEOM_FEATURES + j]) /
                sqrt(v);
    }
    double d0 = geometry_distance(fr, 6, fx, 7);
    ck_assert(isfinite(d0) && d0 > 0);
    ck_assert_double_eq_tol(d0, frechet_distance(tr, 6, tx, 7, GEOM_FEATURES), 1e-9 * d0);
    ck_assert_double_eq_tol(geometry_distance(fr, 6, fr, 6), 0, 1e-9);
    // a bounded feature scaled in both sets: the same distance (it is measured in sd units)
    for (int i = 0; i < 6; i++) fr[i * GEOM_FEATURES + GF_CELL_AREA_CV] *= 1000;
    for (int i = 0; i < 7; i++) fx[i * GEOM_FEATURES + GF_CELL_AREA_CV] *= 1000;
    ck_assert_double_eq_tol(geometry_distance(fr, 6, fx, 7), d0, 1e-9 * d0);
    // banis_half_distance: the even rows against the odd, and sets of h rows averaged
    double ev[3 * GEOM_FEATURES], od[3 * GEOM_FEATURES];
    for (int i = 0; i < 3; i++) {
        memcpy(ev + i * GEOM_FEATURES, fr + 2 * i * GEOM_FEATURES, sizeof(double) * GEOM_FEATURES);
        memcpy(od + i * GEOM_FEATURES, fr + (2 * i + 1) * GEOM_FEATURES,
               sizeof(double) * GEOM_FEATURES);
    }
    ck_assert_double_eq_tol(banis_half_distance(fr, 6, ev, 3), geometry_distance(od, 3, ev, 3),
                            1e-12);
    double two =
        (geometry_distance(od, 3, fx, 3) + geometry_distance(od, 3, fx + 3 * GEOM_FEATURES, 3)) / 2;
    ck_assert_double_eq_tol(banis_half_distance(fr, 6, fx, 7), two, 1e-12);
    ck_assert(isnan(banis_half_distance(fr, 3, fx, 7))); // h = 1
}
END_TEST

// A "generator" that returns training pairs is flagged; one that draws new pairs of the same
// kind (other synthetic embryos) is as near the training pairs as the test pairs are.
START_TEST(test_memorisation_flags_copied_training_pairs) {
    static float ta[P], tb[P], qa[P], qb[P];
    for (int p = 0; p < P; p++) ta[p] = tb[p] = 0, qa[p] = 0.5f, qb[p] = -0.25f;
    double dist;
    ck_assert_int_eq(memorisation_distances(ta, tb, 1, qa, qb, 1, &dist), 0);
    ck_assert_double_eq_tol(dist, (0.5 + 0.25) / 2, 1e-7); // both channels' mean |difference|

    synth_config c = synth_defaults();
    banis_dataset *d = banis_synthetic(&c, 200, 1), *other = banis_synthetic(&c, 100, 2);
    banis_split s = banis_split_make(d->n, 0.2, 3);
    enum { N = 60 };
    float *ga = malloc(sizeof(float) * P * N), *gb = malloc(sizeof(float) * P * N);
    for (int i = 0; i < N; i++) { // copies of training pairs
        memcpy(ga + (size_t)i * P, d->a + (size_t)s.train[i] * P, sizeof(float) * P);
        memcpy(gb + (size_t)i * P, d->b + (size_t)s.train[i] * P, sizeof(float) * P);
    }
    memorisation m;
    ck_assert_int_eq(memorisation_measure(d, s.train, s.n_train, s.test, s.n_test, ga, gb, N, &m),
                     0);
    ck_assert_double_eq(m.median_gen, 0);
    ck_assert_double_gt(m.median_test, 0);
    ck_assert_double_eq(m.ratio, 0);
    ck_assert_double_eq(m.closer_than_any_test, 100);
    ck_assert(m.flagged);
    ck_assert_int_eq(
        memorisation_measure(d, s.train, s.n_train, s.test, s.n_test, other->a, other->b, N, &m),
        0);
    ck_assert_msg(m.ratio > 0.8 && m.ratio < 1.25,
                  "new embryos at %.2f of the test pairs' distance", m.ratio);
    ck_assert(!m.flagged);
    free(ga);
    free(gb);
    banis_split_free(&s);
    banis_dataset_free(d);
    banis_dataset_free(other);
}
END_TEST

// banis_score_generated on a small model: its GMI is Algorithm 1 on banis_generate_pairs' pairs
// (which depend on the seed only), its geometry the segmentation's, and gmi.md shows them.
START_TEST(test_generated_pairs_scored_and_reported) {
    banis_arch a = banis_arch_paper();
    a.width = 0.0625;
    a.latent = 8;
    banis_schedule sc = banis_schedule_paper();
    banis_model *m = banis_model_new(&a, &sc, TENSOR_F32, DEVICE_CPU, 5),
                *u = banis_model_new(&a, &sc, TENSOR_F32, DEVICE_CPU, 5);
    ck_assert(m && u);
    synth_config c = synth_defaults();
    banis_dataset *d = banis_synthetic(&c, 40, 4);
    banis_split s = banis_split_make(d->n, 0.25, 1);
    enum { N = 50 };
    float *ga = malloc(sizeof(float) * P * N), *gb = malloc(sizeof(float) * P * N),
          *ga2 = malloc(sizeof(float) * P * N), *gb2 = malloc(sizeof(float) * P * N);
    ck_assert_int_eq(banis_generate_pairs(m, N, BANIS_GEN_SEED, ga, gb), 0);
    ck_assert_int_eq(banis_generate_pairs(m, N, BANIS_GEN_SEED, ga2, gb2), 0);
    ck_assert_int_eq(memcmp(ga, ga2, sizeof(float) * P * N), 0);
    ck_assert(m->root->training); // the mode is given back
    banis_eval e;
    int idx[10];
    for (int i = 0; i < 10; i++) idx[i] = s.test[i];
    ck_assert_int_eq(banis_evaluate(m, d, idx, 10, &e), 0);
    ck_assert_int_eq(banis_score_generated(m, u, d, &s, N, &e), 0);
    double gmi[3], dsc;
    int empty;
    banis_gmi_of_pairs(ga, gb, N, gmi, &dsc, &empty);
    ck_assert_int_eq(e.gen.pairs, N);
    for (int t = 0; t < 3; t++) ck_assert_double_eq(e.gen.gmi[t], gmi[t]);
    ck_assert_double_eq(e.gen.mean_dsc, dsc);
    geometry_summary g;
    ck_assert_int_eq(geometry_measure_set(ga, gb, N, NULL, &g), 0);
    ck_assert_double_eq(e.gen.geometry.cells, g.cells);
    ck_assert_double_eq(e.gen.geometry.nuclei, g.nuclei);
    // the untrained networks are these same networks: the same distance, the same pairs
    ck_assert_double_eq(e.gen.distance, e.gen.distance_untrained);
    ck_assert_double_eq(e.gen.untrained_geometry.cells, g.cells);
    ck_assert_int_eq(e.gen.mem.n_train, s.n_train);
    ck_assert(isfinite(e.gen.mem.ratio));
    ck_assert_double_eq(e.real_geometry.pairs, 10);
    ck_assert(isfinite(e.real_distance) && isfinite(e.rec_distance));

    char path[] = "/tmp/test_scores_gmi_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ck_assert_int_eq(banis_write_gmi_table(path, &e, "scores", "random (a test)"), 0);
    char text[16384] = {0}, want[256];
    FILE *f = fopen(path, "r");
    ck_assert_uint_gt(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    unlink(path);
    snprintf(want, sizeof want, "| generated pairs (GMI %%) | %.2f | %.2f | %.2f | %.4f |", gmi[0],
             gmi[1], gmi[2], dsc);
    ck_assert_msg(strstr(text, want), "gmi.md lacks '%s':\n%s", want, text);
    snprintf(want, sizeof want, "| real test pairs | 10 | %.1f +- %.1f |", e.real_geometry.cells,
             e.real_geometry.cells_sd);
    ck_assert_msg(strstr(text, want), "gmi.md lacks '%s':\n%s", want, text);
    ck_assert_ptr_nonnull(strstr(text, "| generated, untrained networks | 50 |"));
    ck_assert_ptr_nonnull(strstr(
        text, "Memorisation: the distance of a pair to its nearest of the 30 training pairs"));
    free(ga);
    free(gb);
    free(ga2);
    free(gb2);
    banis_split_free(&s);
    banis_dataset_free(d);
    banis_model_free(m);
    banis_model_free(u);
}
END_TEST

// Fewer generated pairs than a set of the geometry distance (n_test / 2; the GPU preset scores
// 1,000 against 2,400 test pairs): GMI scores the n asked for, the geometry one whole set, and
// the distance is that of a set of the generated stream's first n_test / 2 pairs, not NaN.
START_TEST(test_few_generated_pairs_still_give_a_distance) {
    banis_arch a = banis_arch_paper();
    a.width = 0.0625;
    a.latent = 8;
    banis_schedule sc = banis_schedule_paper();
    banis_model *m = banis_model_new(&a, &sc, TENSOR_F32, DEVICE_CPU, 6);
    ck_assert_ptr_nonnull(m);
    synth_config c = synth_defaults();
    banis_dataset *d = banis_synthetic(&c, 40, 4);
    banis_split s = banis_split_make(d->n, 0.25, 1); // 10 test pairs: sets of 5
    enum { N = 3, H = 5, T = 10 };
    float *ga = malloc(sizeof(float) * P * T), *gb = malloc(sizeof(float) * P * T);
    double ft[T * GEOM_FEATURES], fg[H * GEOM_FEATURES];
    for (int i = 0; i < T; i++) { // the test pairs, in split order
        memcpy(ga + (size_t)i * P, d->a + (size_t)s.test[i] * P, sizeof(float) * P);
        memcpy(gb + (size_t)i * P, d->b + (size_t)s.test[i] * P, sizeof(float) * P);
    }
    ck_assert_int_eq(geometry_measure_set(ga, gb, T, ft, NULL), 0);
    ck_assert_int_eq(banis_generate_pairs(m, H, BANIS_GEN_SEED, ga, gb), 0);
    ck_assert_int_eq(geometry_measure_set(ga, gb, H, fg, NULL), 0);
    double want = banis_half_distance(ft, T, fg, H);
    ck_assert(isfinite(want));
    ck_assert(isnan(banis_half_distance(ft, T, fg, N))); // a set of 3 is not a set of 5

    banis_eval e;
    ck_assert_int_eq(banis_evaluate(m, d, s.test, T, &e), 0);
    ck_assert_int_eq(banis_score_generated(m, NULL, d, &s, N, &e), 0);
    ck_assert_int_eq(e.gen.pairs, N);
    ck_assert_int_eq(e.gen.geometry.pairs, H);
    ck_assert_double_eq_tol(e.gen.distance, want, 1e-12 * (1 + want));
    ck_assert(isnan(e.gen.distance_untrained)); // none given
    // GMI: the first N pairs of the same stream
    ck_assert_int_eq(banis_generate_pairs(m, N, BANIS_GEN_SEED, ga, gb), 0);
    double gmi[3], dsc;
    int empty;
    banis_gmi_of_pairs(ga, gb, N, gmi, &dsc, &empty);
    for (int t = 0; t < 3; t++) ck_assert_double_eq(e.gen.gmi[t], gmi[t]);
    ck_assert_double_eq(e.gen.mean_dsc, dsc);
    free(ga);
    free(gb);
    banis_split_free(&s);
    banis_dataset_free(d);
    banis_model_free(m);
}
END_TEST

int main(void) {
    TCase *tc = check_case("scores", 300,
                           CHECK_TESTS(test_geometry_of_hand_made_pairs,
                                       test_segmentation_against_synthetic_ground_truth,
                                       test_frechet_distance_against_closed_forms,
                                       test_memorisation_flags_copied_training_pairs,
                                       test_generated_pairs_scored_and_reported,
                                       test_few_generated_pairs_still_give_a_distance));
    return check_main("scores", tc);
}
