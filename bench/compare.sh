#!/usr/bin/env bash
# BANIS's ops one by one: ours (tools/kernel-bench) beside PyTorch eager (bench/ops_torch.py) on
# the same device and shapes, in one run, and per op the ratio our-time / PyTorch-time (< 1: ours
# is faster). On the CPU, also each of ours as a fraction of the machine's measured FP32 peak.
# Usage: bench/compare.sh [--device cpu|cuda] [--batch N] [--width F] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BANIS_BIN:-build} # the build folder (tools/gpu-check.sh points this at the carried one)
ours=$("$bin"/tools/kernel-bench "$@")
if [ -n "${BANIS_NO_TORCH:-}" ] || ! python3 -c 'import torch' 2>/dev/null; then
  echo "$ours"; echo "PyTorch: not installed here (or BANIS_NO_TORCH set): no reference, no ratio"
  exit 0
fi
theirs=$(python3 bench/ops_torch.py "$@")
echo "$ours" | head -n 2
echo "$theirs" | head -n 1
printf '\n%-28s %-8s %10s %10s %8s\n' op pass "ours ms" "torch ms" ratio
# rows are "name... pass ms rate unit [peak%]"; join on name + pass
awk 'NR == FNR { if (match($0, / (forward|dx|dw|backward|step) +[0-9.]+ /)) {
                   key = substr($0, 1, RSTART); sub(/ +$/, "", key)
                   split(substr($0, RSTART + 1), f, / +/); t[key " " f[1]] = f[2] }
                 next }
     match($0, / (forward|dx|dw|backward|step) +[0-9.]+ /) {
       key = substr($0, 1, RSTART); sub(/ +$/, "", key)
       split(substr($0, RSTART + 1), f, / +/)
       k = key " " f[1]
       if (k in t) printf "%-28s %-8s %10.3f %10.3f %8.2f\n", key, f[1], f[2], t[k], f[2] / t[k] }' \
  <(echo "$theirs") <(echo "$ours")
