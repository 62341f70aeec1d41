#!/usr/bin/env bash
# What a lent GPU runs, run here on the emulated CUDA device (BANIS_CUDA=emulated):
#  - banis-bench with graphs: one graph launch per timed step; a capture that fails is an error
#    (exit 1) that says why, not eager timings passed off as the graph's
#  - banis-train: a capture that fails says so and the run goes on eagerly, to the same end
#  - the gpu-short preset end to end at tiny sizes (kernels run), its grids and gmi.md
#  - the example (examples/autoencoder.c) through nn/'s step runner, as graphs, the CPU's losses
#  - tools/gpu-check.sh --dry-run: every step of the GPU check, within its limits and far inside
#    the device call's, with the tar and report it returns; and --prepare's kernel-cache fill
# usage: test_gpu_check.sh BUILD_DIR SOURCE_DIR TMP_DIR
set -uo pipefail
bin=$1 src=$2 tmp=$3
rm -rf "$tmp"; mkdir -p "$tmp"
fail() { echo "FAIL: $*"; exit 1; }
export BANIS_CUDA=emulated
tiny=(--batch 2 --width 0.0625 --reps 1)

# 1. banis-bench: graphs used, and loud when they cannot be
BANIS_EMU_EXECUTE=0 "$bin/tools/banis-bench" --device cuda "${tiny[@]}" > "$tmp/bench.log" 2>&1 \
  || fail "banis-bench with graphs: $(tail -3 "$tmp/bench.log")"
[ "$(grep -c 'per step: 1 graph launches, 2 kernel launches' "$tmp/bench.log")" -eq 2 ] \
  || fail "banis-bench's timed steps are not one graph launch each: $(grep 'per step' "$tmp/bench.log")"
st=0; BANIS_EMU_EXECUTE=0 BANIS_EMU_CAPTURE_FAIL=1 "$bin/tools/banis-bench" --device cuda "${tiny[@]}" \
  > "$tmp/bench-fail.log" 2>&1 || st=$?
[ $st -eq 1 ] || fail "banis-bench with a capture that fails exited $st, not 1"
grep -q "could not be captured as a CUDA graph: .*stream capture refused (BANIS_EMU_CAPTURE_FAIL=1)" "$tmp/bench-fail.log" \
  || fail "banis-bench does not say why the capture failed: $(tail -2 "$tmp/bench-fail.log")"
grep -q "^full " "$tmp/bench-fail.log" && fail "banis-bench printed timings after a failed capture"
BANIS_EMU_EXECUTE=0 "$bin/tools/banis-bench" --device cuda "${tiny[@]}" --graphs off > "$tmp/nograph.log" 2>&1 \
  || fail "banis-bench --graphs off: $(tail -2 "$tmp/nograph.log")"
[ "$(grep -c 'per step: 0 graph launches' "$tmp/nograph.log")" -eq 2 ] || fail "--graphs off launched a graph"

# 2. banis-train: the same failure said once, the run finished eagerly
BANIS_EMU_EXECUTE=0 BANIS_EMU_CAPTURE_FAIL=1 "$bin/banis-train" --preset tiny --device cuda --score-pairs 16 \
  --out "$tmp/train-fail" > "$tmp/train-fail.log" 2>&1 || fail "banis-train with captures failing: $(tail -3 "$tmp/train-fail.log")"
[ "$(grep -c 'CUDA graphs off (each launch issued instead): .*BANIS_EMU_CAPTURE_FAIL=1' "$tmp/train-fail.log")" -eq 1 ] \
  || fail "banis-train does not say (once) why its steps are not graphs: $(grep -i graph "$tmp/train-fail.log")"
grep -q "^GMI on" "$tmp/train-fail.log" || fail "banis-train did not finish after the failed capture"

# 3. gpu-short at tiny sizes, kernels run: graphs replayed, grids and gmi.md written
"$bin/banis-train" --preset gpu-short --device cuda --width 0.0625 --batch 4 --warmup 2 --stage2 1 \
  --stage3 1 --n-synthetic 60 --score-pairs 16 --out "$tmp/gpu-short" > "$tmp/gpu-short.log" 2>&1 \
  || fail "gpu-short: $(tail -3 "$tmp/gpu-short.log")"
grep -q "^BANIS: gpu-short preset on emulated CUDA device" "$tmp/gpu-short.log" || fail "gpu-short's header"
grep -q "^rates: Adam D 0.0001 0.0001, G 0.0002 0.0002; Adam 0.001 for S and C" "$tmp/gpu-short.log" \
  || fail "gpu-short's rates: $(grep '^rates' "$tmp/gpu-short.log")"
grep -q "^CUDA graphs: 1 warm-up and 1 full steps replayed" "$tmp/gpu-short.log" \
  || fail "gpu-short's steps were not replayed as graphs: $(grep -i graph "$tmp/gpu-short.log")"
for f in gmi.md samples/step_000004_generated.png samples/step_000004_reconstructed.png; do
  [ -s "$tmp/gpu-short/$f" ] || fail "gpu-short wrote no $f"
done
grep -q "^# BANIS, gpu-short preset, 4 steps" "$tmp/gpu-short/gmi.md" || fail "gmi.md's title: $(head -1 "$tmp/gpu-short/gmi.md")"
grep -qF "| generated pairs | 16 |" "$tmp/gpu-short/gmi.md" || fail "gpu-short's gmi.md does not score 16 generated pairs"

# 3b. the example written against nn/ runs its steps through nn/'s runner: on CUDA captured at
#     the first, replayed after, with the CPU's losses (train loss to 4 decimals, test within 0.001)
"$bin/examples/autoencoder" --steps 3 --out "$tmp/ae-cpu.safetensors" > "$tmp/ae-cpu.log" 2>&1 \
  || fail "the example on the CPU: $(tail -2 "$tmp/ae-cpu.log")"
"$bin/examples/autoencoder" --device cuda --steps 3 --out "$tmp/ae-cuda.safetensors" > "$tmp/ae-cuda.log" 2>&1 \
  || fail "the example on CUDA: $(tail -2 "$tmp/ae-cuda.log")"
grep -q "^CUDA graphs: 2 replays$" "$tmp/ae-cuda.log" || fail "the example's steps were not replayed: $(grep -i graph "$tmp/ae-cuda.log")"
train() { grep '^loss' "$1" | awk '{print $2, $4}'; }
testl() { grep '^loss' "$1" | awk '{print $6}' | tr -d ','; }
[ "$(train "$tmp/ae-cpu.log")" = "$(train "$tmp/ae-cuda.log")" ] \
  || fail "the example's losses: cpu $(train "$tmp/ae-cpu.log"), cuda $(train "$tmp/ae-cuda.log")"
awk -v a="$(testl "$tmp/ae-cpu.log")" -v b="$(testl "$tmp/ae-cuda.log")" 'BEGIN { exit !(a - b < 1e-3 && b - a < 1e-3) }' \
  || fail "the example's test loss: cpu $(testl "$tmp/ae-cpu.log"), cuda $(testl "$tmp/ae-cuda.log")"

# 4. the GPU check, dry: every step, none timed out or skipped, in far less than the call's 420 s
t0=$SECONDS
OUT="$tmp/check" "$src/tools/gpu-check.sh" --dry-run > "$tmp/check.log" 2>&1 || fail "gpu-check --dry-run: $(tail -5 "$tmp/check.log")"
dt=$((SECONDS - t0))
[ $dt -lt 180 ] || fail "gpu-check --dry-run took ${dt}s"
for f in gpu-check.tar.gz report.md summary.txt; do [ -s "$tmp/check/$f" ] || fail "gpu-check wrote no $f"; done
steps="smi parity64 parity32 parity32x grad graphs banis step nograph conv profile"
for s in $steps; do
  grep -q "^$s " "$tmp/check/summary.txt" || fail "no summary line for $s"
  grep -q "^## $s$" "$tmp/check/report.md" || fail "report.md has no section $s"
done
grep -qE "TIMED OUT|skipped:" "$tmp/check/summary.txt" && fail "a step timed out or was skipped: $(cat "$tmp/check/summary.txt")"
grep -q "^gpu-check (dry) on emulated CUDA device (sm_90 rules, 132 SMs" "$tmp/check/summary.txt" \
  || fail "the summary does not name the device with 132 SMs: $(head -1 "$tmp/check/summary.txt")"
tar tzf "$tmp/check/gpu-check.tar.gz" > "$tmp/tar.txt" || fail "the tar does not read back"
for f in logs/banis.log logs/step.log banis/gmi.md banis/metrics.csv banis/step_000004_generated.png; do
  grep -qx "$f" "$tmp/tar.txt" || fail "the tar has no $f"
done
[ "$(ls "$tmp/check" | wc -l)" -le 8 ] || fail "more files under OUT than the device tool returns (8)"
tar xzf "$tmp/check/gpu-check.tar.gz" -C "$tmp/check" logs/step.log logs/nograph.log
[ "$(grep -c 'per step: 1 graph launches' "$tmp/check/logs/step.log")" -eq 2 ] || fail "the check's step did not replay graphs"
[ "$(grep -c 'per step: 0 graph launches' "$tmp/check/logs/nograph.log")" -eq 2 ] || fail "the check's nograph step used graphs"
st=0; "$src/tools/gpu-check.sh" --dry-run nosuchstep > /dev/null 2>&1 || st=$?
[ $st -eq 2 ] || fail "an unknown step was accepted (exit $st)"

# 5. --prepare's fill: with BANIS_EMU_NVRTC_ARCH=90 the emulated device compiles every module
#    it loads with NVRTC for sm_90 into the cache, as a GPU would look them up
if [ -x "$bin/tools/nvrtc-check" ]; then
  mkdir -p "$tmp/fill" # the emulated device's own host-compiled modules shared with the suite's
  [ -n "${BANIS_KERNEL_CACHE:-}" ] && [ -d "$BANIS_KERNEL_CACHE/emu" ] && ln -s "$BANIS_KERNEL_CACHE/emu" "$tmp/fill/emu"
  BANIS_EMU_NVRTC_ARCH=90 BANIS_KERNEL_CACHE="$tmp/fill" OUT="$tmp/fill-out" \
    "$src/tools/gpu-check.sh" --dry-run grad > "$tmp/fill.log" 2>&1 || fail "the fill: $(tail -3 "$tmp/fill.log")"
  n=$(find "$tmp/fill" -maxdepth 1 -name '*.cubin' | wc -l)
  [ "$n" -ge 10 ] || fail "the fill left $n sm_90 modules in the cache"
  grep -q "kernel cache: 0 sm_90 modules carried, $n compiled here" "$tmp/fill-out/summary.txt" \
    || fail "the summary does not count the modules compiled: $(sed -n 2p "$tmp/fill-out/summary.txt")"
fi
echo "gpu check path: all passed (dry run ${dt}s)"
