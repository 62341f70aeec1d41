#!/usr/bin/env bash
# The documentation holds: every relative link in README.md, CHANGELOG.md and docs/*.md points
# at a file or folder of the tree, README.md stays short, and the quick commands the README
# shows work as written: each program's --help, the tiny preset, banis-data synth.
# usage: test_docs.sh BUILD_DIR SOURCE_DIR TMP_DIR
set -uo pipefail
bin=$1 src=$2 tmp=$3
rm -rf "$tmp"; mkdir -p "$tmp"
fail() { echo "FAIL: $*"; exit 1; }
cd "$src" || exit 1
n=0
for f in README.md CHANGELOG.md docs/*.md; do
  dir=$(dirname "$f")
  for link in $(grep -o '](\([^)#]*\))' "$f" | sed 's/^](//; s/)$//' | grep -v '^[a-z]*://'); do
    [ -e "$dir/$link" ] || fail "$f links to $link, which is not there"
    n=$((n + 1))
  done
done
[ $n -ge 20 ] || fail "only $n links found: the check is not reading the files"
lines=$(wc -l < README.md)
[ "$lines" -le 220 ] || fail "README.md has $lines lines (a newcomer's ten minutes: about 200)"
for p in banis-train banis-sample tools/banis-data tools/banis-eval tools/banis-export tools/banis-bench examples/autoencoder; do
  "$bin/$p" --help > "$tmp/help.txt" 2>&1 || fail "$p --help exited non-zero"
  grep -qi "usage" "$tmp/help.txt" || fail "$p --help prints no usage"
done
for p in banis-train banis-sample banis-data banis-eval banis-export banis-bench; do
  grep -q "$p" README.md docs/*.md || fail "no guide mentions $p"
done
"$bin/banis-train" --preset tiny --device cpu --out "$tmp/tiny" > "$tmp/tiny.log" 2>&1 || fail "the tiny preset: $(tail -2 "$tmp/tiny.log")"
grep -q "^GMI on 8 test pairs" "$tmp/tiny.log" || fail "the tiny preset printed no GMI line"
"$bin/tools/banis-data" synth --n 8 --out "$tmp/synth" > "$tmp/synth.log" 2>&1 || fail "banis-data synth: $(tail -2 "$tmp/synth.log")"
[ -s "$tmp/synth/dataset.safetensors" ] && [ -s "$tmp/synth/contact_sheet.png" ] || fail "banis-data synth wrote no data set or contact sheet"
echo "docs: $n links resolve, README $lines lines, the quick commands run"
