# Two entry points: `make demo` (train -> export -> serve on the bundled digits) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[train,tflite,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnedge train
	$(BIN)/cnnedge export
	$(BIN)/cnnedge serve

# The browser test drives Debian's Chromium; install it when missing (CI runs as root).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) chromium lint
	$(BIN)/python -m pytest
