#!/usr/bin/env bash
# One call on a GPU machine: every CUDA check and the side-by-side benchmarks against PyTorch,
# each step under its own time limit so one hang does not cost the rest. Logs go to $OUT (or
# ./gpu-logs). Usage (on the GPU machine, the build carried with ../shared/gpu/bundle-libs):
#   tools/gpu-check.sh [STEP ...]     steps: smi parity64 parity32 parity32x grad step conv
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-logs}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export BANIS_KERNEL_CACHE=${BANIS_KERNEL_CACHE:-/tmp/banis-kernels}
export PYTHONUNBUFFERED=1
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(smi parity64 parity32 parity32x step conv)
summary=()
run() { # name limit command...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name: $* (limit ${limit}s)"
  timeout --signal=KILL "$limit" "$@" > "$out/$name.log" 2>&1; local rc=$?
  local dt=$((SECONDS - t0))
  tail -n 25 "$out/$name.log"
  summary+=("$(printf '%-10s rc=%-3s %5ss  %s' "$name" "$rc" "$dt" "$(grep -E 'passed|ratio' "$out/$name.log" | tail -n 2 | tr '\n' ' ')")")
}
for s in "${steps[@]}"; do
  case $s in
    smi) run smi 20 nvidia-smi ;;
    parity64) run parity64 ${LIMIT_PARITY:-100} build/tools/cuda-parity --no-gradcheck ;;
    parity32) run parity32 ${LIMIT_PARITY:-80} build/tools/cuda-parity --dtype f32 ;;
    parity32x) BANIS_ALLOW_TF32=0 run parity32x ${LIMIT_PARITY:-60} build/tools/cuda-parity --dtype f32 ;;
    grad) run grad ${LIMIT_GRAD:-120} build/tools/gradcheck --device cuda ;;
    step) run step ${LIMIT_STEP:-180} bench/compare_step.sh --device cuda --reps 3 ;;
    conv) run conv ${LIMIT_CONV:-80} bench/compare.sh ;;
    *) echo "unknown step $s"; exit 2 ;;
  esac
done
echo "=== summary"; printf '%s\n' "${summary[@]}"
