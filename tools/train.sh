#!/usr/bin/env bash
# The main job in one command on a fresh Debian machine: installs what the build needs, builds,
# and runs banis-train (default: the built-in synthetic embryos, the preset that suits the
# machine). Extra arguments go to banis-train, e.g. tools/train.sh --preset paper --out runs/p
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
[ -d build ] || meson setup build
ninja -C build
exec ./build/banis-train "$@"
