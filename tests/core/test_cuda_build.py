"""The CUDA sources compile with this machine's nvcc, and the launcher library loads and
fails cleanly (a CUDA error code, no crash) where no GPU/driver exists; with a GPU the
launchers are also checked against the reference through ctypes, without the extension."""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess

import pytest
import torch
from cuda_emulated import CODES, bind_launchers

from smfa_core.backends import reference as ref

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CU_FILES = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
NVCC = shutil.which("nvcc")
FLAGS = ["-O3", "--fmad=false", "-std=c++17", "-Xcompiler", "-fPIC"]

pytestmark = [
    pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH"),
    pytest.mark.skipif(not CU_FILES, reason="no csrc/cuda/*.cu"),
]



@pytest.mark.parametrize("cu", CU_FILES, ids=os.path.basename)
def test_nvcc_compiles_for_sm90_without_spills(cu, tmp_path):
    """No warnings, and ptxas keeps every kernel in registers: a spill or a local stack frame
    would be slow memory traffic on the GPU, visible here before anyone runs it."""
    res = subprocess.run([NVCC, "-c", *FLAGS, "-arch=sm_90", "--resource-usage", cu, "-o", str(tmp_path / "k.o")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "warning" not in out.lower(), out
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", out)
    kernels = re.findall(r"Compiling entry function '(\w+)'", out)
    assert kernels and len(frames) >= len(kernels), out
    assert all(f == ("0", "0", "0") for f in frames), out
    regs = [int(r) for r in re.findall(r"Used (\d+) registers", out)]
    assert regs and max(regs) <= 255, out


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("cuda") / "libsmfa_cuda.so"
    arch = "-arch=sm_90"
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        arch = f"-arch=sm_{major}{minor}"
    res = subprocess.run([NVCC, "-shared", *FLAGS, arch, *CU_FILES, "-o", str(so)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return bind_launchers(ctypes.CDLL(str(so)))


def test_launchers_reject_bad_arguments(lib):
    assert lib.smfa_cuda_sumsq_blocks(8, None, 9, 1, 8, None) == 1  # cudaErrorInvalidValue
    assert lib.smfa_cuda_sculpt_chunk(8, None, 0, 8, None, 0, 1.0, 4, None, 0, 8, 0, None, 1, 8, None) == 1
    assert lib.smfa_cuda_sweep_counts(8, None, 0, 8, None, 0, None, 3, 1, 8, None) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: see the next test")
def test_launchers_return_a_cuda_error_without_a_driver(lib):
    # nothing may be dereferenced: the first CUDA call fails (35, insufficient driver, here)
    rcs = [lib.smfa_cuda_sumsq_blocks(16, None, 0, 100, 16, None),
           lib.smfa_cuda_sculpt_chunk(16, None, 0, 16, None, 0, 1.0, 3, None, 0, 16, 0, None, 100, 16, None),
           lib.smfa_cuda_sweep_counts(16, None, 0, 16, None, 0, 16, 2, 100, 16, None)]
    assert all(rc not in (0, 1) for rc in rcs), rcs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_launchers_match_reference_on_gpu(lib):
    g = torch.Generator().manual_seed(0)
    n = 3 * 65536 + 11
    for dt in (torch.bfloat16, torch.float16, torch.float32):
        f, a, w = (torch.randn(n, generator=g).to(dt) for _ in range(3))
        fd, ad, wd = f.cuda(), a.cuda(), w.cuda()
        out = torch.empty(n // 65536 + 1, dtype=torch.float64, device="cuda")
        assert lib.smfa_cuda_sumsq_blocks(fd.data_ptr(), None, CODES[dt], n, out.data_ptr(), None) == 0
        assert torch.equal(out.cpu().view(torch.int64), ref.sumsq_blocks(f).view(torch.int64))
        o = torch.empty(n, dtype=dt, device="cuda")
        m = torch.empty((n + 7) // 8, dtype=torch.uint8, device="cuda")
        c = torch.empty(2, dtype=torch.int64, device="cuda")
        rc = lib.smfa_cuda_sculpt_chunk(fd.data_ptr(), None, CODES[dt], ad.data_ptr(), None, CODES[dt], 0.75, 3,
                                        wd.data_ptr(), CODES[dt], o.data_ptr(), CODES[dt], m.data_ptr(), n,
                                        c.data_ptr(), None)
        assert rc == 0
        ro, rm = torch.empty(n, dtype=dt), torch.empty((n + 7) // 8, dtype=torch.uint8)
        rc_ = ref.sculpt_chunk(f, None, a, None, 0.75, 3, w, ro, rm)
        torch.cuda.synchronize()
        assert torch.equal(c.cpu(), rc_) and torch.equal(m.cpu(), rm)
        assert torch.equal(o.cpu().view(torch.int16 if dt != torch.float32 else torch.int32),
                           ro.view(torch.int16 if dt != torch.float32 else torch.int32))
