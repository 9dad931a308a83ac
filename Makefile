# The two entry points (see README): `make run` (set up, then the cpu-profile workflow) and
# `make test` (set up, then the test suite). Both create and reuse the local venv .venv.
VENV ?= .venv
CORES ?= 2
PROFILE ?= cpu
PY := $(VENV)/bin/python

.PHONY: run test smoke lint benchmark schema clean-results

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed  ## the main job: the whole workflow on the chosen profile
	$(VENV)/bin/snakemake --cores $(CORES) --profile profiles/$(PROFILE)

smoke: PROFILE = smoke
smoke: run

test: $(VENV)/.installed  ## the test suite (includes the smoke workflow and snakemake --lint)
	$(PY) -m pytest -q --durations=8

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check graftbench tests benchmarks
	$(VENV)/bin/ruff format --check graftbench tests benchmarks
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/snakemake --lint

benchmark: $(VENV)/.installed  ## sampler throughput and FLOP utilisation (BENCHMARKS.md)
	$(PY) benchmarks/sampler_throughput.py

schema: $(VENV)/.installed  ## regenerate config/schema.yaml from the config dataclasses
	$(PY) -m graftbench schema --out config/schema.yaml
