# Everything a fresh machine needs: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint dev-up dev-down clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/taskplane demo

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

dev-up: $(VENV)/.installed
	$(BIN)/taskplane dev up

dev-down: $(VENV)/.installed
	$(BIN)/taskplane dev down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
