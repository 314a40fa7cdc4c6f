// CUDA implementations of the torch.ops.smfa ops (schemas: smfa_core/_ops.py), over the
// launchers of csrc/cuda/sculpt_cuda.cu. Compiled to nothing unless setup.py builds the
// CUDA kernels (it defines SMFA_WITH_CUDA only then).
#ifdef SMFA_WITH_CUDA

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "cuda/sculpt_cuda.h"

namespace {

int dtype_code(const at::Tensor& x, const char* what) {
  switch (x.scalar_type()) {
    case at::kFloat:
      return SMFA_DTYPE_F32;
    case at::kHalf:
      return SMFA_DTYPE_F16;
    case at::kBFloat16:
      return SMFA_DTYPE_BF16;
    default:
      TORCH_CHECK(false, "smfa cuda: ", what, " dtype ", x.scalar_type(), " is not bf16/fp16/fp32");
  }
  return -1;
}

// x as a contiguous CUDA tensor of n elements on `dev`.
at::Tensor operand(const at::Tensor& x, int64_t n, const at::Device& dev, const char* what) {
  TORCH_CHECK(x.is_cuda() && x.device() == dev, "smfa cuda: ", what, " must be on ", dev, ", got ", x.device());
  TORCH_CHECK(x.numel() == n, "smfa cuda: ", what, " has ", x.numel(), " elements, expected ", n);
  dtype_code(x, what);
  return x.contiguous();
}

const void* opt_ptr(const std::optional<at::Tensor>& x, at::Tensor& keep, int64_t n, const at::Device& dev,
                    int want_dtype, const char* what) {
  if (!x.has_value()) return nullptr;
  keep = operand(*x, n, dev, what);
  TORCH_CHECK(dtype_code(keep, what) == want_dtype, "smfa cuda: ", what, " must have the dtype of its pair");
  return keep.data_ptr();
}

cudaStream_t stream_of(const at::Device& dev) { return c10::cuda::getCurrentCUDAStream(dev.index()).stream(); }

at::Tensor sumsq_blocks_cuda(const at::Tensor& x, const std::optional<at::Tensor>& x_base) {
  const at::Device dev = x.device();
  const c10::cuda::CUDAGuard guard(dev);
  const int64_t n = x.numel();
  at::Tensor xc = operand(x, n, dev, "x"), xb;
  const int dt = dtype_code(xc, "x");
  const void* pb = opt_ptr(x_base, xb, n, dev, dt, "x_base");
  const int64_t nblocks = (n + SMFA_CUDA_BLOCK - 1) / SMFA_CUDA_BLOCK;
  at::Tensor out = at::empty({nblocks}, x.options().dtype(at::kDouble));
  C10_CUDA_CHECK(smfa_cuda_sumsq_blocks(xc.data_ptr(), pb, dt, n, out.data_ptr<double>(), stream_of(dev)));
  return out;
}

at::Tensor sculpt_chunk_cuda(const at::Tensor& f, const std::optional<at::Tensor>& f_base, const at::Tensor& a,
                             const std::optional<at::Tensor>& a_base, double t, int64_t mode,
                             const std::optional<at::Tensor>& w, const at::Tensor& out,
                             const std::optional<at::Tensor>& mask) {
  const at::Device dev = f.device();
  const c10::cuda::CUDAGuard guard(dev);
  const int64_t n = f.numel();
  TORCH_CHECK(mode >= 0 && mode <= 3, "smfa cuda: unknown mode ", mode);
  at::Tensor fc = operand(f, n, dev, "f"), ac = operand(a, n, dev, "a"), fb, ab, wc;
  const int fdt = dtype_code(fc, "f"), adt = dtype_code(ac, "a");
  const void* pfb = opt_ptr(f_base, fb, n, dev, fdt, "f_base");
  const void* pab = opt_ptr(a_base, ab, n, dev, adt, "a_base");
  const void* pw = nullptr;
  int wdt = SMFA_DTYPE_F32;
  if (w.has_value()) {
    wc = operand(*w, n, dev, "w");
    wdt = dtype_code(wc, "w");
    pw = wc.data_ptr();
  }
  TORCH_CHECK(out.is_cuda() && out.device() == dev && out.numel() == n && out.is_contiguous(),
              "smfa cuda: out must be a contiguous tensor of ", n, " elements on ", dev);
  const int odt = dtype_code(out, "out");
  uint8_t* pm = nullptr;
  if (mask.has_value()) {
    const at::Tensor& m = *mask;
    TORCH_CHECK(m.is_cuda() && m.device() == dev && m.scalar_type() == at::kByte && m.is_contiguous() &&
                    m.numel() == (n + 7) / 8,
                "smfa cuda: mask must be a contiguous uint8 tensor of ceil(n/8) bytes on ", dev);
    pm = m.data_ptr<uint8_t>();
  }
  at::Tensor counts = at::empty({3}, f.options().dtype(at::kLong));
  C10_CUDA_CHECK(smfa_cuda_sculpt_chunk(fc.data_ptr(), pfb, fdt, ac.data_ptr(), pab, adt, static_cast<float>(t),
                                        static_cast<int>(mode), pw, wdt, out.data_ptr(), odt, pm, n,
                                        counts.data_ptr<int64_t>(), stream_of(dev)));
  return counts;
}

at::Tensor sweep_counts_cuda(const at::Tensor& f, const std::optional<at::Tensor>& f_base, const at::Tensor& a,
                             const std::optional<at::Tensor>& a_base, const at::Tensor& ts) {
  const at::Device dev = f.device();
  const c10::cuda::CUDAGuard guard(dev);
  const int64_t n = f.numel();
  at::Tensor fc = operand(f, n, dev, "f"), ac = operand(a, n, dev, "a"), fb, ab;
  const int fdt = dtype_code(fc, "f"), adt = dtype_code(ac, "a");
  const void* pfb = opt_ptr(f_base, fb, n, dev, fdt, "f_base");
  const void* pab = opt_ptr(a_base, ab, n, dev, adt, "a_base");
  at::Tensor tsc = ts.reshape({-1}).to(dev, at::kFloat).contiguous();
  const int64_t nts = tsc.numel();
  at::Tensor counts = at::empty({1 + nts}, f.options().dtype(at::kLong));
  C10_CUDA_CHECK(smfa_cuda_sweep_counts(fc.data_ptr(), pfb, fdt, ac.data_ptr(), pab, adt,
                                        nts ? tsc.data_ptr<float>() : nullptr, nts, n,
                                        counts.data_ptr<int64_t>(), stream_of(dev)));
  return counts.cpu();
}

}  // namespace

TORCH_LIBRARY_IMPL(smfa, CUDA, m) {
  m.impl("sumsq_blocks", &sumsq_blocks_cuda);
  m.impl("sculpt_chunk", &sculpt_chunk_cuda);
  m.impl("sweep_counts", &sweep_counts_cuda);
}

#endif  // SMFA_WITH_CUDA
