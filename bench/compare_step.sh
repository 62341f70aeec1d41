#!/usr/bin/env bash
# One BANIS training step, ours (build/tools/banis-bench) beside PyTorch eager
# (bench/banis_step_torch.py: cuDNN, TF32 on) on the same device, batch and width, and the
# ratio our-time / PyTorch-time per step (target for the full step on a GPU: <= 0.8).
# Usage: bench/compare_step.sh [--device cuda|cpu] [--batch N] [--width F] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --batch|--width|--reps) args+=("$1" "$2"); shift 2 ;;
    *) echo "usage: bench/compare_step.sh [--device cuda|cpu] [--batch N] [--width F] [--reps N]" >&2; exit 2 ;;
  esac
done
ours=$(build/tools/banis-bench --device "$device" ${args[@]+"${args[@]}"})
theirs=$(python3 bench/banis_step_torch.py --device "$device" ${args[@]+"${args[@]}"})
echo "$ours"; echo; echo "$theirs"; echo
for stage in warm-up full; do
  o=$(echo "$ours" | awk -v s="$stage" '$1 == s && $2 == "step:" {print $3}')
  t=$(echo "$theirs" | awk -v s="$stage" '$1 == s && $2 == "step:" {print $3}')
  awk -v s="$stage" -v o="$o" -v t="$t" \
    'BEGIN { printf "%-8s step: ours %.1f ms, PyTorch %.1f ms, ratio ours/PyTorch %.2f\n", s, o, t, o / t }'
done
