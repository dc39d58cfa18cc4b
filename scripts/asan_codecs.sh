#!/bin/sh
# The codec tests against an AddressSanitizer + UBSan build of the C Avro codec, in a
# throwaway copy of the tree (the normal build is left alone). Memory errors (use after
# free, overflows, bad refcount frees that touch freed memory) abort the run.
#   scripts/asan_codecs.sh [PYTHON]     (default .venv/bin/python; a venv python, not resolved)
set -eu
ROOT=$(pwd)
PYTHON=${1:-.venv/bin/python}
case $PYTHON in /*) ;; *) PYTHON=$ROOT/$PYTHON ;; esac
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
git ls-files -z | xargs -0 tar -cf - --no-recursion | tar -xf - -C "$WORK"
cd "$WORK"
CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
LDFLAGS="-fsanitize=address,undefined" \
  "$PYTHON" setup.py -q build_ext --inplace >/dev/null
test -n "$(ls streams/_avro_native*.so)"
# Python's allocator hides small-object misuse from ASan; the leak checker reports the
# interpreter's own never-freed objects, so it stays off. Each property on a fifth of its
# examples: the main lane runs them all against the same C code (here they took 100 s of
# the 15 minutes CI has).
TASKPLANE_QUICK_PROPERTIES=1 PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
  "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/streams/test_avro_codegen.py tests/streams/test_serde.py
echo "asan: codec tests passed under AddressSanitizer (built from $ROOT)"
