# Everything a fresh machine needs: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint codecs test-pythons dev-up dev-down clean screenshots jaeger

# Debian packages the tests use: bwrap (container isolation of tools), promtool (alert
# rules), chromium (the console's browser tests, driven by Playwright), podman with runc
# and debootstrap (the image test builds deploy/Dockerfile on a bootstrapped Debian base:
# /work/shared/CONTAINERS.md). Installed when missing and we may; otherwise the tests say so.
SYSTEM_PACKAGES := bubblewrap:bwrap prometheus:promtool chromium:chromium podman:podman buildah:buildah runc:runc debootstrap:debootstrap
# kustomize renders deploy/k8s in the tests; built from the Go module proxy into .tools/.
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := .tools/kustomize

$(VENV)/.installed: pyproject.toml setup.py $(wildcard streams/*.c native/*.h)
	@missing=""; for pair in $(SYSTEM_PACKAGES); do command -v $${pair#*:} >/dev/null || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
	      || echo "warning: could not install$$missing (the tests that need them will say so)"; \
	  else echo "warning: missing Debian packages:$$missing (install them for the isolation and alert tests)"; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,traces]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/taskplane demo

$(KUSTOMIZE):
	@if command -v go >/dev/null; then \
	  echo "building kustomize $(KUSTOMIZE_VERSION) into .tools/ (once)"; \
	  GOBIN="$(CURDIR)/.tools" go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION) \
	    || echo "warning: kustomize did not build (the manifest tests will say so)"; \
	else echo "warning: no Go toolchain: kustomize not built (the manifest tests will say so)"; fi

# The trace tests' collector: Jaeger built from the Go module proxy into the cache dir
# (once; minutes on a small host), before pytest so no test waits for it.
jaeger: $(VENV)/.installed
	@$(BIN)/python -m taskplane.devstack.jaeger || true

# Two pytest workers, each a whole file at a time (a module's plane is built once), each
# with its own broker and Postgres: most of the suite waits on brokers, processes and
# sleeps, not the CPU. The whole lane, load 0.5-11 on 2 shared cores: 910 s
# serial, 558 s and 577 s with two workers, no flake (PYTEST_WORKERS=0: one process).
PYTEST_WORKERS ?= 2
test: $(VENV)/.installed $(KUSTOMIZE) jaeger
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile
	$(MAKE) codecs

# The inner loop (at most 3 minutes): lint, types, import contracts, and the tests that need
# no broker, Postgres, image or wheel (unit, contract, replay/verify: tests/conftest.py marks
# any test that reaches the broker or Postgres through a fixture), each property on a fifth
# of its examples (make test runs them all).
CHECK_MARKERS := not kafka and not postgres and not image and not install
check: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	TASKPLANE_QUICK_PROPERTIES=1 $(BIN)/pytest -q -m "$(CHECK_MARKERS)"

# The C extension's other two checks: the pure-Python fallback (no extension) and an
# AddressSanitizer/UBSan build, each running its tests (docs/dependencies.md).
CODEC_TESTS := tests/streams/test_avro_codegen.py tests/streams/test_serde.py
codecs: $(VENV)/.installed
	$(BIN)/python scripts/without_native.py -q $(CODEC_TESTS)
	sh scripts/asan_codecs.sh $(BIN)/python

# Each supported CPython (3.11, 3.12, 3.13) builds the codec and runs its tests.
test-pythons:
	sh scripts/python_versions.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The console's screenshots in docs/console.md: the browser test run over the real
# stack, saving a picture of each page into docs/console/.
screenshots: $(VENV)/.installed
	TASKPLANE_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/pytest -q tests/e2e/test_console_browser_e2e.py

dev-up: $(VENV)/.installed
	$(BIN)/taskplane dev up

dev-down: $(VENV)/.installed
	$(BIN)/taskplane dev down

clean:
	rm -rf $(VENV) .venv-3.* .tools .mypy_cache .ruff_cache .pytest_cache
