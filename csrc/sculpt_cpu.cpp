// CPU kernel of smfa::sculpt_chunk: conflict / magnitude masks, the sculpted (optionally
// merged) output, the packed mask and the counts [conflict, masked, non-finite]. The spec is
// smfa_core/backends/reference.py; csrc/README.md has the numerical rules and the layout.
//
// Two paths. Generic (every dtype combination): inputs are decoded tile by tile (kTile
// elements) into fp32 buffers that stay in L1 (decode.inc, templated over input dtype and
// has_base), then one stage (sculpt.inc, templated over output dtype, has_w and mode)
// computes masks, counts, the output and the mask bits 8 lanes at a time; compiled once per
// ISA. Direct (AVX2 only, below): all-bf16 inputs without bases, 16 elements per step.

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu_common.h"

namespace smfa {
namespace {
using StageFn = void (*)(const float*, const float*, const void*, void*, int64_t, float, uint16_t,
                         uint8_t*, int64_t&, int64_t&, int64_t&);
}  // namespace

namespace portable {
namespace {
namespace simd = ::smfa::simd_portable;
#include "decode.inc"
#include "sculpt.inc"
}  // namespace
}  // namespace portable

#ifdef SMFA_X86
SMFA_AVX2_BEGIN
namespace avx2 {
namespace {
namespace simd = ::smfa::simd_avx2;
#include "decode.inc"
#include "sculpt.inc"

// ---- direct path: bf16 f, bf16 a (no bases), bf16 out, optional bf16 w (AVX2 only).
// The common case (checkpoints and the engine's output all bf16) without the fp32 tile
// buffers: 16 elements per step straight from the inputs. The bf16 -> fp32 widening is
// an unpack with zero (in-lane order), so the two halves hold elements {0-3, 8-11} and
// {4-7, 12-15}; packing them back (packs/packus) restores element order. Without w the
// output is a bit select on f's bf16 bits (M ? +0 : f, exact), except that a NaN f is
// written as torch's fp32 -> bf16 NaN (nan_bits), as the reference does.

// 16 elements: returns the 16 output bf16 values; c16 / m16 get the C / M masks, one
// all-ones 16-bit lane per true element, in element order.
template <bool HAS_W, int MODE>
inline __m256i bf16_step(__m256i fx, __m256i ax, __m256i wx, __m256 t, __m256i nanv,
                         __m256i& c16, __m256i& m16) {
  const __m256i z = _mm256_setzero_si256();
  const __m256 flo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, fx));
  const __m256 fhi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, fx));
  const __m256 alo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, ax));
  const __m256 ahi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, ax));
  const __m256 clo = simd::conflict(flo, alo), chi = simd::conflict(fhi, ahi);
  __m256 mlo, mhi;
  if constexpr (MODE == 0) {
    mlo = mhi = _mm256_setzero_ps();
  } else if constexpr (MODE == 1) {
    mlo = clo;
    mhi = chi;
  } else {  // R: one fp32 multiply, then compare (no FMA)
    const __m256 rlo = simd::cmp_lt(simd::mul(t, simd::abs(alo)), simd::abs(flo));
    const __m256 rhi = simd::cmp_lt(simd::mul(t, simd::abs(ahi)), simd::abs(fhi));
    mlo = MODE == 3 ? _mm256_and_ps(clo, rlo) : rlo;
    mhi = MODE == 3 ? _mm256_and_ps(chi, rhi) : rhi;
  }
  c16 = _mm256_packs_epi32(_mm256_castps_si256(clo), _mm256_castps_si256(chi));
  m16 = _mm256_packs_epi32(_mm256_castps_si256(mlo), _mm256_castps_si256(mhi));
  if constexpr (!HAS_W) {
    const __m256i sel = _mm256_andnot_si256(m16, fx);  // M ? +0 : f (bits)
    const __m256i mag = _mm256_and_si256(fx, _mm256_set1_epi16(0x7FFF));
    const __m256i isnan = _mm256_cmpgt_epi16(mag, _mm256_set1_epi16(0x7F80));
    return _mm256_blendv_epi8(sel, nanv, isnan);
  } else {
    const __m256 wlo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, wx));
    const __m256 whi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, wx));
    const __m256 slo = _mm256_add_ps(wlo, _mm256_andnot_ps(mlo, flo));  // w + sculpted
    const __m256 shi = _mm256_add_ps(whi, _mm256_andnot_ps(mhi, fhi));
    const __m256i nan32 = _mm256_and_si256(nanv, _mm256_set1_epi32(0xFFFF));
    auto round = [&](__m256 v) {  // fp32 -> bf16 bits in the low half, RNE, NaN -> nan bits
      const __m256i u = _mm256_castps_si256(v);
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
      __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
      r = _mm256_srli_epi32(r, 16);
      const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      return _mm256_blendv_epi8(r, nan32, isnan);
    };
    return _mm256_packus_epi32(round(slo), round(shi));
  }
}

// element-ordered mask bits of 16 16-bit mask lanes
inline unsigned bits16(__m256i m16) {
  const unsigned b = static_cast<unsigned>(_mm256_movemask_epi8(_mm256_packs_epi16(m16, m16)));
  return (b & 0xFFu) | ((b >> 8) & 0xFF00u);
}

inline int64_t hsum16(__m256i cnt) {  // sum of 16 uint16 counters (each < 2^15)
  const __m256i s = _mm256_madd_epi16(cnt, _mm256_set1_epi16(1));
  const __m128i q = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  const __m128i h = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4E));
  return _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1)));
}

// One range [0, len) of the direct path; bits (if any) start at a byte boundary.
// STREAM: non-temporal stores of out (32-byte aligned `out` only; see kStreamBytes).
// Non-finite bf16 lanes of 16 output values: exponent all ones (Inf or NaN), as -1 lanes.
inline __m256i nonfinite16(__m256i o) {
  return _mm256_cmpgt_epi16(_mm256_and_si256(o, _mm256_set1_epi16(0x7FFF)), _mm256_set1_epi16(0x7F7F));
}

template <bool HAS_W, bool HAS_BITS, bool STREAM, int MODE>
void sculpt_bf16_direct(const uint16_t* f, const uint16_t* a, const uint16_t* w, uint16_t* out,
                        int64_t len, float t, uint16_t nan_bits, uint8_t* bits, int64_t& cc,
                        int64_t& cm, int64_t& cn) {
  const __m256 tv = _mm256_set1_ps(t);
  const __m256i nanv = _mm256_set1_epi16(static_cast<short>(nan_bits));
  // Counts in 16-bit vector lanes (masks are -1): at most len / 16 per lane.
  static_assert(kTile / 16 < 32768, "16-bit counters per tile");
  __m256i cv = _mm256_setzero_si256(), mv = _mm256_setzero_si256(), nv = _mm256_setzero_si256(), c16, m16;
  const int64_t full = len & ~int64_t(15);
  for (int64_t i = 0; i < full; i += 16) {
    const __m256i fx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f + i));
    const __m256i ax = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    __m256i wx = _mm256_setzero_si256();
    if constexpr (HAS_W) wx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    const __m256i o = bf16_step<HAS_W, MODE>(fx, ax, wx, tv, nanv, c16, m16);
    if constexpr (STREAM) _mm256_stream_si256(reinterpret_cast<__m256i*>(out + i), o);
    else _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), o);
    cv = _mm256_sub_epi16(cv, c16);
    mv = _mm256_sub_epi16(mv, m16);
    nv = _mm256_sub_epi16(nv, nonfinite16(o));
    if constexpr (HAS_BITS) {
      const uint16_t mb16 = static_cast<uint16_t>(bits16(m16));
      std::memcpy(bits + (i >> 3), &mb16, 2);
    }
  }
  if (full < len) {  // zero padding: f = a = +0 is never C, never R, so never counted
    const int64_t rem = len - full;
    alignas(32) uint16_t tf[16] = {}, ta[16] = {}, tw[16] = {}, to[16];
    std::memcpy(tf, f + full, rem * 2);
    std::memcpy(ta, a + full, rem * 2);
    if constexpr (HAS_W) std::memcpy(tw, w + full, rem * 2);
    const __m256i o = bf16_step<HAS_W, MODE>(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(tf)),
        _mm256_load_si256(reinterpret_cast<const __m256i*>(ta)),
        _mm256_load_si256(reinterpret_cast<const __m256i*>(tw)), tv, nanv, c16, m16);
    _mm256_store_si256(reinterpret_cast<__m256i*>(to), o);
    std::memcpy(out + full, to, rem * 2);
    cv = _mm256_sub_epi16(cv, c16);
    mv = _mm256_sub_epi16(mv, m16);
    nv = _mm256_sub_epi16(nv, nonfinite16(o));  // padding: +0 out of +0 inputs, never counted
    if constexpr (HAS_BITS) {
      const unsigned mb = bits16(m16);
      bits[full >> 3] = static_cast<uint8_t>(mb);
      if (rem > 8) bits[(full >> 3) + 1] = static_cast<uint8_t>(mb >> 8);
    }
  }
  cc += hsum16(cv);
  cm += hsum16(mv);
  cn += hsum16(nv);
  if constexpr (STREAM) _mm_sfence();  // order the streamed stores before the join
}

using DirectFn = void (*)(const uint16_t*, const uint16_t*, const uint16_t*, uint16_t*, int64_t,
                          float, uint16_t, uint8_t*, int64_t&, int64_t&, int64_t&);

template <bool HAS_W, bool HAS_BITS, bool STREAM>
DirectFn pick_direct_mode(int64_t mode) {
  switch (mode) {
    case 0: return &sculpt_bf16_direct<HAS_W, HAS_BITS, STREAM, 0>;
    case 1: return &sculpt_bf16_direct<HAS_W, HAS_BITS, STREAM, 1>;
    case 2: return &sculpt_bf16_direct<HAS_W, HAS_BITS, STREAM, 2>;
    default: return &sculpt_bf16_direct<HAS_W, HAS_BITS, STREAM, 3>;
  }
}

template <bool STREAM>
DirectFn pick_direct_s(bool has_w, bool has_bits, int64_t mode) {
  if (has_w) {
    return has_bits ? pick_direct_mode<true, true, STREAM>(mode) : pick_direct_mode<true, false, STREAM>(mode);
  }
  return has_bits ? pick_direct_mode<false, true, STREAM>(mode) : pick_direct_mode<false, false, STREAM>(mode);
}

DirectFn pick_direct(bool has_w, bool has_bits, int64_t mode, bool stream) {
  return stream ? pick_direct_s<true>(has_w, has_bits, mode) : pick_direct_s<false>(has_w, has_bits, mode);
}

}  // namespace
}  // namespace avx2
SMFA_AVX2_END
#endif  // SMFA_X86

namespace {

// Outputs this large (2x this machine class's L3) cannot stay in cache for whoever reads
// them next, so the direct path writes them with non-temporal stores: no read-for-ownership
// of the output lines (8 -> 6 bytes of DRAM traffic per element). Measured on the 2-vCPU
// EPYC VM, 64M bf16: sculpt_chunk 17.1 -> 13.2 ms, and still ~3 ms faster including a
// full read of the output afterwards. Smaller outputs keep regular (cached) stores.
constexpr int64_t kStreamBytes = int64_t(64) << 20;

// [conflict, masked, non-finite outputs] (the op's result, see smfa_core/_ops.py)
at::Tensor sculpt_counts(const at::Tensor& like, int64_t cc, int64_t cm, int64_t cn) {
  at::Tensor counts = at::empty({3}, like.options().dtype(at::kLong));
  int64_t* c = counts.data_ptr<int64_t>();
  c[0] = cc;
  c[1] = cm;
  c[2] = cn;
  return counts;
}

}  // namespace

at::Tensor sculpt_chunk_cpu(const at::Tensor& f, const std::optional<at::Tensor>& f_base,
                            const at::Tensor& a, const std::optional<at::Tensor>& a_base, double t,
                            int64_t mode, const std::optional<at::Tensor>& w, const at::Tensor& out,
                            const std::optional<at::Tensor>& mask) {
  const char* op = "sculpt_chunk";
  const int64_t n = check_pair(f, f_base, op, "f", "f_base");
  const int64_t na = check_pair(a, a_base, op, "a", "a_base");
  TORCH_CHECK(na == n, "smfa::sculpt_chunk: a has ", na, " elements, f has ", n);
  TORCH_CHECK(mode >= 0 && mode <= 3, "smfa::sculpt_chunk: mode must be 0..3 (none, conflict, "
              "magnitude, both), got ", mode);
  check_input(out, op, "out");
  TORCH_CHECK(out.numel() == n, "smfa::sculpt_chunk: out has ", out.numel(), " elements, f has ", n);
  if (w.has_value()) {
    check_input(*w, op, "w");
    TORCH_CHECK(w->scalar_type() == out.scalar_type(), "smfa::sculpt_chunk: w dtype ",
                w->scalar_type(), " differs from out dtype ", out.scalar_type());
    TORCH_CHECK(w->numel() == n, "smfa::sculpt_chunk: w has ", w->numel(), " elements, f has ", n);
  }
  uint8_t* bits = nullptr;
  if (mask.has_value()) {
    TORCH_CHECK(mask->device().is_cpu(), "smfa::sculpt_chunk: mask must be a CPU tensor");
    TORCH_CHECK(mask->scalar_type() == at::kByte, "smfa::sculpt_chunk: mask must be uint8, got ",
                mask->scalar_type());
    TORCH_CHECK(mask->is_contiguous(), "smfa::sculpt_chunk: mask must be contiguous");
    TORCH_CHECK(mask->numel() == (n + 7) / 8, "smfa::sculpt_chunk: mask has ", mask->numel(),
                " bytes, need ceil(", n, " / 8) = ", (n + 7) / 8);
    bits = mask->data_ptr<uint8_t>();
  }

  const float tf = static_cast<float>(t);
  const uint16_t nb = bf16_nan_bits();

  const DecodeFn dec_f = SMFA_ISA_CALL(pick_decoder, f.scalar_type(), f_base.has_value());
  const DecodeFn dec_a = SMFA_ISA_CALL(pick_decoder, a.scalar_type(), a_base.has_value());
  const StageFn stage = SMFA_ISA_CALL(pick_stage, out.scalar_type(), w.has_value(), mode);
  const auto* fp = static_cast<const char*>(f.data_ptr());
  const auto* fbp = f_base.has_value() ? static_cast<const char*>(f_base->data_ptr()) : nullptr;
  const auto* ap = static_cast<const char*>(a.data_ptr());
  const auto* abp = a_base.has_value() ? static_cast<const char*>(a_base->data_ptr()) : nullptr;
  const auto* wp = w.has_value() ? static_cast<const char*>(w->data_ptr()) : nullptr;
  auto* op_ = static_cast<char*>(out.data_ptr());
  const int64_t fs = f.element_size(), as = a.element_size(), os = out.element_size();

  advise_huge_pages(op_, n * os);

  const int64_t ntiles = (n + kTile - 1) / kTile;
  int64_t cc = 0, cm = 0, cn = 0;
#ifdef SMFA_X86
  if (use_avx2() && f.scalar_type() == at::kBFloat16 && a.scalar_type() == at::kBFloat16 &&
      out.scalar_type() == at::kBFloat16 && !f_base.has_value() && !a_base.has_value()) {
    const bool stream = n * 2 >= kStreamBytes && (reinterpret_cast<uintptr_t>(out.data_ptr()) & 31) == 0;
    const avx2::DirectFn direct = avx2::pick_direct(w.has_value(), bits != nullptr, mode, stream);
    const auto* f16 = static_cast<const uint16_t*>(f.data_ptr());
    const auto* a16 = static_cast<const uint16_t*>(a.data_ptr());
    const auto* w16 = w.has_value() ? static_cast<const uint16_t*>(w->data_ptr()) : nullptr;
    auto* o16 = static_cast<uint16_t*>(out.data_ptr());
#pragma omp parallel for schedule(static) reduction(+ : cc, cm, cn) num_threads(threads_for(n, ntiles))
    for (int64_t tile = 0; tile < ntiles; ++tile) {
      const int64_t s = tile * kTile;
      direct(f16 + s, a16 + s, w16 ? w16 + s : nullptr, o16 + s, std::min(kTile, n - s), tf, nb,
             bits ? bits + s / 8 : nullptr, cc, cm, cn);
    }
    return sculpt_counts(f, cc, cm, cn);
  }
#endif
#pragma omp parallel for schedule(static) reduction(+ : cc, cm, cn) num_threads(threads_for(n, ntiles))
  for (int64_t tile = 0; tile < ntiles; ++tile) {
    alignas(64) float fbuf[kTile];
    alignas(64) float abuf[kTile];
    const int64_t s = tile * kTile;
    const int64_t len = std::min(kTile, n - s);
    dec_f(fp + s * fs, fbp ? fbp + s * fs : nullptr, len, fbuf);
    dec_a(ap + s * as, abp ? abp + s * as : nullptr, len, abuf);
    stage(fbuf, abuf, wp ? wp + s * os : nullptr, op_ + s * os, len, tf, nb,
          bits ? bits + s / 8 : nullptr, cc, cm, cn);
  }
  return sculpt_counts(f, cc, cm, cn);
}

}  // namespace smfa
