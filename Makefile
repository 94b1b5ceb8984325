# Two entry points for users: `make demo` (set up + train) and `make test` (set up + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/inductor
export MPLBACKEND := Agg

.PHONY: setup demo test test-slow bench lint
BENCH_ENV := $(if $(BENCH_THREADS),OMP_NUM_THREADS=$(BENCH_THREADS))

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/fastmotive train --arch efficientnet_b0:b2 --output runs

test: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -q

test-slow: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m slow

# BENCH_THREADS=1 on a machine shared with other jobs: two torch threads per process then thrash the cores
bench: setup
	$(BENCH_ENV) $(PY) -m pytest benchmarks -q --benchmark-enable --benchmark-only \
		--benchmark-json=benchmarks/results/bench.json --benchmark-columns=median,iqr,rounds --benchmark-sort=name
	$(BENCH_ENV) $(PY) benchmarks/overhead.py --json benchmarks/results/overhead.json
	$(BENCH_ENV) $(PY) benchmarks/optimizer_step.py --json benchmarks/results/optimizer_step.json
	$(BENCH_ENV) $(PY) benchmarks/logging_cost.py --json benchmarks/results/logging_cost.json
	$(BENCH_ENV) $(PY) benchmarks/switch_latency.py --json benchmarks/results/switch_latency.json
	$(BENCH_ENV) $(PY) benchmarks/loaders.py --json benchmarks/results/loaders.json

lint: setup
	$(VENV)/bin/ruff check fastmotive kernels benchmarks tests
