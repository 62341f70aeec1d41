#!/usr/bin/env bash
# Builds the image fuzzer with clang (libFuzzer + ASan + UBSan) and runs it for SECONDS
# (default 600) from a seed corpus of valid PNG and TIFF files made by the test suite.
# Needs: clang, libclang-rt-14-dev (or the runtime of your clang).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
out=build-fuzz
mkdir -p "$out/corpus"
srcs="tests/fuzz/fuzz_image.c banis/data/*.c tensor/*.c
      autograd/autograd.c ops/*.c ops/cpu/*.c ops/cuda/cuda_unavailable.c nn/*.c"
clang -g -O1 -D_GNU_SOURCE -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. $srcs -o "$out/fuzz_image" $(pkg-config --cflags --libs libpng libtiff-4) -lm -lpthread
# seeds: a few valid files of each kind
[ -n "$(ls -A "$out/corpus")" ] || cp tests/fuzz/seeds/* "$out/corpus/" 2>/dev/null || true
"$out/fuzz_image" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 "$out/corpus" 2>&1 | tail -n 25
