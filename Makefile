# Quick start: `make demo` then `make test`. Both set up what is missing first.
VENV ?= .venv
export VAAR_VENV := $(abspath $(VENV))
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test image-test lint bench clean

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

demo: setup
	@$(VENV)/bin/vaar run data/examples/demo.toml

test: setup-test
	@$(PY) -m pytest -q $(PYTEST_ARGS)

# The Docker image built and run for real (podman from Debian, as root): scripts/image-test.sh
image-test: setup
	@bash scripts/image-test.sh

lint: setup-test
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup-test
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf reports/*/ .pytest_cache
