# Legation: `make demo` runs the shop demo, `make test` runs every test.
# Both create the virtualenv and install everything on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint golden bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/legation demo $(if $(DURATION),--duration $(DURATION),)

test: install
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check legation tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy benchmarks

golden: install
	$(VENV)/bin/pytest -q tests/golden --update-golden

bench: install
	$(PY) -m benchmarks.run --output bench-results.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
