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
	@# Prometheus (Debian's package) for the metrics test; without root or apt the test skips.
	@command -v prometheus >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends prometheus; } >/dev/null 2>&1; } \
		|| echo "note: prometheus not installed: tests/e2e/test_prometheus_metrics.py will skip"
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
