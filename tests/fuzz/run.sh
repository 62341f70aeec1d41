#!/usr/bin/env bash
# Builds the image fuzzer with clang (libFuzzer + ASan + UBSan) and runs it for SECONDS
# (default 600) from the seed corpus (valid PNG and TIFF files). The harness needs only the
# image code and the paper's per-pair pipeline, so it links those files alone.
# Usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR]   (a test runs it for 20 s in CI)
# Needs: clang, libclang-rt-14-dev (or the runtime of your clang), libpng-dev, libtiff-dev.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
out=${2:-build-fuzz}
mkdir -p "$out/corpus"
srcs="tests/fuzz/fuzz_image.c banis/data/image.c banis/data/image_ops.c banis/data/pipeline.c
      tensor/error.c"
# shellcheck disable=SC2086
clang -g -O1 -D_GNU_SOURCE -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. $srcs -o "$out/fuzz_image" $(pkg-config --cflags --libs libpng libtiff-4) -lm -lpthread
[ -n "$(ls -A "$out/corpus")" ] || cp tests/fuzz/seeds/* "$out/corpus/"
"$out/fuzz_image" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
  "$out/corpus" > "$out/fuzz.log" 2>&1 || { tail -n 40 "$out/fuzz.log"; exit 1; }
grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$out/fuzz.log" || true
echo "fuzz: clean after ${secs} s ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/fuzz.log" | grep -o '[0-9]*$') executions)"
