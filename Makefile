# The two entry points (see README): `make run` (set up, then the cpu-profile workflow) and
# `make test` (set up, then the test suite). Both create and reuse the local venv .venv.
VENV ?= .venv
CORES ?= 2
PROFILE ?= cpu
PY := $(VENV)/bin/python

.PHONY: run test test-quick test-cluster smoke lint benchmark schema docs clean-results chromium

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed  ## the main job: the whole workflow on the chosen profile
	$(VENV)/bin/snakemake --cores $(CORES) --profile profiles/$(PROFILE)

smoke: PROFILE = smoke
smoke: run

test: $(VENV)/.installed chromium  ## the test suite (includes the smoke workflow and snakemake --lint)
	GRAFTBENCH_REQUIRE_CHROMIUM=1 $(PY) -m pytest -q --durations=8

test-quick: $(VENV)/.installed  ## the tests that do not run Snakemake: a minute or two, for development
	$(PY) -m pytest -q -m "not workflow"

# A one-node SLURM cluster (scripts/slurm-cluster: Debian packages, root or sudo) started for
# the test and stopped after it; the smoke workflow through profiles/slurm (about 50 minutes on
# 2 cores, plus a local smoke run unless `make test` kept its tables for this same tree).
test-cluster: $(VENV)/.installed  ## the cluster path: tests/cluster on a SLURM cluster it starts
	$(PY) -m pytest -q -p no:cacheprovider tests/cluster

# Headless Chromium checks the HTML report in the tests; Debian's package, installed once
# (as root, or with sudo) when it is missing. `make test` requires it; a plain `pytest`
# without Chromium skips the report check.
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check graftbench tests benchmarks scorers
	$(VENV)/bin/ruff format --check graftbench tests benchmarks scorers
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(PY) -m pytest -q -p no:cacheprovider tests/test_workflow.py -k lint_is_clean  # snakemake --lint

benchmark: $(VENV)/.installed  ## sampler throughput and FLOP utilisation (BENCHMARKS.md)
	$(PY) benchmarks/sampler_throughput.py

# After `make run`: the cpu profile's tables and figures copied into docs/results/cpu (checked
# in), and the numbers of README.md and BENCHMARKS.md regenerated from them; a test checks
# that those files agree with the copy.
docs: $(VENV)/.installed  ## copy results/cpu's tables and figures to docs/, regenerate the docs' tables
	rm -rf docs/results/cpu && mkdir -p docs/results/cpu
	cp -r results/cpu/tables results/cpu/figures docs/results/cpu/
	$(PY) -m graftbench summary --tables docs/results/cpu/tables --profile cpu \
	  --update README.md --update BENCHMARKS.md

schema: $(VENV)/.installed  ## regenerate config/schema.yaml from the config dataclasses
	$(PY) -m graftbench schema --out config/schema.yaml
