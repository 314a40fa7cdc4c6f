// CPU (C++/OpenMP) kernels of the smfa op set: sumsq_blocks, sculpt_chunk, sweep_counts.
//
// The executable spec is smfa_core/backends/reference.py: every output here (block sums,
// out tensor, packed mask, counts) has the same bits as it. The schemas live in
// smfa_core/_ops.py; this file only registers CPU implementations. See csrc/README.md for
// the numerical rules (no FMA, sign test, fixed reduction order, rounding).
//
// Structure: inputs are decoded tile by tile (TILE elements) into fp32 buffers that stay in
// L1 ("decoders", templated over input dtype and has_base), then one "stage" (templated over
// output dtype and has_w) computes masks, counts, the output and the mask bits 8 lanes at a
// time. So the hot loops carry no per-element branching on optional pointers or dtypes, and
// 6 + 6 instantiations cover every dtype combination instead of 216 fused ones.

#include <torch/extension.h>

#include <ATen/Version.h>
#include <omp.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "smfa_simd.h"

namespace smfa {
namespace {

constexpr int64_t kBlock = 65536;  // == smfa_core._ops.BLOCK
constexpr int64_t kLanes = 256;    // == smfa_core._ops.LANES
constexpr int64_t kTile = 1024;    // elements per decode tile (multiple of 8)
constexpr int64_t kSerialBelow = 1 << 15;  // smaller inputs run on one thread

static_assert(kBlock % kLanes == 0, "BLOCK must be a multiple of LANES");
static_assert(kLanes % 8 == 0 && kTile % 8 == 0, "8-lane vectors");

// ---------------------------------------------------------------- validation helpers

bool is_float_dtype(at::ScalarType s) {
  return s == at::kFloat || s == at::kHalf || s == at::kBFloat16;
}

void check_input(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), "smfa::", op, ": ", name, " must be a CPU tensor, got ", x.device());
  TORCH_CHECK(is_float_dtype(x.scalar_type()), "smfa::", op, ": ", name,
              " must be bfloat16, float16 or float32, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), "smfa::", op, ": ", name, " must be contiguous");
}

// Checks x (and its base, when given) and returns the number of elements.
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

// The bits torch's CPU `.to(torch.bfloat16)` gives a NaN: its vectorised kernels (AVX2,
// AVX512) write 0xFFFF, its scalar path (ATEN_CPU_CAPABILITY=default) 0x7FC0. We follow
// the path torch itself takes in this process, so the reference and we agree bit for bit.
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

// ---------------------------------------------------------------- decoders
// decode<T, HAS_BASE>(x, xb, len, dst): dst[i] = float(x[i]) (- float(xb[i])), i < len,
// then zeros up to the next multiple of 8 (padding lanes are neutral in every stage).

template <typename T, bool HAS_BASE>
void decode(const void* xv, const void* xbv, int64_t len, float* dst) {
  const T* x = static_cast<const T*>(xv);
  const T* xb = static_cast<const T*>(xbv);
  const int64_t full = len & ~int64_t(7);
  for (int64_t i = 0; i < full; i += 8) {
    simd::F8 v = simd::load8(x + i);
    if constexpr (HAS_BASE) v = simd::sub(v, simd::load8(xb + i));
    simd::store8(dst + i, v);
  }
  if (full < len) {
    simd::F8 v = simd::load_partial(x + full, len - full);
    if constexpr (HAS_BASE) v = simd::sub(v, simd::load_partial(xb + full, len - full));
    simd::store8(dst + full, v);
  }
}

using DecodeFn = void (*)(const void*, const void*, int64_t, float*);

DecodeFn pick_decoder(at::ScalarType s, bool has_base) {
  switch (s) {
    case at::kFloat: return has_base ? &decode<float, true> : &decode<float, false>;
    case at::kHalf: return has_base ? &decode<c10::Half, true> : &decode<c10::Half, false>;
    case at::kBFloat16:
      return has_base ? &decode<c10::BFloat16, true> : &decode<c10::BFloat16, false>;
    default: TORCH_CHECK(false, "smfa: unsupported dtype ", s);
  }
}

// ---------------------------------------------------------------- sumsq_blocks

// The canonical order fixes, per lane, a sequential sum over the rows. Walking a block row
// by row would need all 256 fp64 lane accumulators (64 ymm) live at once, i.e. a load and a
// store of accumulators per 4 elements. Instead a block is walked one GROUP of kGroup = 32
// lanes at a time (8 x 4 fp64 accumulators that stay in registers) over all its rows, then
// the next group: the same sequence of adds per lane, so the same bits. The group walk reads
// the block with a 512-byte stride (bf16), which the hardware prefetchers follow poorly, so
// while walking block b the kernel prefetches block b + 1 sequentially (one 64-byte line per
// row step for 2-byte dtypes, two for fp32; the base too when given): the block (<= 256 KB)
// is in L2 when its turn comes.
constexpr int64_t kGroup = 32;
static_assert(kLanes % kGroup == 0, "groups tile the lanes");
constexpr int64_t kGroups = kLanes / kGroup;

template <typename T, bool HAS_BASE>
inline void sumsq_group(const T* x, const T* xb, int64_t rows, double* acc, const char* pfx,
                        const char* pfb) {
  constexpr int64_t kLinesPerStep = static_cast<int64_t>(sizeof(T)) / 2;  // 2048 * that lines per block
  simd::D4 a0 = simd::d4_zero(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int64_t r = 0; r < rows; ++r) {
    if (pfx != nullptr) {
      for (int64_t j = 0; j < kLinesPerStep; ++j) {
        __builtin_prefetch(pfx + (r * kLinesPerStep + j) * 64, 0, 2);
        if constexpr (HAS_BASE) __builtin_prefetch(pfb + (r * kLinesPerStep + j) * 64, 0, 2);
      }
    }
    const T* p = x + r * kLanes;
    simd::F8 v0 = simd::load8(p), v1 = simd::load8(p + 8), v2 = simd::load8(p + 16),
             v3 = simd::load8(p + 24);
    if constexpr (HAS_BASE) {
      const T* q = xb + r * kLanes;
      v0 = simd::sub(v0, simd::load8(q));
      v1 = simd::sub(v1, simd::load8(q + 8));
      v2 = simd::sub(v2, simd::load8(q + 16));
      v3 = simd::sub(v3, simd::load8(q + 24));
    }
    simd::acc_sq8(a0, a1, v0);
    simd::acc_sq8(a2, a3, v1);
    simd::acc_sq8(a4, a5, v2);
    simd::acc_sq8(a6, a7, v3);
  }
  simd::d4_store(acc, a0);
  simd::d4_store(acc + 4, a1);
  simd::d4_store(acc + 8, a2);
  simd::d4_store(acc + 12, a3);
  simd::d4_store(acc + 16, a4);
  simd::d4_store(acc + 20, a5);
  simd::d4_store(acc + 24, a6);
  simd::d4_store(acc + 28, a7);
}

template <typename T, bool HAS_BASE>
void sumsq_impl(const T* x, const T* xb, int64_t n, double* out) {
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) num_threads(threads_for(n, nblocks))
  for (int64_t b = 0; b < nblocks; ++b) {
    alignas(64) double acc[kLanes];
    const int64_t start = b * kBlock;
    const int64_t len = std::min(kBlock, n - start);
    const int64_t full_rows = len / kLanes;
    // prefetch the next block when it is a full one (a prefetch never faults, but stay in bounds)
    const bool pf = full_rows == kBlock / kLanes && n - start >= 2 * kBlock;
    const int64_t group_bytes = kBlock * static_cast<int64_t>(sizeof(T)) / kGroups;
    for (int64_t g = 0; g < kLanes; g += kGroup) {
      const int64_t off = (g / kGroup) * group_bytes;
      const char* pfx = pf ? reinterpret_cast<const char*>(x + start + kBlock) + off : nullptr;
      const char* pfb = pf && HAS_BASE ? reinterpret_cast<const char*>(xb + start + kBlock) + off : nullptr;
      sumsq_group<T, HAS_BASE>(x + start + g, HAS_BASE ? xb + start + g : nullptr, full_rows,
                               acc + g, pfx, pfb);
    }
    const int64_t r0 = full_rows * kLanes;
    if (r0 < len) {  // the partial last row, after all full rows of every lane
      alignas(64) float row[kLanes];
      const int64_t rl = len - r0;
      // Missing elements decode to +0.0: acc + 0.0 == acc, bit for bit, for every acc this
      // can hold (+0.0, positive, +inf, NaN), like the reference's pad.
      decode<T, HAS_BASE>(x + start + r0, HAS_BASE ? xb + start + r0 : nullptr, rl, row);
      for (int64_t z = (rl + 7) & ~int64_t(7); z < kLanes; ++z) row[z] = 0.0f;
      for (int64_t l = 0; l < kLanes; l += 8) simd::acc_squares8(acc + l, row + l);
    }
    for (int64_t width = kLanes / 2; width >= 1; width /= 2) {  // fixed halving tree
      for (int64_t l = 0; l < width; ++l) acc[l] = acc[l] + acc[l + width];
    }
    out[b] = acc[0];
  }
}

at::Tensor sumsq_blocks_cpu(const at::Tensor& x, const std::optional<at::Tensor>& x_base) {
  const int64_t n = check_pair(x, x_base, "sumsq_blocks", "x", "x_base");
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  at::Tensor out = at::empty({nblocks}, x.options().dtype(at::kDouble));
  if (n == 0) return out;
  const bool hb = x_base.has_value();
  double* o = out.data_ptr<double>();
  const void* xp = x.data_ptr();
  const void* bp = hb ? x_base->data_ptr() : nullptr;
  switch (x.scalar_type()) {
#define SMFA_SUMSQ_CASE(ST, T)                                                                  \
  case ST:                                                                                      \
    if (hb)                                                                                     \
      sumsq_impl<T, true>(static_cast<const T*>(xp), static_cast<const T*>(bp), n, o);          \
    else                                                                                        \
      sumsq_impl<T, false>(static_cast<const T*>(xp), nullptr, n, o);                           \
    break;
    SMFA_SUMSQ_CASE(at::kFloat, float)
    SMFA_SUMSQ_CASE(at::kHalf, c10::Half)
    SMFA_SUMSQ_CASE(at::kBFloat16, c10::BFloat16)
#undef SMFA_SUMSQ_CASE
    default: TORCH_CHECK(false, "smfa::sumsq_blocks: unsupported dtype ", x.scalar_type());
  }
  return out;
}

// ---------------------------------------------------------------- sculpt_chunk

struct SculptParams {
  simd::F8 t;  // broadcast float(t)
  uint16_t bf16_nan;
};

// The smallest |v| (fp32) that rounds to Inf in TO (round to nearest even): an output is
// non-finite iff !(|v| < limit), NaN included. bf16: 0x7F7F8000, halfway from its max to Inf
// (ties go to the even Inf); fp16: 65520, halfway from 65504 to 65536; fp32: Inf itself.
template <typename TO>
inline float overflow_limit() {
  if constexpr (std::is_same_v<TO, float>) return std::numeric_limits<float>::infinity();
  else if constexpr (std::is_same_v<TO, c10::Half>) return 65520.0f;
  else return 3.3961776e38f;  // 0x7F7F8000
}

// One tile: fb/ab hold the decoded deltas (zero-padded to a multiple of 8).
// Writes out[0..len), mask bytes bits[0..ceil(len/8)) when bits != nullptr, adds counts
// (conflicts, masked, non-finite outputs). MODE is a template argument: M = C & R (3), C (1),
// R (2), nothing (0).
template <typename TO, bool HAS_W, int MODE>
void sculpt_stage(const float* fb, const float* ab, const void* wv, void* outv, int64_t len,
                  const SculptParams& p, uint8_t* bits, int64_t& cc, int64_t& cm, int64_t& cn) {
  const TO* w = static_cast<const TO*>(wv);
  TO* out = static_cast<TO*>(outv);
  const simd::F8 limit = simd::set1(overflow_limit<TO>()), ones = simd::bool_mask(true);
  simd::Cnt c_count = simd::cnt_zero(), m_count = simd::cnt_zero(), n_count = simd::cnt_zero();
  const int64_t full = len & ~int64_t(7);
  for (int64_t i = 0; i < len; i += 8) {
    const simd::F8 f = simd::load8(fb + i);
    const simd::F8 a = simd::load8(ab + i);
    const simd::F8 c = simd::conflict(f, a);
    simd::F8 m;
    if constexpr (MODE == 0) {
      m = simd::bool_mask(false);
    } else if constexpr (MODE == 1) {
      m = c;
    } else {
      // R: one fp32 multiply, then compare (no FMA; -ffp-contract=off)
      const simd::F8 r = simd::cmp_lt(simd::mul(p.t, simd::abs(a)), simd::abs(f));
      m = MODE == 3 ? simd::and_(c, r) : r;
    }
    simd::F8 s = simd::andnot(m, f);  // M ? +0.0f : f
    if (i < full) {
      if constexpr (HAS_W) s = simd::add(simd::load8(w + i), s);  // one fp32 add, one rounding
      simd::store8(out + i, s, p.bf16_nan);
    } else {
      if constexpr (HAS_W) s = simd::add(simd::load_partial(w + i, len - i), s);
      simd::store_partial(out + i, s, len - i, p.bf16_nan);
    }
    c_count = simd::cnt_add(c_count, c);
    m_count = simd::cnt_add(m_count, m);
    // padding lanes hold 0 (+ 0): finite, never counted
    n_count = simd::cnt_add(n_count, simd::andnot(simd::cmp_lt(simd::abs(s), limit), ones));
    if (bits != nullptr) bits[i >> 3] = static_cast<uint8_t>(simd::movemask(m));
  }
  cc += simd::cnt_sum(c_count);
  cm += simd::cnt_sum(m_count);
  cn += simd::cnt_sum(n_count);
}

using StageFn = void (*)(const float*, const float*, const void*, void*, int64_t, const SculptParams&,
                         uint8_t*, int64_t&, int64_t&, int64_t&);

template <typename TO, bool HAS_W>
StageFn pick_mode(int64_t mode) {
  switch (mode) {
    case 0: return &sculpt_stage<TO, HAS_W, 0>;
    case 1: return &sculpt_stage<TO, HAS_W, 1>;
    case 2: return &sculpt_stage<TO, HAS_W, 2>;
    default: return &sculpt_stage<TO, HAS_W, 3>;
  }
}

StageFn pick_stage(at::ScalarType s, bool has_w, int64_t mode) {
  switch (s) {
    case at::kFloat: return has_w ? pick_mode<float, true>(mode) : pick_mode<float, false>(mode);
    case at::kHalf: return has_w ? pick_mode<c10::Half, true>(mode) : pick_mode<c10::Half, false>(mode);
    case at::kBFloat16:
      return has_w ? pick_mode<c10::BFloat16, true>(mode) : pick_mode<c10::BFloat16, false>(mode);
    default: TORCH_CHECK(false, "smfa: unsupported dtype ", s);
  }
}

#ifdef SMFA_SIMD_AVX2
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

// Outputs this large (2x this machine class's L3) cannot stay in cache for whoever reads
// them next, so the direct path writes them with non-temporal stores: no read-for-ownership
// of the output lines (8 -> 6 bytes of DRAM traffic per element). Measured on the 2-vCPU
// EPYC VM, 64M bf16: sculpt_chunk 17.1 -> 13.2 ms, and still ~3 ms faster including a
// full read of the output afterwards. Smaller outputs keep regular (cached) stores.
constexpr int64_t kStreamBytes = int64_t(64) << 20;

DirectFn pick_direct(bool has_w, bool has_bits, int64_t mode, bool stream) {
  return stream ? pick_direct_s<true>(has_w, has_bits, mode) : pick_direct_s<false>(has_w, has_bits, mode);
}
#endif  // SMFA_SIMD_AVX2

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

// [conflict, masked, non-finite outputs] (the op's result, see smfa_core/_ops.py)
at::Tensor sculpt_counts(const at::Tensor& like, int64_t cc, int64_t cm, int64_t cn) {
  at::Tensor counts = at::empty({3}, like.options().dtype(at::kLong));
  int64_t* c = counts.data_ptr<int64_t>();
  c[0] = cc;
  c[1] = cm;
  c[2] = cn;
  return counts;
}

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

  SculptParams p;
  p.t = simd::set1(static_cast<float>(t));
  p.bf16_nan = bf16_nan_bits();

  const DecodeFn dec_f = pick_decoder(f.scalar_type(), f_base.has_value());
  const DecodeFn dec_a = pick_decoder(a.scalar_type(), a_base.has_value());
  const StageFn stage = pick_stage(out.scalar_type(), w.has_value(), mode);
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
#ifdef SMFA_SIMD_AVX2
  if (f.scalar_type() == at::kBFloat16 && a.scalar_type() == at::kBFloat16 &&
      out.scalar_type() == at::kBFloat16 && !f_base.has_value() && !a_base.has_value()) {
    const bool stream = n * 2 >= kStreamBytes && (reinterpret_cast<uintptr_t>(out.data_ptr()) & 31) == 0;
    const DirectFn direct = pick_direct(w.has_value(), bits != nullptr, mode, stream);
    const auto* f16 = static_cast<const uint16_t*>(f.data_ptr());
    const auto* a16 = static_cast<const uint16_t*>(a.data_ptr());
    const auto* w16 = w.has_value() ? static_cast<const uint16_t*>(w->data_ptr()) : nullptr;
    auto* o16 = static_cast<uint16_t*>(out.data_ptr());
    const float tf = static_cast<float>(t);
    const uint16_t nb = p.bf16_nan;
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
    stage(fbuf, abuf, wp ? wp + s * os : nullptr, op_ + s * os, len, p,
          bits ? bits + s / 8 : nullptr, cc, cm, cn);
  }
  return sculpt_counts(f, cc, cm, cn);
}

// ---------------------------------------------------------------- sweep_counts

// counts[0] += #C, counts[1 + k] += #(C && t[k] * |a| < |f|)
void sweep_stage(const float* fb, const float* ab, int64_t len, const float* ts, int64_t K,
                 int64_t* counts) {
  for (int64_t i = 0; i < len; i += 8) {
    const simd::F8 f = simd::load8(fb + i);
    const simd::F8 a = simd::load8(ab + i);
    const simd::F8 c = simd::conflict(f, a);
    const unsigned mc = simd::movemask(c);
    if (mc == 0) continue;
    counts[0] += __builtin_popcount(mc);
    const simd::F8 af = simd::abs(f), aa = simd::abs(a);
    for (int64_t k = 0; k < K; ++k) {
      const simd::F8 r = simd::cmp_lt(simd::mul(simd::set1(ts[k]), aa), af);
      counts[1 + k] += __builtin_popcount(simd::movemask(simd::and_(c, r)));
    }
  }
}

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

  const DecodeFn dec_f = pick_decoder(f.scalar_type(), f_base.has_value());
  const DecodeFn dec_a = pick_decoder(a.scalar_type(), a_base.has_value());
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
      sweep_stage(fbuf, abuf, len, tv, K, mine);
    }
  }
  at::Tensor counts = at::zeros({K + 1}, f.options().dtype(at::kLong));
  int64_t* c = counts.data_ptr<int64_t>();
  for (int th = 0; th < nt; ++th) {  // integer sums: the order does not matter
    for (int64_t k = 0; k <= K; ++k) c[k] += per_thread[static_cast<size_t>(th) * (K + 1) + k];
  }
  return counts;
}

}  // namespace
}  // namespace smfa

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
  m.def("simd_isa", []() { return std::string(smfa::simd::kIsa); },
        "Instruction set of the CPU kernels' vector path.");
}
