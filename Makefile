# One-command set-up on a fresh machine: `make demo`, `make test`.
# Creates .venv (Python 3.11) if absent; each install step is skipped when already done.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.canu-installed

# Dataset root of data / bench-video: ./datasets in this repository, or `make data DATA=/path`.
# Never taken from the environment: an exported DATA or FASTREID_DATASETS may hold other datasets.
ifneq ($(origin DATA),command line)
DATA := datasets
endif
ROOT := $(abspath $(DATA))

.PHONY: install demo test bench bench-video data clean-data gpu-check

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch/torchvision first (from the local wheel cache here), then the plugin (editable) with its
# run-time and test dependencies, then fastreid LAST and without its torch==1.13.1 pin: pip checks
# the installed packages' requirements on every install, and a fastreid already present would make
# it print "ERROR: fastreid 1.4.0 requires torch==1.13.1" (re-installs of the plugin pass
# --no-warn-conflicts for that one known, intended conflict).
$(STAMP): pyproject.toml setup.py | $(VENV)/bin/python
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install --no-warn-conflicts -e ".[cpu,test]"
	$(PY) -c "import fastreid" 2>/dev/null || $(PIP) install --no-deps fastreid==1.4.0
	touch $@

data: install
	$(PY) tools/make_synthetic.py --root $(ROOT)

# the benchmark's testbed made small (its data and pre-training under logs/demo/testbeds/)
demo: install
	$(PY) tools/demo.py

# the testbed (configs/synthetic/testbeds/detail-060.yml): every method x seeds, then the standard sweeps,
# two runs at once (resumable; its data and pre-training under results/testbeds/); BENCH_ARGS="--seeds 0 1 2 3" etc.
BENCH_TESTBED ?= configs/synthetic/testbeds/detail-060.yml
bench: install
	$(PY) tools/benchmark.py --testbed $(BENCH_TESTBED) --jobs 2 --standard-sweeps $(BENCH_ARGS)

# ACAN triplet / GRL / OCE / ACE on synthetic tracklets (SynthVidB, MARS layout), seeds 0 1 2: results/synthetic-video/
bench-video: install
	$(PY) tools/benchmark.py --setting synthetic-video --root $(ROOT) --eval-period 4 $(BENCH_ARGS)

test: install
	$(PY) -m pytest -q tests

# On a CUDA machine (no network needed once the wheels of docs/clustering.md "GPU check" are installed): CUDA tests,
# every method on CUDA with AMP, NCCL, clustering up to 1M, the evaluator -> results/gpu_check/.
# Uses .venv when there is one, else python3; without CUDA it runs at CPU sizes and says what it skipped.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) tools/gpu_check.py $(GPU_CHECK_ARGS)

clean-data:
	rm -rf $(ROOT)/SynthA $(ROOT)/SynthB $(ROOT)/SynthVidA $(ROOT)/SynthVidB
