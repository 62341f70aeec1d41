#!/usr/bin/env bash
# `meson install` into a temporary root, then what a user of the installed library does:
# compile examples/autoencoder.c with `pkg-config --cflags --libs banis` (shared, then static),
# run it, and use the installed programs. Every installed header must compile on its own.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
# (grep reads all of ldd's output, never -q: with pipefail, grep -q exiting at its first match
# can kill ldd with SIGPIPE and fail the pipeline at random)
build=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
fail() { echo "FAIL: $*" >&2; exit 1; }

meson install -C "$build" --no-rebuild --destdir "$work/root" --quiet >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "meson install"; }
pc=$(find "$work/root" -name banis.pc | head -n 1)
[ -n "$pc" ] || fail "no banis.pc installed"
prefix=$work/root$(sed -n 's/^prefix=//p' "$pc")
# the staged .pc, moved to where the files are (--define-variable would move libpng's too)
mkdir -p "$work/pc" && sed "s|^prefix=.*|prefix=$prefix|" "$pc" >"$work/pc/banis.pc"
export PKG_CONFIG_PATH=$work/pc
cfg() { pkg-config "$@" banis; }
libdir=$(cfg --variable=libdir)
[ -f "$libdir/libbanis.a" ] && [ -e "$libdir/libbanis.so" ] || fail "libbanis.a and libbanis.so in $libdir"
ok "library installed static and shared in ${libdir#$work/root}"
case " $(cfg --cflags) " in *" -I$prefix/include/banis "*) ;; *) fail "cflags: $(cfg --cflags)" ;; esac
ok "pkg-config --cflags: the headers' one folder"

# The shared library needs nothing of CUDA from its users: no CUDA symbol is exported, no CUDA
# runtime is a dependency (it is linked in statically; NVRTC is loaded by the library itself).
if nm -D --defined-only "$libdir/libbanis.so" | grep -E ' (cuda|cu)[A-Z]' >/dev/null; then
  fail "libbanis.so exports CUDA runtime symbols"
fi
if ldd "$libdir/libbanis.so" | grep libcudart >/dev/null; then fail "libbanis.so needs libcudart.so"; fi
ok "CUDA stays inside libbanis.so"

# Each public header compiles alone (it includes what it needs, and nothing that is not installed).
n=0
while IFS= read -r h; do
  rel=${h#$prefix/include/banis/}
  printf '#include "%s"\nint main(void) { return 0; }\n' "$rel" >"$work/one.c"
  cc -std=c11 -Wall -Werror $(cfg --cflags) -c "$work/one.c" -o "$work/one.o" || fail "header $rel does not compile alone"
  n=$((n + 1))
done < <(find "$prefix/include/banis" -name '*.h' | sort)
[ "$n" -ge 15 ] || fail "only $n headers installed"
ok "$n installed headers compile alone"

# The example against the installed shared library (not the build folder's).
cc -std=c11 -O2 "$src/examples/autoencoder.c" -o "$work/ae-shared" $(cfg --cflags) $(cfg --libs) \
  -Wl,-rpath,"$libdir" || fail "example does not compile against the installed shared library"
ldd "$work/ae-shared" | grep "$libdir/libbanis.so" >/dev/null || fail "example does not load the installed libbanis.so"
(cd "$work" && ./ae-shared --steps 12 --out shared.safetensors) >"$work/shared.log" ||
  { cat "$work/shared.log" >&2; fail "example (shared) did not learn or failed"; }
[ -s "$work/shared.safetensors" ] || fail "example (shared) wrote no checkpoint"
ok "examples/autoencoder.c built with pkg-config against libbanis.so, trained: $(grep -- '->' "$work/shared.log")"

# ... and statically: libbanis.a and its private libraries, no libbanis.so at run time.
cc -std=c11 -O2 "$src/examples/autoencoder.c" -o "$work/ae-static" $(cfg --cflags) \
  $(cfg --static --libs | sed "s|-lbanis|$libdir/libbanis.a|") || fail "example does not link statically"
if ldd "$work/ae-static" | grep libbanis >/dev/null; then fail "static example loads libbanis.so"; fi
(cd "$work" && ./ae-static --steps 12 --out static.safetensors) >"$work/static.log" ||
  { cat "$work/static.log" >&2; fail "example (static) failed"; }
cmp -s "$work/shared.safetensors" "$work/static.safetensors" || fail "shared and static builds trained differently"
ok "static build trains to the same bytes"

# The programs are installed and run from the prefix.
for p in banis-train banis-sample banis-data banis-eval banis-bench banis-export; do
  [ -x "$prefix/bin/$p" ] || fail "$p not installed"
  "$prefix/bin/$p" --help >/dev/null || fail "$p --help"
done
ok "programs installed in ${prefix#$work/root}/bin"
echo "$pass passed"
