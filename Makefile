# Every target sets up .venv first, so a fresh clone needs nothing but python3 and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The pinned CPU build is installed before the project so that the open torch range in
# pyproject.toml is already satisfied (no CUDA wheels pulled). Override for GPU machines,
# e.g. make TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>" test
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run test bench reference lint typecheck clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,parquet,slurm]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/prec-study run --bits 4

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check precision training hpcprof tests benchmarks
	$(VENV)/bin/ruff format --check precision training hpcprof tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# Regenerate the committed reference outputs quoted in the README.
reference: $(STAMP)
	$(PY) scripts/training_reference.py
	$(PY) scripts/hpcprof_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
