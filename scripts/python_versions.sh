#!/bin/sh
# The supported CPython versions (pyproject.toml requires-python and classifiers): for
# each, a venv .venv-<version> with the dev install (which builds the C codec for that
# interpreter), then the codec tests, native and pure Python.
#   scripts/python_versions.sh [VERSION ...]    (default: 3.11 3.12 3.13)
set -eu
for version in ${*:-3.11 3.12 3.13}; do
  venv=.venv-$version
  if [ ! -x "$venv/bin/python" ]; then
    interpreter=$(command -v pyenv >/dev/null && \
      PYENV_VERSION=$(pyenv versions --bare | grep "^$version" | tail -1) pyenv which "python$version" 2>/dev/null \
      || command -v "python$version")
    "$interpreter" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet -e '.[dev]'
  fi
  "$venv/bin/python" -c "import sys; from taskplane.streams._avro_codegen import native_available; \
assert native_available(), 'C codec not built for ' + sys.version; print(sys.version.split()[0], 'native codec built')"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/streams/test_avro_codegen.py tests/streams/test_serde.py
done
