#!/usr/bin/env bash
# Installs the build and test dependencies from Debian's packages when they are missing.
set -euo pipefail
need=()
command -v meson >/dev/null || need+=(meson)
command -v ninja >/dev/null || need+=(ninja-build)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cc >/dev/null || need+=(gcc)
command -v c++ >/dev/null || need+=(g++) # the emulated CUDA device compiles kernels as host C++
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
pkg-config --exists check 2>/dev/null || need+=(check)
pkg-config --exists libpng 2>/dev/null || need+=(libpng-dev)
pkg-config --exists libtiff-4 2>/dev/null || need+=(libtiff-dev)
pkg-config --exists zlib 2>/dev/null || need+=(zlib1g-dev)
command -v clang >/dev/null || need+=(clang) # the fuzz test's libFuzzer build
[ -n "$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] ||
  need+=(libclang-rt-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Python's reference safetensors package, for the interop test.
if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
  python3 -m pip install -q safetensors numpy 2>/dev/null ||
    python3 -m pip install -q --break-system-packages safetensors numpy
fi
