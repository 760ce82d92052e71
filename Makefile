# One-command set-up on a fresh machine: `make demo`, `make test`.
# Creates .venv (Python 3.11) if absent; each install step is skipped when already done.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.canu-installed
DATA   ?= datasets
export FASTREID_DATASETS ?= $(abspath $(DATA))

.PHONY: install demo test bench bench-video data clean-data

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

# ACAN triplet / GRL / OCE / ACE on synthetic tracklets (SynthVidB, MARS layout), seeds 0 1: results/synthetic-video/
bench-video: install
	$(PY) tools/benchmark.py --setting synthetic-video --root $(FASTREID_DATASETS) --eval-period 4 $(BENCH_ARGS)

test: install
	$(PY) -m pytest -q tests

clean-data:
	rm -rf $(DATA)/SynthA $(DATA)/SynthB $(DATA)/SynthVidA $(DATA)/SynthVidB
