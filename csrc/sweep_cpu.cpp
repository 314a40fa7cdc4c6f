// CPU kernel of smfa::sweep_counts: for a list of thresholds t[k], the number of conflicts
// and, per k, of conflicts with t[k] * |a| < |f| (one pass for a whole k-sweep). The spec is
// smfa_core/backends/reference.py; the body is sweep.inc, compiled once per ISA here.

#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu_common.h"

namespace smfa {
namespace {
using SweepStageFn = void (*)(const float*, const float*, int64_t, const float*, int64_t, int64_t*);
}  // namespace

namespace portable {
namespace {
namespace simd = ::smfa::simd_portable;
#include "decode.inc"
#include "sweep.inc"
}  // namespace
}  // namespace portable

#ifdef SMFA_X86
SMFA_AVX2_BEGIN
namespace avx2 {
namespace {
namespace simd = ::smfa::simd_avx2;
#include "decode.inc"
#include "sweep.inc"
}  // namespace
}  // namespace avx2
SMFA_AVX2_END
#endif

at::Tensor sweep_counts_cpu(const at::Tensor& f, const std::optional<at::Tensor>& f_base,
                            const at::Tensor& a, const std::optional<at::Tensor>& a_base,
                            const at::Tensor& ts) {
  const char* op = "sweep_counts";
  const int64_t n = check_pair(f, f_base, op, "f", "f_base");
  const int64_t na = check_pair(a, a_base, op, "a", "a_base");
  TORCH_CHECK(na == n, "smfa::sweep_counts: a has ", na, " elements, f has ", n);
  TORCH_CHECK(ts.device().is_cpu(), "smfa::sweep_counts: ts must be a CPU tensor");
  TORCH_CHECK(ts.is_floating_point(), "smfa::sweep_counts: ts must be a float tensor, got ",
              ts.scalar_type());
  TORCH_CHECK(ts.dim() <= 1, "smfa::sweep_counts: ts must be 1-D, got ", ts.dim(), " dims");
  const at::Tensor ts32 = ts.to(at::kFloat).contiguous();  // same rounding as the reference
  const int64_t K = ts32.numel();
  const float* tv = ts32.data_ptr<float>();

  const DecodeFn dec_f = SMFA_ISA_CALL(pick_decoder, f.scalar_type(), f_base.has_value());
  const DecodeFn dec_a = SMFA_ISA_CALL(pick_decoder, a.scalar_type(), a_base.has_value());
  const SweepStageFn stage = SMFA_ISA_CALL(pick_sweep_stage);
  const auto* fp = static_cast<const char*>(f.data_ptr());
  const auto* fbp = f_base.has_value() ? static_cast<const char*>(f_base->data_ptr()) : nullptr;
  const auto* ap = static_cast<const char*>(a.data_ptr());
  const auto* abp = a_base.has_value() ? static_cast<const char*>(a_base->data_ptr()) : nullptr;
  const int64_t fs = f.element_size(), as = a.element_size();

  const int64_t ntiles = (n + kTile - 1) / kTile;
  const int nt = threads_for(n, ntiles);
  std::vector<int64_t> per_thread(static_cast<size_t>(nt) * (K + 1), 0);
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    int64_t* mine = per_thread.data() + static_cast<size_t>(tid) * (K + 1);
    alignas(64) float fbuf[kTile];
    alignas(64) float abuf[kTile];
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < ntiles; ++tile) {
      const int64_t s = tile * kTile;
      const int64_t len = std::min(kTile, n - s);
      dec_f(fp + s * fs, fbp ? fbp + s * fs : nullptr, len, fbuf);
      dec_a(ap + s * as, abp ? abp + s * as : nullptr, len, abuf);
      stage(fbuf, abuf, len, tv, K, mine);
    }
  }
  at::Tensor counts = at::zeros({K + 1}, f.options().dtype(at::kLong));
  int64_t* c = counts.data_ptr<int64_t>();
  for (int th = 0; th < nt; ++th) {  // integer sums: the order does not matter
    for (int64_t k = 0; k <= K; ++k) c[k] += per_thread[static_cast<size_t>(th) * (K + 1) + k];
  }
  return counts;
}

}  // namespace smfa
