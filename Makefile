# Quick start:  `make demo` (set up + main job)  and  `make test` (set up + tests).
# Torch's CPU wheel is installed before the package so pip never resolves a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/albert demo

test: setup
	$(VENV)/bin/ruff check albert tests benchmarks
	$(PY) -m pytest -q -ra

bench: setup
	$(PY) benchmarks/bench_model.py
