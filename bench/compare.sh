#!/usr/bin/env bash
# On a GPU machine: our kernels (tools/kernel-bench) beside PyTorch's (cuDNN, TF32) on the same
# shapes, and the ratio PyTorch-time / our-time (>= 0.7 is the target: at least 0.7x cuDNN's speed).
set -euo pipefail
cd "$(dirname "$0")/.."
ours=$(build/tools/kernel-bench "$@")
theirs=$(python3 bench/conv_torch.py "$@")
echo "$ours"; echo; echo "$theirs"; echo
paste <(echo "$ours" | awk 'NR>1 && $0 ~ /(forward|backward)/ {print $(NF-2)}') \
      <(echo "$theirs" | awk 'NR>1 {print $(NF-1)}') |
  awk '{ printf "ratio (ours vs cuDNN speed): %.2f\n", $2 / $1 }'
