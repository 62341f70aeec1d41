#!/usr/bin/env bash
# CI: every C, header and CUDA source is as clang-format leaves it (.clang-format: 100 columns).
# To apply: git ls-files '*.c' '*.h' '*.cu' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v clang-format >/dev/null; then
    echo "check-format: clang-format is not installed (apt-get install clang-format)" >&2
    exit 1
fi
files=$(git ls-files '*.c' '*.h' '*.cu')
clang-format --dry-run --Werror $files
echo "check-format: $(echo "$files" | wc -l) files as clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -1) leaves them"
