# Two commands do everything (README):
#   make run    set up .venv/ and run the main job on the embedded default data
#   make test   set up .venv/ and run the test suite (what CI runs: .ci/run)
#   make test-fast   the same without the tests marked slow (seconds)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
CORES  ?= 2

.PHONY: setup run test test-fast test-slurm lint clean-venv pipeline push pull gpu-check gpu-wheels

setup: $(STAMP)

# Exact pins (torch and torchvision as a working pair) live in requirements.lock.
$(STAMP): requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, torchvision, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	rm -f $(VENV)/.installed-* && touch $@

# the main job: the experiment set named in params.yaml (digits: the whole paper programme
# in miniature, Tables 1-3 and Figures 3-6), then the tables are printed
run: pipeline
	@set_name=$(or $(SET),$$($(BIN)/python -c 'import yaml; print(yaml.safe_load(open("params.yaml"))["experiment_set"])')); \
	for t in results/tables/$$set_name/table*.md; do echo; cat $$t; done

test: setup
	$(BIN)/python -m pytest -q

# no training runs, no pipeline: the unit tests (tests marked @pytest.mark.slow left out)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# the smoke set through a real single-node SLURM cluster (tests/slurm_cluster.py brings it up
# and down; needs root). Installs slurm-wlm and munge from Debian when they are missing; the
# test says why it is skipped where SLURM cannot start.
test-slurm: setup
	@if ! command -v slurmctld >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then 	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && 	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 	  || echo "test-slurm: could not install slurm-wlm/munge; the SLURM test will be skipped"; fi
	$(BIN)/python -m pytest -q -rs -m slurm tests/test_pipeline.py

# The Snakemake + DVC pipeline (docs/PIPELINE.md). SET=smoke|digits|fashion|paper|folder
# overrides params.yaml's experiment_set.
PIPE_ENV := PATH="$(abspath $(BIN)):$$PATH" DVC_NO_ANALYTICS=1
SET_ARG  := $(if $(SET),--config experiment_set=$(SET),)

pipeline: setup
	$(PIPE_ENV) snakemake --cores $(CORES) all $(SET_ARG)

# REMOTE=NAME: a remote named in .dvc/config or .dvc/config.local (a folder, ssh://, s3://,
# http(s):// for pulling); without it, DVC's default remote (core.remote)
REMOTE_ARG := $(if $(REMOTE),--remote $(REMOTE),)

# record what the pipeline made in the .dvc files and the DVC cache, then upload it to the remote
push: setup
	$(PIPE_ENV) dvc commit -f
	$(PIPE_ENV) dvc push $(REMOTE_ARG)

# fetch data, checkpoints and results, then give them timestamps Snakemake accepts
pull: setup
	$(PIPE_ENV) dvc pull $(REMOTE_ARG)
	$(PIPE_ENV) workflow/scripts/restore-timestamps.sh $(SET_ARG)

clean-venv:
	rm -rf $(VENV)

# The GPU path in one command (README, "On a GPU"): CUDA tests, the device's bf16 matmul
# peak, scl bench for ResNet-18/34 at 32 px (batch 256/512, compile off/on) and a few
# minutes of Fashion-MNIST training, within 10 minutes; JSON to results/bench/. Runs with
# the machine's own python3 + PyTorch and PYTHONPATH=. (no .venv, no internet); what that
# python lacks (jsonschema and its dependencies) comes from the wheels `make gpu-wheels`
# puts in .whl/ (carry that folder, and data/prepared/fashion.npz, to the GPU machine).
GPU_PYTHON ?= python3
GPU_SITE   ?= /tmp/scl-site
GPU_WHEELS := jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1

gpu-check:
	@$(GPU_PYTHON) -c "import jsonschema" 2>/dev/null || { \
	  test -n "$$(ls .whl/*.whl 2>/dev/null)" || { echo "gpu-check: jsonschema is missing and .whl/ holds no wheels: run 'make gpu-wheels' where pip works and carry .whl"; exit 2; }; \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl; }
	PYTHONPATH=.:$(GPU_SITE) PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m scl.gpucheck

# the pure-Python wheels gpu-check may need on a GPU image (Python 3.12, x86-64), into .whl/ (git-ignored)
gpu-wheels:
	$(BIN)/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl $(GPU_WHEELS)
