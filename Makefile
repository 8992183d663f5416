# yolocomp: `make reproduce` regenerates results/, `make test` runs the test suite.
# Both create .venv on first use. Variables: PROFILE (smoke|small|paper), ONLY (glob over notebook ids),
# JOBS (notebooks run in parallel), GPUS (e.g. 0,1: one GPU per job), TORCH_SPEC (pip spec for torch).

PYTHON      ?= python3
VENV        ?= .venv
PROFILE     ?= small
ONLY        ?= *
JOBS        ?= 1
GPUS        ?=
PYTEST_ARGS ?=
# The CPU machines hold these builds on local disk; on a GPU box pass the build matching its driver,
# e.g. `make setup TORCH_SPEC="torch torchvision"` inside an environment that already has them.
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.yolocomp-installed

.PHONY: setup reproduce test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC) || $(PY) -m pip install -q "torch>=2.4" "torchvision>=0.19"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

reproduce: $(STAMP)
	$(PY) -m yolocomp.workbook run --profile $(PROFILE) --only '$(ONLY)' --jobs $(JOBS) $(if $(GPUS),--gpus $(GPUS))

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check lib tests

clean:
	rm -rf results/runs .cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
