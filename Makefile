# astrobio — the two commands: `make run` and `make test`.
# Both create .venv when it is missing; a second call reinstalls nothing (stamp file).
# On a pod, keep its CUDA build of torch:  make run TORCH_SPEC="torch==2.13.0 --index-url <your wheel index>"
# or TORCH_SPEC= (empty) to let pip resolve torch itself.

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
PARAMS      ?= params/smoke.yaml
RUN         ?= smoke
PIPELINE_ARGS ?=
NBMAKE_TIMEOUT ?= 1800

BIN   := $(VENV)/bin
STAMP := $(VENV)/.astrobio-installed
NB_PY := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NB_IPYNB := $(NB_PY:.py=.ipynb)

.PHONY: run test unit nbmake notebooks lab venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(strip $(TORCH_SPEC))" ]; then \
	  echo "== installing $(TORCH_SPEC) first"; $(BIN)/pip install --quiet $(TORCH_SPEC); fi
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

# The .py percent files are the source; the .ipynb twins are generated and git-ignored.
notebooks/%.ipynb: notebooks/%.py $(STAMP)
	@$(BIN)/jupytext --quiet --sync $<
	@touch $@

notebooks: $(NB_IPYNB)

run: $(STAMP) notebooks
	$(BIN)/python -m astrobio_lib.pipeline $(PARAMS) --run-name $(RUN) $(PIPELINE_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest

# nbmake runs every notebook on its default (CPU smoke) parameters, in order, into a fresh run folder.
nbmake: $(STAMP) notebooks
	rm -rf outputs/notebook_defaults
	$(BIN)/python -m pytest --nbmake --nbmake-timeout=$(NBMAKE_TIMEOUT) $(NB_IPYNB)

test: unit nbmake

lab: $(STAMP) notebooks
	$(BIN)/jupyter lab --notebook-dir=.

clean-venv:
	rm -rf $(VENV)
