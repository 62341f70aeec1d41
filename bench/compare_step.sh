#!/usr/bin/env bash
# One BANIS training step, ours (build/tools/banis-bench) beside PyTorch eager
# (bench/banis_step_torch.py: cuDNN, TF32 on) on the same device, batch and width, and the
# ratio our-time / PyTorch-time per step (target for the full step on a GPU: <= 0.8).
# Usage: bench/compare_step.sh [--device cuda|cpu] [--batch N] [--width F] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BANIS_BIN:-build} # the build folder (tools/gpu-check.sh points this at the carried one)
device=cuda
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --batch|--width|--reps) args+=("$1" "$2"); shift 2 ;;
    *) echo "usage: bench/compare_step.sh [--device cuda|cpu] [--batch N] [--width F] [--reps N]" >&2; exit 2 ;;
  esac
done
ours=$("$bin"/tools/banis-bench --device "$device" ${args[@]+"${args[@]}"})
echo "$ours"; echo
if [ -n "${BANIS_NO_TORCH:-}" ] || ! python3 -c 'import torch' 2>/dev/null; then
  echo "PyTorch: not installed here (or BANIS_NO_TORCH set): no reference, no ratio"
  exit 0
fi
tdev=$device
if [ "$device" = cuda ] && ! python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  tdev=cpu; echo "PyTorch sees no GPU: its step on the CPU instead (no ratio)"
fi
theirs=$(python3 bench/banis_step_torch.py --device "$tdev" ${args[@]+"${args[@]}"})
echo "$theirs"; echo
[ "$tdev" = "$device" ] || exit 0
for stage in warm-up full; do
  o=$(echo "$ours" | awk -v s="$stage" '$1 == s && $2 == "step:" {print $3}')
  t=$(echo "$theirs" | awk -v s="$stage" '$1 == s && $2 == "step:" {print $3}')
  awk -v s="$stage" -v o="$o" -v t="$t" \
    'BEGIN { printf "%-8s step: ours %.1f ms, PyTorch %.1f ms, ratio ours/PyTorch %.2f\n", s, o, t, o / t }'
done
om=$(echo "$ours" | awk '/^peak tensor memory:/ {print $4}')
tm=$(echo "$theirs" | awk '/^peak device memory:/ {print $4}')
[ -n "$om" ] && [ -n "$tm" ] && awk -v o="$om" -v t="$tm" \
  'BEGIN { printf "peak memory: ours %.1f MiB, PyTorch %.1f MiB, ratio ours/PyTorch %.2f\n", o, t, o / t }'
or=$(echo "$ours" | awk '/^peak RSS growth:/ {print $4}')
tr=$(echo "$theirs" | awk '/^peak RSS growth:/ {print $4}')
[ -n "$or" ] && [ -n "$tr" ] && awk -v o="$or" -v t="$tr" \
  'BEGIN { printf "peak RSS growth: ours %.1f MiB, PyTorch %.1f MiB, ratio ours/PyTorch %.2f\n", o, t, o / t }'
exit 0
