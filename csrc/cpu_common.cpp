// The shared helpers of the CPU kernels (declared in cpu_common.h).

#include "cpu_common.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

namespace smfa {

namespace {
bool is_float_dtype(at::ScalarType s) {
  return s == at::kFloat || s == at::kHalf || s == at::kBFloat16;
}
}  // namespace

void check_input(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), "smfa::", op, ": ", name, " must be a CPU tensor, got ", x.device());
  TORCH_CHECK(is_float_dtype(x.scalar_type()), "smfa::", op, ": ", name,
              " must be bfloat16, float16 or float32, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), "smfa::", op, ": ", name, " must be contiguous");
}

int64_t check_pair(const at::Tensor& x, const std::optional<at::Tensor>& xb, const char* op,
                   const char* name, const char* base_name) {
  check_input(x, op, name);
  if (xb.has_value()) {
    check_input(*xb, op, base_name);
    TORCH_CHECK(xb->scalar_type() == x.scalar_type(), "smfa::", op, ": ", base_name, " dtype ",
                xb->scalar_type(), " differs from ", name, " dtype ", x.scalar_type());
    TORCH_CHECK(xb->numel() == x.numel(), "smfa::", op, ": ", base_name, " has ", xb->numel(),
                " elements, ", name, " has ", x.numel());
  }
  return x.numel();
}

int threads_for(int64_t n, int64_t items) {
  if (n < kSerialBelow) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items)));
}

// torch's vectorised kernels (AVX2, AVX512) write 0xFFFF for a NaN, its scalar path
// (ATEN_CPU_CAPABILITY=default) 0x7FC0. We follow the path torch itself takes in this
// process, so the reference and we agree bit for bit (whichever ISA we run).
uint16_t bf16_nan_bits() {
  static const uint16_t bits = [] {
#if defined(__x86_64__) || defined(_M_X64)
    const std::string cap = at::get_cpu_capability();
    return static_cast<uint16_t>(cap == "DEFAULT" ? 0x7FC0 : 0xFFFF);
#else
    return static_cast<uint16_t>(0x7FC0);
#endif
  }();
  return bits;
}

// Large outputs are usually freshly allocated (never touched): ask for transparent huge
// pages before the first write. On small VMs a 4 KiB page fault costs microseconds, so the
// faults of a fresh 128 MB output cost more than the kernel itself; with 2 MiB pages they
// are 512x fewer. Best effort: no effect on pages already present, errors ignored.
void advise_huge_pages(void* ptr, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < int64_t(8 * kHuge)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(ptr) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(ptr) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

// AVX2 when the CPU (and OS) has AVX2 and F16C, unless SMFA_CPU_ISA=portable; asked once.
// SMFA_CPU_ISA=avx2 (or unset, or anything else) means "the best the CPU has".
CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const char* env = std::getenv("SMFA_CPU_ISA");
    if (env != nullptr && std::strcmp(env, "portable") == 0) return CpuIsa::kPortable;
#ifdef SMFA_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("popcnt"))
      return CpuIsa::kAvx2;  // popcnt: the sweep counts with it (every AVX2 CPU has it)
#endif
    return CpuIsa::kPortable;
  }();
  return isa;
}

const char* cpu_isa_name() { return cpu_isa() == CpuIsa::kAvx2 ? "avx2" : "portable"; }

}  // namespace smfa
