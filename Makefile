# Everything a new machine needs, idempotently: `make demo` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist
OUT ?= results/quick

.PHONY: setup data demo test soak bench gpu-check clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=/path/to/python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST, the real data set that works offline (Debian's dataset-fashion-mnist package).
data:
	@if [ -d $(FASHION) ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null || \
		echo "warning: could not install dataset-fashion-mnist; fashion_mnist trials need --data-root"; \
	else echo "note: $(FASHION) missing; run 'sudo apt-get install dataset-fashion-mnist' for Fashion-MNIST"; fi

# The main job: the quick sweep on real Fashion-MNIST (resumes if interrupted), then figures and report.
demo: setup
	$(BIN)/sensitivity sweep quick --out $(OUT)
	$(BIN)/sensitivity analyze $(OUT) --out $(OUT)/report

bench: setup
	$(BIN)/python benchmarks/run_all.py

# On a machine with a CUDA GPU, from the checkout as it is (no setup: the machine's own Python and torch, or
# .venv's if there is one): every GPU check in one run, results in results/gpu_check.json (benchmarks/gpu_check.py).
gpu-check:
	PYTHON=$$(test -x $(BIN)/python && echo $(BIN)/python || echo python3) sh benchmarks/gpu_check.sh \
		--data-root $$(test -d data/fashion-mnist && echo data/fashion-mnist || echo $(FASHION)) --out results/gpu_check.json

soak: setup
	$(BIN)/python -m pytest -q -m soak tests

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results .pytest_cache
