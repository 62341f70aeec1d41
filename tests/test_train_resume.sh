#!/usr/bin/env bash
# banis-train end to end (tiny preset): a run writes its checkpoint, metrics, TensorBoard
# events, samples and GMI table; a run stopped half way and resumed ends bit-for-bit where
# the uninterrupted run ends. Usage: test_train_resume.sh BANIS_TRAIN TMPDIR
set -euo pipefail
train=$1; tmp=$2
rm -rf "$tmp"; mkdir -p "$tmp"
export OMP_NUM_THREADS=2
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

"$train" --preset tiny --device cpu --out "$tmp/straight" > "$tmp/straight.log" 2>&1 || fail "tiny run: $(tail -3 "$tmp/straight.log")"
for f in checkpoint_latest.safetensors checkpoint_step_000008.safetensors metrics.csv gmi.md geometry.png \
         samples/step_000008_generated.png samples/step_000008_reconstructed.png; do
  [ -s "$tmp/straight/$f" ] || fail "missing $f"
done
ls "$tmp/straight"/events.out.tfevents.* > /dev/null || fail "no TensorBoard event file"
[ "$(wc -l < "$tmp/straight/metrics.csv")" -eq 9 ] || fail "metrics.csv should have a header and 8 rows"
grep -q "| BANIS (GMI %)" "$tmp/straight/gmi.md" || fail "gmi.md lacks the GMI row"
# the generated pairs' scores: in gmi.md and printed (the same GMI), the geometry and memorisation
for row in "| generated pairs (GMI %) |" "| real test pairs | 8 |" "| generated pairs | 1000 |" \
           "| generated, untrained networks | 1000 |" "Memorisation: the distance of a pair to its nearest of the 72 training pairs"; do
  grep -qF "$row" "$tmp/straight/gmi.md" || fail "gmi.md lacks '$row'"
done
printed=$(sed -n 's/^generated pairs (1000, G_A(z) and G_B(z)): GMI \([0-9.]*\)% \/ \([0-9.]*\)% \/ \([0-9.]*\)%.*/\1 \2 \3/p' "$tmp/straight.log")
table=$(grep -F "| generated pairs (GMI %) |" "$tmp/straight/gmi.md" | awk -F'|' '{printf "%.1f %.1f %.1f", $3, $4, $5}')
[ -n "$printed" ] && [ "$printed" = "$table" ] || fail "generated pairs' GMI printed '$printed', in gmi.md '$table'"
grep -q "^geometry distance to the real test pairs: generated [0-9.]*, reconstructions [0-9.]*, untrained [0-9.]*, real against real [0-9.]*" "$tmp/straight.log" \
  || fail "no geometry distances printed"
grep -q "step      8/8" "$tmp/straight.log" || fail "no progress line for the last step"

"$train" --preset tiny --device cpu --out "$tmp/resumed" --max-steps 4 > "$tmp/part1.log" 2>&1 || fail "first half: $(tail -3 "$tmp/part1.log")"
grep -q "stopping after 4 steps" "$tmp/part1.log" || fail "did not stop at step 4"
[ ! -e "$tmp/resumed/gmi.md" ] || fail "a stopped run wrote the final table"
# what a run killed after its checkpoint leaves: a metrics row past it and a temporary file
echo "5,warm-up,0,0,0,0,0,0,0,0,0,0,0" >> "$tmp/resumed/metrics.csv"
echo partial > "$tmp/resumed/checkpoint_latest.safetensors.tmp99999"
"$train" --resume "$tmp/resumed" > "$tmp/part2.log" 2>&1 || fail "resume: $(tail -3 "$tmp/part2.log")"
[ ! -e "$tmp/resumed/checkpoint_latest.safetensors.tmp99999" ] || fail "a stale temporary checkpoint was left"
grep -q "removed 1 temporary checkpoint file" "$tmp/part2.log" || fail "stale temporary not reported"
[ "$(wc -l < "$tmp/resumed/metrics.csv")" -eq 9 ] || fail "metrics.csv after resume: $(wc -l < "$tmp/resumed/metrics.csv") lines, want a header and 8 rows"
[ "$(cut -d, -f1 "$tmp/resumed/metrics.csv" | sort | uniq -d | wc -l)" -eq 0 ] || fail "a step appears twice in metrics.csv"
grep -q "resumed .* at step 4 of 8" "$tmp/part2.log" || fail "resume did not start at step 4"
cmp "$tmp/straight/checkpoint_latest.safetensors" "$tmp/resumed/checkpoint_latest.safetensors" \
  || fail "resumed run differs from the uninterrupted one"

# a loss that turns NaN (the fail point poisons a weight before step 5) stops the run at that
# step, naming the loss, and points to the last checkpoint, written at step 4, which resumes to
# the uninterrupted run's end bit for bit
if BANIS_FAILPOINT_NAN_STEP=5 "$train" --preset tiny --device cpu --ckpt-every 2 --out "$tmp/nan" > "$tmp/nan.log" 2>&1; then
  fail "a run whose loss turned NaN exited 0"
fi
grep -q "banis-train: step 5: .* loss is nan" "$tmp/nan.log" || fail "the NaN step is not named: $(tail -3 "$tmp/nan.log")"
grep -q "the last good checkpoint is $tmp/nan/checkpoint_latest.safetensors" "$tmp/nan.log" || fail "no last good checkpoint named: $(tail -3 "$tmp/nan.log")"
[ -e "$tmp/nan/checkpoint_step_000004.safetensors" ] && [ ! -e "$tmp/nan/checkpoint_step_000006.safetensors" ] || fail "checkpoints after the NaN step: $(ls "$tmp/nan")"
[ ! -e "$tmp/nan/gmi.md" ] || fail "a failed run wrote the final table"
"$train" --resume "$tmp/nan" > "$tmp/nan2.log" 2>&1 || fail "resume after the NaN: $(tail -3 "$tmp/nan2.log")"
grep -q "resumed .* at step 4 of 8" "$tmp/nan2.log" || fail "did not resume from step 4 after the NaN"
cmp "$tmp/straight/checkpoint_latest.safetensors" "$tmp/nan/checkpoint_latest.safetensors" \
  || fail "the run resumed from its last good checkpoint differs from the uninterrupted one"

# the run's optimizer choice is part of its configuration: a resumed SGD run stays SGD
"$train" --preset tiny --device cpu --sc-optim sgd --out "$tmp/sgd" > "$tmp/sgd.log" 2>&1 || fail "sgd run: $(tail -3 "$tmp/sgd.log")"
"$train" --preset tiny --device cpu --sc-optim sgd --out "$tmp/sgd2" --max-steps 5 > /dev/null 2>&1 || fail "sgd first half"
"$train" --resume "$tmp/sgd2" > "$tmp/sgd2.log" 2>&1 || fail "sgd resume: $(tail -3 "$tmp/sgd2.log")"
cmp "$tmp/sgd/checkpoint_latest.safetensors" "$tmp/sgd2/checkpoint_latest.safetensors" \
  || fail "resumed SGD run differs from the uninterrupted one"
grep -q "sgd_successor_a" "$tmp/sgd/checkpoint_latest.safetensors" || fail "no SGD state in the SGD run's checkpoint"
# an ablation says so where its figures land, not only in its log
"$train" --preset tiny --device cpu --identical-gen off --out "$tmp/ablation" > "$tmp/ablation.log" 2>&1 || fail "ablation run: $(tail -3 "$tmp/ablation.log")"
head -1 "$tmp/ablation/gmi.md" | grep -q "^# ABLATION (not BANIS: --identical-gen off" || fail "the ablation's gmi.md is titled: $(head -1 "$tmp/ablation/gmi.md")"
head -1 "$tmp/straight/gmi.md" | grep -q "^# BANIS, tiny preset, 8 steps" || fail "BANIS's gmi.md is titled: $(head -1 "$tmp/straight/gmi.md")"

# a flag that would change a resumed run is refused; a truncated checkpoint is refused by name
if "$train" --resume "$tmp/resumed" --batch 8 > "$tmp/bad.log" 2>&1; then fail "--batch accepted on resume"; fi
head -c 100 "$tmp/resumed/checkpoint_latest.safetensors" > "$tmp/cut.safetensors"
mkdir -p "$tmp/cut"; cp "$tmp/cut.safetensors" "$tmp/cut/checkpoint_latest.safetensors"
if "$train" --resume "$tmp/cut" > "$tmp/cut.log" 2>&1; then fail "truncated checkpoint accepted"; fi
grep -q "cut/checkpoint_latest.safetensors" "$tmp/cut.log" || fail "error does not name the checkpoint: $(cat "$tmp/cut.log")"
# a fresh run never overwrites a folder that holds a run
cp "$tmp/straight/checkpoint_latest.safetensors" "$tmp/before.safetensors"
if "$train" --preset tiny --device cpu --out "$tmp/straight" > "$tmp/over.log" 2>&1; then fail "a fresh run into a run folder was accepted"; fi
grep -q "holds a run already" "$tmp/over.log" || fail "no message for an existing run: $(cat "$tmp/over.log")"
cmp "$tmp/before.safetensors" "$tmp/straight/checkpoint_latest.safetensors" || fail "the earlier run's checkpoint changed"
# two runs in one folder: the second says which process holds it
flock "$tmp/straight/.lock" sleep 20 & holder=$!
sleep 0.5
if "$train" --resume "$tmp/straight" > "$tmp/locked.log" 2>&1; then kill $holder; fail "a second run into a locked folder was accepted"; fi
kill $holder 2>/dev/null || true; wait $holder 2>/dev/null || true
grep -q "is in use by another banis-train" "$tmp/locked.log" || fail "no lock message: $(cat "$tmp/locked.log")"
# SIGINT (Ctrl-C), SIGTERM (a scheduler) and SIGHUP (a closed terminal) each save a checkpoint
# and stop with 130; the saved run resumes
for sig in INT TERM HUP; do
  "$train" --preset tiny --device cpu --stage2 100000 --out "$tmp/sig$sig" > "$tmp/sig$sig.log" 2>&1 & run=$!
  for _ in $(seq 100); do [ -s "$tmp/sig$sig/metrics.csv" ] && [ "$(wc -l < "$tmp/sig$sig/metrics.csv")" -gt 5 ] && break; sleep 0.2; done
  kill -$sig $run; st=0; wait $run || st=$?
  [ "$st" -eq 130 ] || fail "SIG$sig: exit status $st, want 130 ($(tail -2 "$tmp/sig$sig.log"))"
  grep -q "interrupted at step" "$tmp/sig$sig.log" || fail "SIG$sig did not save a checkpoint"
  [ -s "$tmp/sig$sig/checkpoint_latest.safetensors" ] || fail "no checkpoint after SIG$sig"
done
"$train" --resume "$tmp/sigTERM" --max-steps 1 > "$tmp/sigTERM-resume.log" 2>&1 || fail "resume after SIGTERM: $(tail -2 "$tmp/sigTERM-resume.log")"
grep -q "resumed .* at step [1-9]" "$tmp/sigTERM-resume.log" || fail "resume after SIGTERM: $(head -3 "$tmp/sigTERM-resume.log")"
# the default folder moves on to runs/banis-2 when runs/banis holds a run (run from a scratch cwd)
mkdir -p "$tmp/cwd" && (cd "$tmp/cwd" && "$train" --preset tiny --device cpu --max-steps 1 > first.log 2>&1 && "$train" --preset tiny --device cpu --max-steps 1 > second.log 2>&1) || fail "default-folder runs: $(tail -2 "$tmp/cwd/second.log")"
grep -q "runs/banis holds an earlier run: this run goes to runs/banis-2" "$tmp/cwd/second.log" || fail "no move to runs/banis-2: $(head -3 "$tmp/cwd/second.log")"
[ -s "$tmp/cwd/runs/banis-2/metrics.csv" ] && [ -s "$tmp/cwd/runs/banis/metrics.csv" ] || fail "runs/banis-2 not written beside runs/banis"
# unknown or missing preset values are refused
if "$train" --preset huge --out "$tmp/huge" > "$tmp/huge.log" 2>&1; then fail "--preset huge accepted"; fi
grep -q "unknown preset 'huge'" "$tmp/huge.log" || fail "no message for an unknown preset"
if "$train" --preset > "$tmp/nopreset.log" 2>&1; then fail "--preset without a value accepted"; fi
# NaN in the data is refused at load, by file, image, pair and pixel
python3 - "$tmp/nan.safetensors" <<'PY'
import sys
import numpy as np
from safetensors.numpy import save_file
a = np.random.default_rng(0).uniform(-1, 1, (30, 1, 64, 64)).astype(np.float32)
b = a.copy()
b[7, 0, 12, 34] = np.nan
save_file({"A": a, "B": b}, sys.argv[1], metadata={"source": "nan test"})
PY
if "$train" --preset tiny --device cpu --data "$tmp/nan.safetensors" --out "$tmp/nan" > "$tmp/nan.log" 2>&1; then fail "NaN data accepted"; fi
grep -q "nan.safetensors: image B of pair 7 has a non-finite value (nan) at pixel (12, 34)" "$tmp/nan.log" \
  || fail "NaN data: $(cat "$tmp/nan.log")"
# a checkpoint with a non-finite weight is refused by banis-sample, naming the tensor
python3 - "$tmp/straight/checkpoint_latest.safetensors" "$tmp/poison.safetensors" <<'PY'
import sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
with safe_open(sys.argv[1], "np") as f:
    meta = f.metadata()
    t = {k: f.get_tensor(k) for k in f.keys()}
k = sorted(n for n in t if n.startswith("gen_a") and n.endswith("weight"))[0]
t[k] = t[k].copy()
t[k].flat[0] = np.inf
save_file(t, sys.argv[2], metadata=meta)
PY
sample=$(dirname "$train")/banis-sample
if "$sample" --ckpt "$tmp/poison.safetensors" --n 4 --out "$tmp/poison-out" > "$tmp/poison.log" 2>&1; then fail "a checkpoint with an infinite weight was sampled"; fi
grep -q "poison.safetensors: gen_a.* holds a NaN or an infinity" "$tmp/poison.log" || fail "poisoned checkpoint: $(cat "$tmp/poison.log")"
# ... and by every other path: a resume (before a step is trained) and the export
mkdir -p "$tmp/poisoned-run" && cp "$tmp/poison.safetensors" "$tmp/poisoned-run/checkpoint_latest.safetensors"
if "$train" --resume "$tmp/poisoned-run" > "$tmp/poison-resume.log" 2>&1; then fail "a poisoned checkpoint was resumed"; fi
grep -q "checkpoint_latest.safetensors: gen_a.* holds a NaN or an infinity" "$tmp/poison-resume.log" || fail "poisoned resume: $(cat "$tmp/poison-resume.log")"
if grep -q "last good checkpoint\|step *1/" "$tmp/poison-resume.log"; then fail "a poisoned resume trained or called it good: $(cat "$tmp/poison-resume.log")"; fi
export_bin=$(dirname "$train")/tools/banis-export
if "$export_bin" --ckpt "$tmp/poison.safetensors" --out "$tmp/poison-export.safetensors" > "$tmp/poison-export.log" 2>&1; then fail "a poisoned checkpoint was exported"; fi
grep -q "holds a NaN or an infinity" "$tmp/poison-export.log" || fail "poisoned export: $(cat "$tmp/poison-export.log")"
# banis-data prepare makes its output's missing parents, and --data takes the prepared folder
synth=$(dirname "$train")/tools/banis-data
# 30 raw grey slices side by side (membrane ring left, nucleus right), as a microscope saves them
python3 - "$tmp/raw" <<'PY' || fail "writing raw slices"
import os, struct, sys, zlib
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
def png(path, w, h, px):
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    rows = b"".join(b"\0" + bytes(px[y * w:(y + 1) * w]) for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
for k in range(30):
    r = 30 + k % 20
    px = []
    for y in range(256):
        for x in range(512):
            d2 = (x % 256 - 128) ** 2 + (y - 128) ** 2
            px.append(200 if (x < 256 and (r - 4) ** 2 < d2 < r * r) or (x >= 256 and d2 < 64) else 10)
    png(f"{out}/slice_{k:02d}.png", 512, 256, px)
PY
"$synth" prepare "$tmp/raw" --out "$tmp/deep/er/prepared" > "$tmp/prep.log" 2>&1 || fail "prepare into a new nested folder: $(tail -2 "$tmp/prep.log")"
[ -s "$tmp/deep/er/prepared/dataset.safetensors" ] || fail "no dataset.safetensors"
"$train" --preset tiny --device cpu --data "$tmp/deep/er/prepared" --out "$tmp/fromprep" --max-steps 1 > "$tmp/fromprep.log" 2>&1 \
  || fail "--data PREPARED_DIR: $(tail -2 "$tmp/fromprep.log")"
grep -q "(26 train / 3 test pairs, split by slices: the last 3 slices" "$tmp/fromprep.log" || fail "--data PREPARED_DIR read something else: $(grep data: "$tmp/fromprep.log")"
bin=$(dirname "$train")
# banis-eval end to end (tiny preset, two seeds): Table 1 with its four rows after training and
# before, each row's mean the mean of the per-seed scores in the log, and Fig. 3
"$bin/tools/banis-eval" --preset tiny --seeds 2 --out "$tmp/eval" > "$tmp/eval.log" 2>&1 || fail "banis-eval: $(tail -3 "$tmp/eval.log")"
[ -s "$tmp/eval/fig3.png" ] && [ -s "$tmp/eval/geometry.png" ] || fail "banis-eval wrote no fig3.png or geometry.png"
for row in "| real test pairs |" "| BANIS, generated pairs |" "| Cycle-GAN, translations |" "| Auto-Encoder, nuclei dropped, translations |"; do
  grep -qF "$row" "$tmp/eval/table1.md" || fail "table1.md lacks the geometry row '$row'"
done
for model in BANIS Cycle-GAN Auto-Encoder "Auto-Encoder, nuclei dropped"; do
  [ "$(grep -c "^| $model | [0-9.]* +- " "$tmp/eval/table1.md")" -eq 2 ] || fail "table1.md has no rows (trained, untrained) for $model"
  for when in trained untrained; do
    logged=$(grep "^seed [12] $model  *$when " "$tmp/eval.log" | sed 's/.*membrane Dice \([0-9.]*\).*/\1/' | awk '{s += $1; n++} END {if (n == 2) printf "%.4f", s / n}')
    [ -n "$logged" ] || fail "banis-eval did not score $model ($when) for both seeds"
    row=$([ $when = trained ] && echo 1 || echo 2)
    table=$(grep "^| $model | [0-9.]* +- " "$tmp/eval/table1.md" | sed -n ${row}p | awk -F'|' '{split($6, v, " "); print v[1]}')
    awk -v a="$logged" -v b="$table" 'BEGIN {exit !(a - b < 0.0011 && b - a < 0.0011)}' \
      || fail "table1.md: $model ($when) membrane Dice $table, the seeds' mean $logged"
  done
done
grep -q "^- Cycle-GAN: membrane Dice .* (untrained " "$tmp/eval/table1.md" || fail "table1.md does not say whether Cycle-GAN learned"
grep -q "table1.md, .*fig3.png and .*geometry.png: 1 of 2 seeds" "$tmp/eval.log" || fail "banis-eval did not write the table after the first seed"
# --n-synthetic sets the data set's size (10% of it the test split); below 20 pairs is refused
"$bin/tools/banis-eval" --preset tiny --seeds 1 --models ae --ae-steps 2 --n-synthetic 120 --out "$tmp/eval120" > "$tmp/eval120.log" 2>&1 \
  || fail "banis-eval --n-synthetic 120: $(tail -3 "$tmp/eval120.log")"
grep -q "(seed 1, 120 pairs), 108 train / 12 test pairs" "$tmp/eval120.log" || fail "banis-eval --n-synthetic 120: $(head -1 "$tmp/eval120.log")"
st=0; "$bin/tools/banis-eval" --preset tiny --n-synthetic 10 > /dev/null 2>&1 || st=$?
[ "$st" -eq 2 ] || fail "banis-eval --n-synthetic 10: exit status $st, want 2"
st=0; "$bin/tools/banis-eval" --preset tiny --models banis,gan > /dev/null 2>&1 || st=$?
[ "$st" -eq 2 ] || fail "banis-eval --models with an unknown model: exit status $st, want 2"
# every program: --help on stdout with exit 0; an unknown option is exit 2
for p in "$bin/banis-train" "$bin/banis-sample" "$bin/tools/banis-data" "$bin/tools/banis-eval" "$bin/tools/banis-bench" \
         "$bin/examples/autoencoder"; do
  "$p" --help > "$tmp/help.out" 2> "$tmp/help.err" || fail "$p --help: exit status $?"
  [ -s "$tmp/help.out" ] && [ ! -s "$tmp/help.err" ] || fail "$p --help: usage not on stdout"
  st=0; "$p" --no-such-option > /dev/null 2>&1 || st=$?
  [ "$st" -eq 2 ] || fail "$p --no-such-option: exit status $st, want 2"
done
# periodic checkpoints: weights only (banis-sample reads them), and --keep bounds how many stay
"$train" --preset tiny --device cpu --ckpt-every 1 --keep 2 --out "$tmp/keep" > "$tmp/keep.log" 2>&1 || fail "--keep run: $(tail -2 "$tmp/keep.log")"
kept=$(ls "$tmp/keep" | grep -c '^checkpoint_step_') || true
[ "$kept" -eq 2 ] || fail "--keep 2 left $kept periodic checkpoints: $(ls "$tmp/keep")"
[ -s "$tmp/keep/checkpoint_step_000008.safetensors" ] && [ -s "$tmp/keep/checkpoint_step_000007.safetensors" ] || fail "not the newest two kept"
full=$(stat -c %s "$tmp/keep/checkpoint_latest.safetensors"); part=$(stat -c %s "$tmp/keep/checkpoint_step_000008.safetensors")
[ $((part * 2)) -lt "$full" ] || fail "a periodic checkpoint ($part bytes) is not much smaller than the full one ($full)"
"$sample" --ckpt "$tmp/keep/checkpoint_step_000008.safetensors" --n 4 --out "$tmp/keep-sample" > "$tmp/keep-sample.log" 2>&1 \
  || fail "banis-sample on a periodic checkpoint: $(tail -2 "$tmp/keep-sample.log")"
grep -q "^  GMI of the pairs: [0-9.]*% / [0-9.]*% / [0-9.]*% at TS" "$tmp/keep-sample.log" && grep -q "^  geometry: .* cells per embryo" "$tmp/keep-sample.log" \
  || fail "banis-sample did not score what it wrote: $(cat "$tmp/keep-sample.log")"
# nothing already written is lost or mixed: banis-data over a prepared set is refused (the set
# untouched), banis-sample into a folder holding its earlier output is refused (that output
# untouched), and banis-sample --from with a corrupt image writes nothing
cp "$tmp/deep/er/prepared/dataset.safetensors" "$tmp/prepared-before.safetensors"
if "$synth" synth --n 4 --out "$tmp/deep/er/prepared" > "$tmp/over-prep.log" 2>&1; then fail "banis-data synth replaced a prepared set"; fi
grep -q "holds a data set already (dataset.safetensors)" "$tmp/over-prep.log" || fail "no message for a data set there: $(cat "$tmp/over-prep.log")"
cmp -s "$tmp/deep/er/prepared/dataset.safetensors" "$tmp/prepared-before.safetensors" || fail "the prepared set changed"
cp "$tmp/keep-sample/pairs.png" "$tmp/pairs-before.png"
if "$sample" --ckpt "$tmp/keep/checkpoint_latest.safetensors" --n 2 --seed 9 --out "$tmp/keep-sample" > "$tmp/over-sample.log" 2>&1; then fail "banis-sample wrote over its earlier output"; fi
grep -q "holds an earlier banis-sample's output (pairs.png)" "$tmp/over-sample.log" || fail "no message for earlier output: $(cat "$tmp/over-sample.log")"
cmp -s "$tmp/keep-sample/pairs.png" "$tmp/pairs-before.png" || fail "the earlier pairs.png changed"
mkdir -p "$tmp/from-a" && cp "$tmp/raw/slice_00.png" "$tmp/raw/slice_01.png" "$tmp/from-a/"
head -c 300 "$tmp/raw/slice_02.png" > "$tmp/from-a/slice_02.png" # truncated
if "$sample" --ckpt "$tmp/keep/checkpoint_latest.safetensors" --n 3 --from a "$tmp/from-a" --out "$tmp/from-out" > "$tmp/from.log" 2>&1; then fail "a corrupt image was translated"; fi
grep -q "slice_02.png" "$tmp/from.log" || fail "the corrupt image is not named: $(cat "$tmp/from.log")"
[ -z "$(ls -A "$tmp/from-out" 2>/dev/null)" ] || fail "banis-sample left files after failing: $(ls -A "$tmp/from-out")"
rm "$tmp/from-a/slice_02.png"
"$sample" --ckpt "$tmp/keep/checkpoint_latest.safetensors" --n 3 --from a "$tmp/from-a" --out "$tmp/from-out" > "$tmp/from.log" 2>&1 || fail "banis-sample --from a: $(tail -2 "$tmp/from.log")"
[ -s "$tmp/from-out/translated.png" ] && [ -s "$tmp/from-out/pair_0002.png" ] && [ -z "$(ls -A "$tmp/from-out" | grep staging)" ] || fail "banis-sample --from wrote: $(ls -A "$tmp/from-out")"
# TensorBoard's Images tab: the sample grids are image summaries in the event file (decoded
# here from the TFRecord framing and the protocol buffers, independently of our writer)
python3 - "$tmp"/straight/events.out.tfevents.* <<'PY' || fail "no sample images in the TensorBoard events"
import struct, sys
def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0: v, i = varint(b, i)
        elif t == 1: v, i = b[i:i + 8], i + 8
        elif t == 5: v, i = b[i:i + 4], i + 4
        elif t == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else: raise ValueError("wire type %d" % t)
        yield f, v
def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1; r |= (c & 127) << s; s += 7
        if c < 128: return r, i
data = open(sys.argv[1], "rb").read()
i, images = 0, {}
while i < len(data):
    n = struct.unpack("<Q", data[i:i + 8])[0]
    ev = data[i + 12:i + 12 + n]; i += 12 + n + 4
    ev = dict((f, v) for f, v in fields(ev) if f in (2, 5))
    if 5 not in ev: continue
    for f, val in fields(ev[5]):
        val = dict(fields(val))
        if 4 in val:
            img = dict(fields(val[4]))
            assert img[4][:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
            w, h = struct.unpack(">II", img[4][16:24])
            assert (img[2], img[1]) == (w, h), "size differs from the PNG's"
            images.setdefault(val[1].decode(), []).append(ev[2])
assert sorted(images) == ["samples/generated", "samples/reconstructed"], images
assert 8 in images["samples/generated"], images
PY
# a resumed run tells TensorBoard to discard the points written after the checkpoint: a
# SessionLog START event at the resume step (step 4) in the resumed run's event files
python3 - "$tmp"/resumed/events.out.tfevents.* <<'PY' || fail "no SessionLog START at step 4 after resume"
import struct, sys
def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1; r |= (c & 127) << s; s += 7
        if c < 128: return r, i
found = False
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    i = 0
    while i < len(data):
        n = struct.unpack("<Q", data[i:i + 8])[0]
        ev = data[i + 12:i + 12 + n]; i += 12 + n + 4
        j, step, log = 0, 0, None
        while j < len(ev):
            key, j = varint(ev, j)
            f, t = key >> 3, key & 7
            if t == 0: v, j = varint(ev, j)
            elif t == 1: v, j = ev[j:j + 8], j + 8
            else:
                m, j = varint(ev, j); v, j = ev[j:j + m], j + m
            if f == 2: step = v
            if f == 6: log = v
        if log == b"\x08\x01" and step == 4: found = True
assert found
PY
echo "19 passed, 0 failed"
