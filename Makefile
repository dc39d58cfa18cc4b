# Everything a fresh machine needs: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint dev-up dev-down clean screenshots

# Debian packages the tests use: bwrap (container isolation of tools), promtool
# (alert rules) and chromium (the console's browser tests, driven by Playwright).
# Installed when missing and we may; otherwise the tests say so.
SYSTEM_PACKAGES := bubblewrap:bwrap prometheus:promtool chromium:chromium

$(VENV)/.installed: pyproject.toml setup.py $(wildcard streams/*.c processors/*.c native/*.h)
	@missing=""; for pair in $(SYSTEM_PACKAGES); do command -v $${pair#*:} >/dev/null || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
	      || echo "warning: could not install$$missing (the tests that need them will say so)"; \
	  else echo "warning: missing Debian packages:$$missing (install them for the isolation and alert tests)"; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/taskplane demo

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
