#!/usr/bin/env bash
# CI: every C, header and CUDA source is as clang-format 14 leaves it (.clang-format: 100
# columns). Another major version formats some constructs differently (19 reports 5 changes on
# this tree), so the check uses version 14 only: clang-format-14 or clang-format of that
# version where the machine has one, else the PyPI wheel clang-format==14.0.6 installed into
# build/clang-format-14 (any machine with pip).
# To apply: git ls-files '*.c' '*.h' '*.cu' | xargs "$(tools/dev/check-format.sh --which)" -i
set -euo pipefail
cd "$(dirname "$0")/../.."
want=14
major() { "$1" --version 2>/dev/null | grep -o 'version [0-9]*' | grep -o '[0-9]*$' | head -1; }
cf=""
for c in clang-format-$want clang-format build/clang-format-$want/lib/clang_format/data/bin/clang-format; do
    if command -v "$c" >/dev/null 2>&1 && [ "$(major "$c")" = "$want" ]; then cf=$c; break; fi
done
if [ -z "$cf" ]; then
    echo "check-format: no clang-format $want here: installing the PyPI wheel clang-format==14.0.6 into build/clang-format-$want" >&2
    python3 -m pip install --quiet --target build/clang-format-$want/lib clang-format==14.0.6 >&2 || {
        echo "check-format: needs clang-format $want (apt-get install clang-format-14, or pip install clang-format==14.0.6)" >&2
        exit 1
    }
    cf=build/clang-format-$want/lib/clang_format/data/bin/clang-format
    [ "$(major "$cf")" = "$want" ] || { echo "check-format: the wheel's clang-format is not version $want" >&2; exit 1; }
fi
if [ "${1:-}" = "--which" ]; then echo "$cf"; exit 0; fi
files=$(git ls-files '*.c' '*.h' '*.cu')
"$cf" --dry-run --Werror $files
echo "check-format: $(echo "$files" | wc -l) files as clang-format $("$cf" --version | grep -o '[0-9][0-9.]*' | head -1) leaves them"
