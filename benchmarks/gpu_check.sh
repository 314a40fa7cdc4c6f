#!/usr/bin/env bash
# One prepared check for a lent GPU machine (H200): build smfa_core._C with the CUDA kernels,
# run the GPU kernel tests (cuda + triton compiled, no interpreter), measure bandwidth against a
# device-to-device copy. Runs in the repository root; well under 10 minutes.
#   bash benchmarks/gpu_check.sh            (results also under $OUT, or /tmp/smfa-gpu-check)
# No network there: nothing is pip-installed. It uses the python that has a CUDA torch
# ($PY, else .venv-gpu/bin/python, else python3) and builds in place (setup.py build_ext).
set -u
cd "$(dirname "$0")/.."
RES=${OUT:-/tmp/smfa-gpu-check}
mkdir -p "$RES"
PY=${PY:-}
if [ -z "$PY" ]; then
  for c in .venv-gpu/bin/python python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch,sys; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "gpu_check: no python with a CUDA torch"; exit 2; }
t0=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - t0 )) s)"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.mem --format=csv,noheader 2>&1 | tee "$RES/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())"
"$PY" -c "import triton; print('triton', triton.__version__)" 2>&1 | tail -1
command -v nvcc && nvcc --version | tail -1

step "build smfa_core._C with CUDA (sm_80 + sm_90)"
export MAX_JOBS=${MAX_JOBS:-16}
rm -f smfa_core/_C*.so
if timeout 420 "$PY" setup.py build_ext --inplace > "$RES/build.log" 2>&1; then
  grep -E "smfa: building|error" "$RES/build.log" | head -5; echo "build ok"
else
  echo "BUILD FAILED"; tail -40 "$RES/build.log"
fi
"$PY" -c "import smfa_core, json; print(json.dumps(smfa_core.available_backends(), indent=1))" 2>&1 | tee "$RES/backends.txt"

step "kernel tests on the GPU"
export TRITON_INTERPRET=0
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 300 "$PY" -m pytest -q -o addopts="-ra" -p no:cacheprovider -x \
    -k "not emulated" tests/test_kernels_gpu.py tests/test_cuda_build.py tests/test_dispatch.py \
    "tests/test_engine.py::test_cuda_device_streaming_matches_cpu" \
    "tests/test_engine.py::test_cuda_device_expands_lora_on_the_gpu" \
    $(ls tests/test_kernels_cpu.py 2>/dev/null) 2>&1 | tee "$RES/pytest.log" | tail -25
else
  echo "pytest not installed for $PY: skipping the test files (the bandwidth script still bit-checks)"
fi

step "bandwidth vs device-to-device copy"
timeout 240 "$PY" benchmarks/gpu_bandwidth.py --n $((1 << 28)) --iters 10 2>&1 | tee "$RES/bandwidth.txt"

step "out-of-core sculpt on the GPU: qwen2.5-1.5b-shaped set vs the host I/O floor"
SET=${SMFA_GPU_SET:-/tmp/smfa-q15}
if timeout 200 "$PY" benchmarks/shaped_set.py --shape qwen2.5-1.5b --out "$SET" > "$RES/gen.log" 2>&1; then
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
  s0=$(date +%s.%N); cat "$SET"/*/*.safetensors > /dev/null
  dd if=/dev/zero of="$SET/floor.bin" bs=16M count=200 conv=fsync status=none; rm -f "$SET/floor.bin"
  s1=$(date +%s.%N); echo "io floor: $(echo "$s1 - $s0" | bc) s" | tee "$RES/stream.txt"
  for dev in cuda cpu; do
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    s0=$(date +%s.%N)
    timeout 150 "$PY" -m smfa_cli.main sculpt -f "$SET/forget" -a "$SET/anchor" --base "$SET/base" -o "$SET/out-$dev" \
      --device $dev --overwrite --no-progress | tail -2
    s1=$(date +%s.%N); echo "sculpt --device $dev: $(echo "$s1 - $s0" | bc) s" | tee -a "$RES/stream.txt"
  done
  cmp -s "$SET/out-cuda/model-00001-of-00001.safetensors" "$SET/out-cpu/model-00001-of-00001.safetensors" \
    && echo "cuda and cpu outputs identical" | tee -a "$RES/stream.txt" || echo "OUTPUTS DIFFER (or missing)" | tee -a "$RES/stream.txt"
else
  echo "set generation did not finish in time"; tail -3 "$RES/gen.log"
fi

step "done"
echo "results in $RES"
