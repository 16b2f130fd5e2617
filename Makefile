# Two commands do everything (README):
#   make run    set up .venv/ and run the main job on the embedded default data
#   make test   set up .venv/ and run the test suite (what CI runs: .ci/run)
#   make test-fast   the same without the tests marked slow (seconds)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
CORES  ?= 2

.PHONY: setup run test test-fast lint clean-venv pipeline push pull

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

# The Snakemake + DVC pipeline (docs/PIPELINE.md). SET=smoke|digits|fashion|paper|folder
# overrides params.yaml's experiment_set.
PIPE_ENV := PATH="$(abspath $(BIN)):$$PATH" DVC_NO_ANALYTICS=1
SET_ARG  := $(if $(SET),--config experiment_set=$(SET),)

pipeline: setup
	$(PIPE_ENV) snakemake --cores $(CORES) all $(SET_ARG)

# record what the pipeline made in the .dvc files and the DVC cache, then upload it to the remote
push: setup
	$(PIPE_ENV) dvc commit -f
	$(PIPE_ENV) dvc push

# fetch data, checkpoints and results, then give them timestamps Snakemake accepts
pull: setup
	$(PIPE_ENV) dvc pull
	$(PIPE_ENV) workflow/scripts/restore-timestamps.sh $(SET_ARG)

clean-venv:
	rm -rf $(VENV)
