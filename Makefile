# One-command set-up on a fresh machine: `make demo`, `make test`.
# Creates .venv (Python 3.11) if absent; each install step is skipped when already done.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.canu-installed
DATA   ?= datasets
export FASTREID_DATASETS ?= $(abspath $(DATA))

.PHONY: install demo test bench data clean-data gpu-check

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch/torchvision first (from the local wheel cache here), then fastreid without its
# torch==1.13.1 pin, then the plugin (editable) with its run-time and test dependencies.
$(STAMP): setup.py | $(VENV)/bin/python
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PY) -c "import fastreid" 2>/dev/null || $(PIP) install --no-deps fastreid==1.4.0
	$(PIP) install -e ".[cpu,test]"
	touch $@

data: install
	$(PY) tools/make_synthetic.py --root $(FASTREID_DATASETS)

demo: install
	$(PY) tools/demo.py --root $(FASTREID_DATASETS)

# every method x seeds on the synthetic pair (resumable); BENCH_ARGS="--seeds 0 1 2" etc.
bench: install
	$(PY) tools/benchmark.py --root $(FASTREID_DATASETS) $(BENCH_ARGS)

test: install
	$(PY) -m pytest -q tests

# On a CUDA machine (no network needed once the wheels of README "GPU check" are installed): CUDA tests,
# every method on CUDA with AMP, NCCL, clustering up to 1M, the evaluator -> results/gpu_check/.
# Uses .venv when there is one, else python3; without CUDA it runs at CPU sizes and says what it skipped.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) tools/gpu_check.py $(GPU_CHECK_ARGS)

clean-data:
	rm -rf $(DATA)/SynthA $(DATA)/SynthB
