"""Build smfa_core._C: the C++/OpenMP kernels always, the CUDA kernels when torch has CUDA.

Kept in setup.py (not pyproject) because the extension is built against the torch that
is already installed (`pip install --no-build-isolation .`). Environment knobs:
  SMFA_MARCH       optional -march value for all C++ files (default: none, i.e. the compiler's
                   baseline, x86-64 on x86). Not needed for speed: the AVX2 + F16C kernels are
                   compiled in any case (target regions, csrc/smfa_simd.h) and chosen at run time
                   when the CPU has them, so one build runs on every x86-64 CPU. Setting it (e.g.
                   native) only lets the compiler use more in the baseline code, and a wheel built
                   so may die with SIGILL on an older CPU.
  SMFA_NO_EXT=1    skip the extension entirely (pure-Python install, `reference` backend only)
  SMFA_NO_CUDA=1   do not build the CUDA kernels even when torch has CUDA
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup

ext_modules = []
cmdclass = {}

if os.environ.get("SMFA_NO_EXT") != "1":
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    march = os.environ.get("SMFA_MARCH", "")
    # -ffp-contract=off: no FMA contraction anywhere (the kernels' bits are the reference's)
    cxx_flags = ["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off"] + ([f"-march={march}"] if march else [])
    sources = sorted(glob.glob("csrc/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    with_cuda = (
        torch.version.cuda is not None
        and shutil.which("nvcc") is not None
        and os.environ.get("SMFA_NO_CUDA") != "1"
        and bool(cuda_sources)
    )
    if with_cuda:
        ext = CUDAExtension(
            "smfa_core._C",
            sources + cuda_sources,
            define_macros=[("SMFA_WITH_CUDA", "1")],
            extra_compile_args={
                "cxx": cxx_flags,
                "nvcc": ["-O3", "--fmad=false", "-gencode=arch=compute_80,code=sm_80",
                         "-gencode=arch=compute_90,code=sm_90"],
            },
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension("smfa_core._C", sources, extra_compile_args=cxx_flags,
                           extra_link_args=["-fopenmp"])
    print(f"smfa: building smfa_core._C with backends: cpu{', cuda' if with_cuda else ''}"
          + ("" if with_cuda else " (cuda skipped: torch has no CUDA or nvcc is missing)"))
    ext_modules.append(ext)
    cmdclass["build_ext"] = BuildExtension.with_options(no_python_abi_suffix=False)
else:
    print("smfa: SMFA_NO_EXT=1, building without smfa_core._C (reference backend only)")

setup(ext_modules=ext_modules, cmdclass=cmdclass)
