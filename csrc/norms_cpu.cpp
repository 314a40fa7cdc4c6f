// CPU kernel of smfa::sumsq_blocks: per block of kBlock elements, the fp64 sum of squares of
// x (- x_base) in the canonical order (csrc/README.md, "Norms"). The spec is
// smfa_core/backends/reference.py; the body is norms.inc, compiled once per ISA here.

#include <omp.h>

#include <algorithm>

#include "cpu_common.h"

namespace smfa {
namespace {
using SumsqBlockFn = void (*)(const void*, const void*, int64_t, int64_t, double*);
}  // namespace

namespace portable {
namespace {
namespace simd = ::smfa::simd_portable;
#include "decode.inc"
#include "norms.inc"
}  // namespace
}  // namespace portable

#ifdef SMFA_X86
SMFA_AVX2_BEGIN
namespace avx2 {
namespace {
namespace simd = ::smfa::simd_avx2;
#include "decode.inc"
#include "norms.inc"
}  // namespace
}  // namespace avx2
SMFA_AVX2_END
#endif

at::Tensor sumsq_blocks_cpu(const at::Tensor& x, const std::optional<at::Tensor>& x_base) {
  const int64_t n = check_pair(x, x_base, "sumsq_blocks", "x", "x_base");
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  at::Tensor out = at::empty({nblocks}, x.options().dtype(at::kDouble));
  if (n == 0) return out;
  const bool hb = x_base.has_value();
  double* o = out.data_ptr<double>();
  const void* xp = x.data_ptr();
  const void* bp = hb ? x_base->data_ptr() : nullptr;
  const SumsqBlockFn block = SMFA_ISA_CALL(pick_sumsq, x.scalar_type(), hb);
#pragma omp parallel for schedule(static) num_threads(threads_for(n, nblocks))
  for (int64_t b = 0; b < nblocks; ++b) block(xp, bp, n, b, o);
  return out;
}

}  // namespace smfa
