# Two commands for a fresh machine: `make demo` (a small real sweep) and
# `make test` (the whole suite). Each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench experiments data install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

# Debian's package holds the real Fashion-MNIST (IDX files), read offline.
data:
	@if [ -z "$$FASHION_MNIST_DIR" ] && [ ! -f $(FMNIST) ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

demo: install data
	$(BIN)/explorer sweep spaces/quickstart.yaml --output runs/quickstart --resume --report

# Debian's Chromium: tests/test_browser.py opens the report in it, headless.
browser:
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# Two pytest workers: the end-to-end sweeps spend much of their time waiting on Ray
# and on child processes, which the other worker fills (docs/performance.md).
test: install data browser
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: install data
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/vs_pytorch.py
	$(BIN)/python benchmarks/fill_machine.py
	$(BIN)/python benchmarks/sweep_overhead.py

# The SqueezeNet studies (about 1.5 h on 2 cores); resumable.
experiments: install data
	experiments/squeezenet_dse/run.sh
	$(BIN)/python experiments/squeezenet_dse/summarize.py > experiments/squeezenet_dse/tables.md

lint: install
	$(BIN)/ruff check explorer tests benchmarks experiments

clean:
	rm -rf $(VENV) runs .pytest_cache
