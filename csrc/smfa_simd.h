// 8-lane fp32 vector helpers of the CPU kernels, in two namespaces with one interface:
//
//   smfa::simd_portable  plain C++ (any target; what the baseline x86-64 build runs)
//   smfa::simd_avx2      AVX2 + F16C intrinsics, compiled for that ISA by a target region
//                        (SMFA_AVX2_BEGIN / SMFA_AVX2_END), x86 only (SMFA_X86)
//
// The kernels are written once against `simd::` and compiled twice, once per namespace
// (see cpu_common.h, "ISA dispatch"). Both follow the same rules (see csrc/README.md): no
// FMA, comparisons that are false on NaN, bf16 rounding to nearest even, fp16 conversion as
// vcvtps2ph does it (NaN payloads included): the two give the same bits on every input.
// Masks are fp32 lanes with all bits set (true) or clear (false), as in AVX compares.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SMFA_X86 1
#include <immintrin.h>  // declares every intrinsic whatever -m flags; usable in target regions
// Functions defined between these two are compiled for AVX2 + F16C (no FMA: the kernels
// never contract, and -ffp-contract=off would forbid it anyway). Only our own code goes
// there: a header included inside would give its inline functions AVX2 bodies.
#if defined(__clang__)
#define SMFA_AVX2_BEGIN \
  _Pragma("clang attribute push (__attribute__((target(\"avx2,f16c,popcnt\"))), apply_to = function)")
#define SMFA_AVX2_END _Pragma("clang attribute pop")
#else
#define SMFA_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,f16c,popcnt\")")
#define SMFA_AVX2_END _Pragma("GCC pop_options")
#endif
#endif

namespace smfa {

// ------------------------------------------------------------------ portable

namespace simd_portable {

struct F8 {
  float v[8];
};

inline uint32_t ubits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float ufloat(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline float mbool(bool b) { return ufloat(b ? 0xFFFFFFFFu : 0u); }

template <typename Fn>
inline F8 map2(F8 a, F8 b, Fn fn) {
  F8 r;
  for (int j = 0; j < 8; ++j) r.v[j] = fn(a.v[j], b.v[j]);
  return r;
}

inline F8 set1(float x) {
  F8 r;
  for (float& e : r.v) e = x;
  return r;
}
inline F8 bool_mask(bool b) { return set1(mbool(b)); }
inline F8 add(F8 a, F8 b) { return map2(a, b, [](float x, float y) { return x + y; }); }
inline F8 sub(F8 a, F8 b) { return map2(a, b, [](float x, float y) { return x - y; }); }
inline F8 mul(F8 a, F8 b) { return map2(a, b, [](float x, float y) { return x * y; }); }
inline F8 and_(F8 a, F8 b) {
  return map2(a, b, [](float x, float y) { return ufloat(ubits(x) & ubits(y)); });
}
inline F8 andnot(F8 m, F8 x) {
  return map2(m, x, [](float p, float q) { return ufloat(~ubits(p) & ubits(q)); });
}
inline F8 abs(F8 x) {
  F8 r;
  for (int j = 0; j < 8; ++j) r.v[j] = ufloat(ubits(x.v[j]) & 0x7FFFFFFFu);
  return r;
}
inline F8 cmp_lt(F8 a, F8 b) { return map2(a, b, [](float x, float y) { return mbool(x < y); }); }
inline unsigned movemask(F8 m) {
  unsigned r = 0;
  for (int j = 0; j < 8; ++j) r |= (ubits(m.v[j]) >> 31) << j;
  return r;
}
inline F8 conflict(F8 f, F8 a) {
  return map2(f, a, [](float x, float y) { return mbool((x > 0 && y < 0) || (x < 0 && y > 0)); });
}

struct Cnt {
  int32_t v[8];
};
inline Cnt cnt_zero() { return Cnt{{0, 0, 0, 0, 0, 0, 0, 0}}; }
inline Cnt cnt_add(Cnt c, F8 m) {
  for (int j = 0; j < 8; ++j) c.v[j] += static_cast<int32_t>(ubits(m.v[j]) >> 31);
  return c;
}
inline int64_t cnt_sum(Cnt c) {
  int64_t s = 0;
  for (int32_t x : c.v) s += x;
  return s;
}

// fp32 -> bf16 bits, round to nearest even (torch's rule); NaN -> nan_bits (see bf16_nan_bits).
inline uint16_t bf16_round(float v, uint16_t nan_bits) {
  if (v != v) return nan_bits;
  uint32_t u = ubits(v);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
// fp32 -> fp16 bits as vcvtps2ph (round to nearest even) does it: a NaN keeps its sign and
// the top 10 bits of its payload, quieted. c10's software conversion (a baseline build has
// no F16C) rounds finite values the same way but writes every NaN as 0x7E00.
inline uint16_t fp16_round(float v) {
  if (v != v) {
    const uint32_t u = ubits(v);
    return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7E00u | ((u >> 13) & 0x3FFu));
  }
  return c10::Half(v).x;
}

inline F8 load8(const float* p) {
  F8 r;
  std::memcpy(r.v, p, sizeof(r.v));
  return r;
}
inline F8 load8(const c10::BFloat16* p) {  // exact: the bf16 bits are the top half of the fp32
  F8 r;
  for (int j = 0; j < 8; ++j) r.v[j] = ufloat(static_cast<uint32_t>(p[j].x) << 16);
  return r;
}
inline F8 load8(const c10::Half* p) {  // exact; a NaN is quieted, payload kept, as vcvtph2ps
  F8 r;
  for (int j = 0; j < 8; ++j) r.v[j] = static_cast<float>(p[j]);
  return r;
}
inline void store8(float* p, F8 v) { std::memcpy(p, v.v, sizeof(v.v)); }
inline void store8(float* p, F8 v, uint16_t) { std::memcpy(p, v.v, sizeof(v.v)); }
inline void store8(c10::BFloat16* p, F8 v, uint16_t nan_bits) {
  for (int j = 0; j < 8; ++j) p[j].x = bf16_round(v.v[j], nan_bits);
}
inline void store8(c10::Half* p, F8 v, uint16_t) {
  for (int j = 0; j < 8; ++j) p[j].x = fp16_round(v.v[j]);
}
inline void acc_squares8(double* acc, const float* v) {
  for (int j = 0; j < 8; ++j) {
    const double d = static_cast<double>(v[j]);
    acc[j] = acc[j] + d * d;
  }
}

struct D4 {
  double v[4];
};
inline D4 d4_zero() { return D4{{0.0, 0.0, 0.0, 0.0}}; }
inline void d4_store(double* p, D4 v) { std::memcpy(p, v.v, sizeof(v.v)); }
inline void acc_sq8(D4& lo, D4& hi, F8 x) {
  for (int j = 0; j < 4; ++j) {
    const double l = static_cast<double>(x.v[j]), h = static_cast<double>(x.v[4 + j]);
    lo.v[j] = lo.v[j] + l * l;
    hi.v[j] = hi.v[j] + h * h;
  }
}

// Partial groups (rem < 8 elements) go through a zero-padded copy: padding lanes decode to
// +0.0, which no stage counts, masks or writes.
template <typename T>
inline F8 load_partial(const T* p, int64_t rem) {
  T tmp[8];
  std::memset(static_cast<void*>(tmp), 0, sizeof(tmp));
  std::memcpy(static_cast<void*>(tmp), static_cast<const void*>(p), static_cast<size_t>(rem) * sizeof(T));
  return load8(tmp);
}
template <typename T>
inline void store_partial(T* p, F8 v, int64_t rem, uint16_t nan_bits) {
  T tmp[8];
  store8(tmp, v, nan_bits);
  std::memcpy(static_cast<void*>(p), static_cast<const void*>(tmp), static_cast<size_t>(rem) * sizeof(T));
}

}  // namespace simd_portable

// ------------------------------------------------------------------ AVX2 + F16C

#ifdef SMFA_X86
SMFA_AVX2_BEGIN
namespace simd_avx2 {

using F8 = __m256;

inline F8 set1(float x) { return _mm256_set1_ps(x); }
inline F8 bool_mask(bool b) { return _mm256_castsi256_ps(_mm256_set1_epi32(b ? -1 : 0)); }
inline F8 add(F8 a, F8 b) { return _mm256_add_ps(a, b); }
inline F8 sub(F8 a, F8 b) { return _mm256_sub_ps(a, b); }
inline F8 mul(F8 a, F8 b) { return _mm256_mul_ps(a, b); }
inline F8 and_(F8 a, F8 b) { return _mm256_and_ps(a, b); }
inline F8 andnot(F8 m, F8 x) { return _mm256_andnot_ps(m, x); }  // ~m & x
inline F8 abs(F8 x) { return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))); }
inline F8 cmp_lt(F8 a, F8 b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
inline unsigned movemask(F8 m) { return static_cast<unsigned>(_mm256_movemask_ps(m)); }

// C = (f > 0 && a < 0) || (f < 0 && a > 0): a sign test, never the product. Computed as
// "both nonzero and ordered (f != 0, a != 0 are false on NaN and on +-0) and the sign bits
// differ", which is the same predicate in fewer instructions.
inline F8 conflict(F8 f, F8 a) {
  const F8 z = _mm256_setzero_ps();
  const F8 nz = _mm256_and_ps(_mm256_cmp_ps(f, z, _CMP_NEQ_OQ), _mm256_cmp_ps(a, z, _CMP_NEQ_OQ));
  const __m256i sd = _mm256_srai_epi32(_mm256_castps_si256(_mm256_xor_ps(f, a)), 31);
  return _mm256_and_ps(nz, _mm256_castsi256_ps(sd));
}

// Per-lane counters of true mask lanes (int32 lanes; a tile is far below 2^31 groups).
using Cnt = __m256i;
inline Cnt cnt_zero() { return _mm256_setzero_si256(); }
inline Cnt cnt_add(Cnt c, F8 m) { return _mm256_sub_epi32(c, _mm256_castps_si256(m)); }  // m lanes are -1
inline int64_t cnt_sum(Cnt c) {
  alignas(32) int32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), c);
  int64_t s = 0;
  for (int32_t x : v) s += x;
  return s;
}

inline F8 load8(const float* p) { return _mm256_loadu_ps(p); }
inline F8 load8(const c10::BFloat16* p) {  // exact: the bf16 bits are the top half of the fp32
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
inline F8 load8(const c10::Half* p) {  // exact (vcvtph2ps), as torch's vectorised path
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void store8(float* p, F8 v) { _mm256_storeu_ps(p, v); }
inline void store8(float* p, F8 v, uint16_t) { _mm256_storeu_ps(p, v); }
inline void store8(c10::BFloat16* p, F8 v, uint16_t nan_bits) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
  r = _mm256_srli_epi32(r, 16);
  const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(nan_bits), isnan);
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
inline void store8(c10::Half* p, F8 v, uint16_t) {  // round to nearest even (vcvtps2ph)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// sum of squares, lane by lane: acc[j] = acc[j] + double(v[j]) * double(v[j]), j < 8
inline void acc_squares8(double* acc, const float* v) {
  const __m256 x = _mm256_loadu_ps(v);
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
  _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), _mm256_mul_pd(lo, lo)));
  _mm256_storeu_pd(acc + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 4), _mm256_mul_pd(hi, hi)));
}

// fp64 accumulators for the norms: acc_sq8(lo, hi, v) does lo[j] = lo[j] + double(v[j])^2
// (j < 4) and hi[j] = hi[j] + double(v[4 + j])^2: an exact square, then one fp64 add (no FMA).
using D4 = __m256d;
inline D4 d4_zero() { return _mm256_setzero_pd(); }
inline void d4_store(double* p, D4 v) { _mm256_storeu_pd(p, v); }
inline void acc_sq8(D4& lo, D4& hi, F8 x) {
  const __m256d l = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
  const __m256d h = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
  lo = _mm256_add_pd(lo, _mm256_mul_pd(l, l));
  hi = _mm256_add_pd(hi, _mm256_mul_pd(h, h));
}

// as in simd_portable (zero-padded copies of partial groups)
template <typename T>
inline F8 load_partial(const T* p, int64_t rem) {
  T tmp[8];
  std::memset(static_cast<void*>(tmp), 0, sizeof(tmp));
  std::memcpy(static_cast<void*>(tmp), static_cast<const void*>(p), static_cast<size_t>(rem) * sizeof(T));
  return load8(tmp);
}
template <typename T>
inline void store_partial(T* p, F8 v, int64_t rem, uint16_t nan_bits) {
  T tmp[8];
  store8(tmp, v, nan_bits);
  std::memcpy(static_cast<void*>(p), static_cast<const void*>(tmp), static_cast<size_t>(rem) * sizeof(T));
}

}  // namespace simd_avx2
SMFA_AVX2_END
#endif  // SMFA_X86

}  // namespace smfa
