#!/usr/bin/env bash
# The test command: builds (release and sanitizer builds) and runs every suite in both (the
# emulated CUDA device's suite in the release build only: its fibers switch stacks under
# AddressSanitizer's feet, and its kernels are compiled apart from the sanitized build; the install
# test likewise, as it links an uninstrumented example against the installed library).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
[ -d build ] || meson setup build
ninja -C build
meson test -C build --print-errorlogs
[ -d build-asan ] || meson setup build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-asan
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
  meson test -C build-asan --print-errorlogs --no-suite gpu-compile --no-suite cuda-emu --no-suite install
