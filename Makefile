# Two commands do all set-up on a fresh machine:
#   make demo   -> virtual environment, registry assets, then the Gradio app on the shipped checkpoints
#   make test   -> the same environment plus test tools, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint venv dev-venv assets pipeline

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -e .

dev-venv: venv
	$(BIN)/pip install -r requirements-dev.txt

assets: venv
	$(BIN)/python -m thinkrec fetch-assets

demo: assets
	$(BIN)/python app.py

test: dev-venv assets
	$(BIN)/python -m pytest

lint: dev-venv
	$(BIN)/python -m ruff check .

pipeline: assets
	$(BIN)/python -m thinkrec all
