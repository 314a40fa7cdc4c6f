# smfa: `make install` once (creates .venv), then `make demo` / `make test` / `make bench`.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
PIP     := $(VPY) -m pip
TORCH   := torch==2.13.0
STAMP   := $(VENV)/.installed
SOURCES := $(shell find csrc smfa_core \( -name '*.cpp' -o -name '*.h' -o -name '*.inc' -o -name '*.cu' \) -print 2>/dev/null) setup.py pyproject.toml

.PHONY: install demo test test-fast bench reproduce lint cuda-check clean

install: $(STAMP)

# torch goes in first and stays pinned in every later pip call: otherwise peft & co.
# resolve a multi-GB CUDA torch. The extension is built against that torch.
$(STAMP): $(SOURCES)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(TORCH)
	$(PIP) install -q $(TORCH) -e '.[test]' --no-build-isolation
	$(VPY) -c "import smfa_core; print('smfa backends:', smfa_core.available_backends())"
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m smfa_cli.demo

# The CUDA compile check (~20 s of one core) runs beside the suite, which is mostly one
# process: on 2 cores that keeps `make test` within ~5 minutes. Either failing fails the target.
test: $(STAMP)
	$(VPY) -m ruff check .
	@mkdir -p build; ( $(MAKE) --no-print-directory cuda-check > build/cuda-check.log 2>&1; echo $$? > build/cuda-check.rc ) & \
	  $(VPY) -m pytest -q -x tests; rc=$$?; wait; cat build/cuda-check.log; \
	  test $$rc -eq 0 && test "$$(cat build/cuda-check.rc)" = 0

# The same without the few slow end-to-end tests (marked `slow`): for the edit-test loop.
test-fast: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m pytest -q -x -m "not slow" tests

bench: $(STAMP)
	$(VPY) -m pytest benchmarks --benchmark-enable -q -s

# The paper end to end on this machine (~1 h on 2 cores, 2-5x that on slower machines): results/ is regenerated from it.
PRESET ?= cpu
SEED   ?= 0
reproduce: $(STAMP)
	$(VPY) -m smfa_cli.main reproduce --preset $(PRESET) --seed $(SEED) --out runs/reproduce-$(PRESET)-seed$(SEED) \
	  --publish results/$(PRESET)-seed$(SEED)

lint: $(STAMP)
	$(VPY) -m ruff check .

# Compile every CUDA kernel for sm_80 and sm_90 with the machine's nvcc, and the torch glue of
# the cuda backend (csrc/cuda_ops.cpp) against torch's CUDA headers (syntax only: CPU torch has
# no CUDA libraries to link). Nothing runs here; tests/core/test_cuda_emulated.py runs the kernels.
CUDA_INC ?= $(or $(CUDA_HOME),/usr/local/cuda)/include
cuda-check:
	@if command -v nvcc >/dev/null 2>&1 && ls csrc/cuda/*.cu >/dev/null 2>&1; then \
	  mkdir -p build/cuda-check && for f in csrc/cuda/*.cu; do \
	    for arch in 80 90; do \
	      nvcc -c -O3 --fmad=false -std=c++17 -arch=sm_$$arch -Xcompiler -fPIC $$f \
	        -o build/cuda-check/$$(basename $$f .cu).sm_$$arch.o || exit 1; \
	    done; echo "cuda-check: $$f ok (sm_80, sm_90)"; done; \
	  if [ -x $(VPY) ] && [ -f $(CUDA_INC)/cuda_runtime_api.h ]; then \
	    $${CXX:-g++} -std=c++17 -fsyntax-only -Wall -Wno-c++20-extensions -DSMFA_WITH_CUDA \
	      -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE -I$(CUDA_INC) -Icsrc \
	      $$($(VPY) -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))") \
	      csrc/cuda_ops.cpp || exit 1; echo "cuda-check: csrc/cuda_ops.cpp ok (torch CUDA glue, syntax)"; \
	  else echo "cuda-check: csrc/cuda_ops.cpp skipped (no $(VPY) or no $(CUDA_INC)/cuda_runtime_api.h)"; fi; \
	else echo "cuda-check: skipped (no nvcc or no csrc/cuda/*.cu)"; fi

clean:
	rm -rf build *.egg-info smfa_core/_C*.so .pytest_cache
