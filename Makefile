# Two commands do everything (README):
#   make run    set up .venv/ and run the main job on the embedded default data
#   make test   set up .venv/ and run the test suite (what CI runs: .ci/run)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
CORES  ?= 2

.PHONY: setup run test lint clean-venv

setup: $(STAMP)

# Exact pins (torch and torchvision as a working pair) live in requirements.lock.
$(STAMP): requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, torchvision, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	rm -f $(VENV)/.installed-* && touch $@

run: setup
	$(BIN)/scl train --dataset digits --variant scl --seed 0

test: setup
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
