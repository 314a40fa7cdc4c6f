// The extension module smfa_core._C: registers the CPU kernels (norms_cpu.cpp,
// sculpt_cpu.cpp, sweep_cpu.cpp) as the CPU implementations of the torch.ops.smfa ops
// (schemas: smfa_core/_ops.py; the CUDA ones register themselves in cuda_ops.cpp), and the
// one PYBIND11_MODULE of the extension.

#include <torch/extension.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cpu_common.h"

TORCH_LIBRARY_IMPL(smfa, CPU, m) {
  m.impl("sumsq_blocks", &smfa::sumsq_blocks_cpu);
  m.impl("sculpt_chunk", &smfa::sculpt_chunk_cpu);
  m.impl("sweep_counts", &smfa::sweep_counts_cpu);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "smfa compiled kernels (CPU: C++/OpenMP); ops are registered as torch.ops.smfa.*";
  // == smfa_core._ext.OPS_VERSION: bumped when an op's result changes (2: sculpt_chunk's 3 counts),
  // so that a stale build is refused instead of returning what the Python code no longer reads.
  m.attr("OPS_VERSION") = 2;
  m.def("built_backends", []() {
    std::vector<std::string> b{"cpu"};
#ifdef SMFA_WITH_CUDA
    b.emplace_back("cuda");
#endif
    return b;
  }, "Backends compiled into this extension.");
  m.def("cpu_isa", []() { return std::string(smfa::cpu_isa_name()); },
        "Vector path the CPU kernels run in this process: 'avx2' (AVX2 + F16C, chosen at run "
        "time when the CPU has both) or 'portable'; SMFA_CPU_ISA=portable forces the latter.");
}
