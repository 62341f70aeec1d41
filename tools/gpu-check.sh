#!/usr/bin/env bash
# One call on a GPU machine: every CUDA check and the side-by-side benchmarks against PyTorch,
# each step under its own time limit so one hang does not cost the rest. Logs go to $OUT (or
# ./gpu-logs). Usage (on the GPU machine, the build carried with ../shared/gpu/bundle-libs):
#   tools/gpu-check.sh [STEP ...]     steps: smi parity64 parity32 parity32x grad step nograph profile conv
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-logs}; mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export BANIS_KERNEL_CACHE=${BANIS_KERNEL_CACHE:-/tmp/banis-kernels}
export PYTHONUNBUFFERED=1
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(smi parity64 parity32 parity32x grad step nograph profile conv)
summary=()
run() { # name limit command...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name: $* (limit ${limit}s)"
  timeout --signal=KILL "$limit" "$@" > "$out/$name.log" 2>&1; local rc=$?
  local dt=$((SECONDS - t0))
  tail -n ${TAIL:-12} "$out/$name.log"
  summary+=("$(printf '%-10s rc=%-3s %5ss  %s' "$name" "$rc" "$dt" "$(grep -E 'passed|ratio' "$out/$name.log" | tail -n 2 | tr '\n' ' ')")")
}
for s in "${steps[@]}"; do
  case $s in
    smi) run smi 20 nvidia-smi ;;
    parity64) run parity64 ${LIMIT_PARITY:-60} build/tools/cuda-parity --no-gradcheck ;;
    parity32) run parity32 ${LIMIT_PARITY:-45} build/tools/cuda-parity --dtype f32 ;;
    parity32x) BANIS_ALLOW_TF32=0 run parity32x ${LIMIT_PARITY:-45} build/tools/cuda-parity --dtype f32 ;;
    grad) run grad ${LIMIT_GRAD:-120} build/tools/gradcheck --device cuda ;;
    step) run step ${LIMIT_STEP:-150} bench/compare_step.sh --device cuda --reps 3 ;;
    nograph) run nograph ${LIMIT_STEP:-150} build/tools/banis-bench --device cuda --reps 3 --graphs off ;;
    # the profile times each launch as the host issues it: graphs off
    profile) BANIS_CUDA_PROFILE=1 run profile ${LIMIT_PROFILE:-90} build/tools/banis-bench --device cuda --reps 1 --graphs off ;;
    conv) run conv ${LIMIT_CONV:-60} bench/compare.sh ;;
    *) echo "unknown step $s"; exit 2 ;;
  esac
done
echo "=== summary"; printf '%s\n' "${summary[@]}"
