#!/usr/bin/env bash
# Everything a lent GPU should run, in ONE device call of at most 7 minutes (docs/gpu-check.md).
#
#   tools/gpu-check.sh --prepare   here, without a GPU: build, copy the binaries and the shared
#                                  libraries they need into .carry/, and fill .carry/kernels
#                                  with every kernel the check launches, compiled by NVRTC for
#                                  sm_90 (the emulated device runs each step at the GPU's sizes,
#                                  launches checked but not run), so the GPU compiles nothing
#   tools/gpu-check.sh             there (device tool: carry [".carry"], timeout_s 480)
#   tools/gpu-check.sh --dry-run   here or in CI: every step on the emulated device (132 SMs, no
#                                  kernel run) at tiny sizes: the script, its limits and its tar
#   tools/gpu-check.sh [--dry-run] STEP ...   only those steps
#
# Steps, in this order, each under its own time limit and all under one deadline
# (GPU_CHECK_BUDGET seconds, default 420); a step with too little time left is skipped, said so:
#   smi        the GPU, driver and clocks
#   parity64   every op on CUDA against the CPU, float64          (tools/cuda-parity)
#   parity32   the same in float32 with TF32 tensor cores
#   parity32x  the same in exact FP32 (BANIS_ALLOW_TF32=0)
#   grad       the float64 gradient check on CUDA                 (tools/gradcheck)
#   graphs     the graph tests on the GPU: replays against eager steps and the CPU, the counters
#   banis      banis-train --preset gpu-short: the paper's networks and batch, ~3 min of steps
#   step       the BANIS step (CUDA graphs) beside PyTorch eager: time and memory
#   nograph    the same step with every launch issued by the host (--graphs off)
#   conv       BANIS's convolutions and GEMMs one by one beside PyTorch (cuDNN)
#   pipelined  the same, ours only, with the pipelined TF32 GEMM (BANIS_CUDA_GEMM=pipelined)
#   profile    device time by kernel of one eager step (BANIS_CUDA_PROFILE=1)
# Output: $OUT (or ./gpu-check-out) gets gpu-check.tar.gz (every log, the BANIS run's gmi.md,
# metrics.csv and sample grids), report.md (the summary, then each log: what goes into
# docs/gpu-runs/DATE-DEVICE.md) and summary.txt. The summary is also the end of stdout.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=gpu
case "${1:-}" in
  --prepare) mode=prepare; shift ;;
  --dry-run) mode=dry; shift ;;
  -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
all=(smi parity64 parity32 parity32x grad graphs banis step nograph conv pipelined profile)
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=("${all[@]}")
for s in "${steps[@]}"; do
  [[ " ${all[*]} " == *" $s "* ]] || { echo "gpu-check: unknown step '$s' (steps: ${all[*]})" >&2; exit 2; }
done
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

# ---- here: build, bundle, fill the kernel cache ------------------------------------------
if [ $mode = prepare ]; then
  set -e
  [ -d build ] || meson setup build
  ninja -C build
  rm -rf .carry/build .carry/kernels
  mkdir -p .carry/build/tools .carry/build/tests .carry/kernels
  cp build/banis-train .carry/build/
  cp build/tools/{cuda-parity,gradcheck,banis-bench,kernel-bench} .carry/build/tools/
  cp build/tests/test_cuda_emu .carry/build/tests/
  bundle=../shared/gpu/bundle-libs
  [ -x "$bundle" ] || { echo "gpu-check --prepare: $bundle not found (it lives beside the checkout)" >&2; exit 1; }
  "$bundle" .carry/build .carry
  # every step once on the emulated device at the GPU's own sizes (132 SMs: the same launch
  # configurations), kernels compiled by NVRTC for sm_90 into the cache as they are loaded
  t0=$SECONDS
  mkdir -p build/emu-kernels # the emulated device's own host-compiled modules, kept here
  ln -s "$root/build/emu-kernels" .carry/kernels/emu
  BANIS_EMU_NVRTC_ARCH=90 BANIS_KERNEL_CACHE=$root/.carry/kernels GPU_CHECK_FILL=1 \
    "$0" --dry-run "${steps[@]}" > .carry/prepare.log 2>&1 || true
  tail -n 14 .carry/prepare.log
  rm .carry/kernels/emu
  echo "kernel cache: $(ls .carry/kernels | wc -l) sm_90 modules ($(du -sh .carry/kernels | cut -f1)) in $((SECONDS - t0)) s"
  echo "carry: $(du -sh .carry | cut -f1) in .carry (the device tool takes at most 64 MiB with the working tree)"
  echo "next: the device tool's run with carry [\".carry\"], timeout_s 480, command tools/gpu-check.sh"
  exit 0
fi

# ---- the check: on the GPU, or dry on the emulated device ------------------------------------
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
work=$(mktemp -d /tmp/gpu-check.XXXXXX)
mkdir -p "$work/logs"
budget=${GPU_CHECK_BUDGET:-420}
scale=1
if [ $mode = gpu ]; then
  bin=$root/build; [ -d .carry/build ] && bin=$root/.carry/build
  export BANIS_CUDA=gpu
  export LD_LIBRARY_PATH=$root/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
  export BANIS_KERNEL_CACHE=${BANIS_KERNEL_CACHE:-/tmp/banis-kernels}
  mkdir -p "$BANIS_KERNEL_CACHE"
  [ -d .carry/kernels ] && cp -r .carry/kernels/. "$BANIS_KERNEL_CACHE"/
  tiny_bench=(); tiny_train=()
else
  bin=$root/build
  export BANIS_CUDA=emulated BANIS_EMU_EXECUTE=0 BANIS_EMU_SMS=132
  if [ "${GPU_CHECK_FILL:-}" = 1 ]; then # --prepare: the GPU's own sizes, the schedule cut short
    export BANIS_NO_TORCH=1 # ours only: PyTorch's CPU step at these sizes would take minutes
    scale=20 budget=7200 # every kernel compiled twice here (host C++ and NVRTC)
    tiny_bench=(--reps 1)
    tiny_train=(--warmup 1 --stage2 1 --stage3 1 --n-synthetic 300)
  else
    tiny_bench=(--batch 4 --width 0.0625 --reps 1)
    tiny_train=(--width 0.0625 --batch 4 --warmup 2 --stage2 1 --stage3 1 --n-synthetic 60 --score-pairs 16)
  fi
fi
export BANIS_BIN=$bin
cubins() { # NVRTC modules in the kernel cache
  [ -n "${BANIS_KERNEL_CACHE:-}" ] && [ -d "$BANIS_KERNEL_CACHE" ] || { echo 0; return; }
  find "$BANIS_KERNEL_CACHE" -maxdepth 1 -name '*.cubin' | wc -l
}
cache_before=$(cubins)
device_name() { # what the programs say they run on
  grep -m1 -ohE '(NVIDIA [^(]*\(sm_[0-9]+, [0-9]+ SMs\)|emulated CUDA device \([^)]*\))' "$work"/logs/*.log 2>/dev/null | head -n 1
}

t_start=$SECONDS
summary=()
run() { # name limit command...
  local name=$1 limit=$2; shift 2
  local left=$((budget - (SECONDS - t_start)))
  if [ "$left" -lt 10 ]; then
    summary+=("$(printf '%-10s skipped: %ss of the %ss budget left' "$name" "$left" "$budget")")
    echo "=== $name: skipped, out of time"
    return
  fi
  limit=$((limit * scale))
  [ "$limit" -le "$left" ] || limit=$left
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=KILL "$limit" "$@" > "$work/logs/$name.log" 2>&1
  local rc=$? dt=$((SECONDS - t0))
  tail -n "${TAIL:-6}" "$work/logs/$name.log"
  local what=ok
  [ $rc -eq 0 ] || what="FAILED (exit $rc)"
  [ $rc -eq 137 ] && what="TIMED OUT after ${limit}s"
  summary+=("$(printf '%-10s %-22s %4ss  %s' "$name" "$what" "$dt" \
    "$(grep -E 'passed|ratio|step:|GMI on|Checks:|skipped|not installed|could not|graph launches each' "$work/logs/$name.log" | tail -n 3 | tr -s ' ' | tr '\n' ';')")")
}

banis_out=$work/banis-run
for s in "${steps[@]}"; do
  case $s in
    smi)
      if command -v nvidia-smi >/dev/null; then
        run smi 15 sh -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv && nvidia-smi'
      else
        run smi 15 sh -c 'echo "nvidia-smi: not here (skipped)"; uname -a; nproc'
      fi ;;
    parity64) run parity64 30 "$bin"/tools/cuda-parity --no-gradcheck ;;
    parity32) run parity32 30 "$bin"/tools/cuda-parity --dtype f32 ;;
    parity32x) run parity32x 30 env BANIS_ALLOW_TF32=0 "$bin"/tools/cuda-parity --dtype f32 ;;
    grad) run grad 40 "$bin"/tools/gradcheck --device cuda ;;
    graphs) run graphs 60 env CK_RUN_CASE=backend CK_DEFAULT_TIMEOUT=60 "$bin"/tests/test_cuda_emu ;;
    banis)
      rm -rf "$banis_out"
      run banis 215 "$bin"/banis-train --preset gpu-short --device cuda --out "$banis_out" \
        ${tiny_train[@]+"${tiny_train[@]}"}
      if [ -d "$banis_out" ]; then # what it wrote, less the checkpoints (~300 MB at full width)
        mkdir -p "$work/banis"
        cp "$banis_out"/gmi.md "$banis_out"/metrics.csv "$work/banis/" 2>/dev/null
        cp "$banis_out"/geometry.png "$banis_out"/samples/*.png "$work/banis/" 2>/dev/null
      fi ;;
    step) run step 60 bench/compare_step.sh --device cuda --reps 5 ${tiny_bench[@]+"${tiny_bench[@]}"} ;;
    nograph) run nograph 40 "$bin"/tools/banis-bench --device cuda --reps 3 --graphs off ${tiny_bench[@]+"${tiny_bench[@]}"} ;;
    conv) run conv 90 bench/compare.sh --device cuda ${tiny_bench[@]+"${tiny_bench[@]}"} ;;
    pipelined) run pipelined 45 env BANIS_CUDA_GEMM=pipelined "$bin"/tools/kernel-bench --device cuda ${tiny_bench[@]+"${tiny_bench[@]}"} ;;
    # the profile times each launch as the host issues it: graphs off
    profile) run profile 45 env BANIS_CUDA_PROFILE=1 "$bin"/tools/banis-bench --device cuda --reps 1 --graphs off ${tiny_bench[@]+"${tiny_bench[@]}"} ;;
  esac
done

cache_after=$(cubins)
dev=$(device_name)
{
  echo "gpu-check ($mode) on ${dev:-an unknown device}, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "total $((SECONDS - t_start)) s of a ${budget} s budget; kernel cache: ${cache_before} sm_90 modules carried, $((cache_after - cache_before)) compiled here"
  printf '%s\n' "${summary[@]}"
} > "$work/summary.txt"
{
  echo "# gpu-check on ${dev:-an unknown device}"
  echo
  echo '```'; cat "$work/summary.txt"; echo '```'
  for s in "${steps[@]}"; do
    [ -f "$work/logs/$s.log" ] || continue
    echo; echo "## $s"; echo; echo '```'; cat "$work/logs/$s.log"; echo '```'
  done
} > "$work/report.md"
cp "$work/summary.txt" "$work/report.md" "$out/"
tar czf "$out/gpu-check.tar.gz" -C "$work" logs summary.txt report.md $( [ -d "$work/banis" ] && echo banis)
rm -rf "$work"
echo "=== summary (also $out/summary.txt; everything in $out/gpu-check.tar.gz)"
cat "$out/summary.txt"
