// smfa CUDA kernels: sumsq_blocks, sculpt_chunk, sweep_counts (see sculpt_cuda.h).
//
// Bits are those of smfa_core/backends/reference.py. Compile with --fmad=false (setup.py
// and `make cuda-check` do); the arithmetic is written with explicit _rn intrinsics anyway,
// so no multiply is ever contracted into an add, and without fast-math nothing is flushed
// to zero. Rules kept here:
// - delta = float(x) or float(x) - float(x_base): one fp32 subtraction;
// - norms: lane l of a 65536-element block owns elements r*256 + l, r = 0..255, summed in
//   that order in fp64, then lanes combined by the halving tree lane[l] += lane[l + w],
//   w = 128..1. One warp per block, thread k owning lanes 8k..8k+7 (one 16-byte load per
//   row for 16-bit dtypes); the tree is shuffles for w >= 8, then in-thread;
// - conflict by the sign test, dominance as fmul_rn(t, |a|) < |f|;
// - out = M ? +0 : f, or fadd_rn(w, that), rounded to nearest even; NaN bits as torch's
//   CPU cast writes them (bf16 0xFFFF; fp16 sign | 0x7E00 | mantissa >> 13);
// - mask bit j of byte g is element 8g + j; counts are exact integer sums.
#include "sculpt_cuda.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

// Kernels are launched through this macro so that tests/cuda_emu/cuda_emu.h can run them on the
// host (it defines SMFA_LAUNCH itself): the emulated tests execute this very source.
#ifndef SMFA_LAUNCH
#define SMFA_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif

namespace {

constexpr int kBlock = SMFA_CUDA_BLOCK;
constexpr int kLanes = SMFA_CUDA_LANES;
constexpr int kRows = kBlock / kLanes;
constexpr int kThreads = 256;
constexpr int kSweepT = 32;  // thresholds per sweep launch

struct Src {
  const void* p;
  int dt;
};

__device__ __forceinline__ float bf16_to_f32(uint16_t b) { return __uint_as_float(((uint32_t)b) << 16); }

__device__ __forceinline__ float f16_to_f32(uint16_t b) { return __half2float(__ushort_as_half(b)); }

__device__ __forceinline__ float load1(const void* p, int dt, int64_t i) {
  if (dt == SMFA_DTYPE_F32) return static_cast<const float*>(p)[i];
  const uint16_t b = static_cast<const uint16_t*>(p)[i];
  return dt == SMFA_DTYPE_BF16 ? bf16_to_f32(b) : f16_to_f32(b);
}

// v[j] = float of the j-th 16-bit value (bf16 or fp16) packed in u, in memory order.
__device__ __forceinline__ void decode8_16(uint4 u, int dt, float v[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint16_t lo = (uint16_t)(w[k] & 0xFFFFu), hi = (uint16_t)(w[k] >> 16);
    if (dt == SMFA_DTYPE_BF16) {
      v[2 * k] = bf16_to_f32(lo);
      v[2 * k + 1] = bf16_to_f32(hi);
    } else {
      v[2 * k] = f16_to_f32(lo);
      v[2 * k + 1] = f16_to_f32(hi);
    }
  }
}

// v[j] = float(x[i + j]) for j < 8; 0 past n. One or two 16-byte loads when `vec`.
__device__ __forceinline__ void load8(const void* p, int dt, int64_t i, int64_t n, bool vec, float v[8]) {
  if (vec && i + 8 <= n) {
    if (dt == SMFA_DTYPE_F32) {
      const float4* q = reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
      const float4 x0 = q[0], x1 = q[1];
      v[0] = x0.x; v[1] = x0.y; v[2] = x0.z; v[3] = x0.w;
      v[4] = x1.x; v[5] = x1.y; v[6] = x1.z; v[7] = x1.w;
    } else {
      decode8_16(*reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p) + i), dt, v);
    }
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = (i + j < n) ? load1(p, dt, i + j) : 0.0f;
  }
}

__device__ __forceinline__ void load_delta8(Src x, Src xb, int64_t i, int64_t n, bool vec, float v[8]) {
  load8(x.p, x.dt, i, n, vec, v);
  if (xb.p != nullptr) {
    float b[8];
    load8(xb.p, xb.dt, i, n, vec, b);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = __fsub_rn(v[j], b[j]);
  }
}

__device__ __forceinline__ uint16_t f32_to_bf16_bits(float x) {
  const uint32_t u = __float_as_uint(x);
  if (x != x) return 0xFFFFu;
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ uint16_t f32_to_f16_bits(float x) {
  const uint32_t u = __float_as_uint(x);
  if (x != x) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7E00u | ((u >> 13) & 0x3FFu));
  return __half_as_ushort(__float2half_rn(x));
}

__device__ __forceinline__ uint16_t to_bits16(float x, int dt) {
  return dt == SMFA_DTYPE_BF16 ? f32_to_bf16_bits(x) : f32_to_f16_bits(x);
}

__device__ __forceinline__ void store8(void* p, int dt, int64_t i, int64_t n, bool vec, const float v[8]) {
  if (dt == SMFA_DTYPE_F32) {
    float* q = static_cast<float*>(p) + i;
    if (vec && i + 8 <= n) {
      reinterpret_cast<float4*>(q)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(q)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (i + j < n) q[j] = v[j];
    }
  } else {
    uint16_t* q = static_cast<uint16_t*>(p) + i;
    if (vec && i + 8 <= n) {
      uint32_t w[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        w[k] = (uint32_t)to_bits16(v[2 * k], dt) | ((uint32_t)to_bits16(v[2 * k + 1], dt) << 16);
      *reinterpret_cast<uint4*>(q) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (i + j < n) q[j] = to_bits16(v[j], dt);
    }
  }
}

__device__ __forceinline__ void accumulate8(double acc[8], const float v[8]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const double d = (double)v[j];
    acc[j] = __dadd_rn(acc[j], __dmul_rn(d, d));  // the square is exact
  }
}

// One warp per 65536-element block (grid-stride over blocks).
template <int UNROLL>
__global__ void __launch_bounds__(kThreads) sumsq_kernel(Src x, Src xb, int64_t n, int64_t nblocks,
                                                         bool vec, double* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
  for (int64_t b = warp; b < nblocks; b += nwarps) {
    double acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] = 0.0;
    const int64_t start = b * kBlock + lane * 8;
    const int64_t rem = n - b * kBlock;
    // rows wholly past the end would add +0.0 to a sum >= +0.0: skipping them is exact
    const int rows = rem >= kBlock ? kRows : (int)((rem + kLanes - 1) / kLanes);
    int r = 0;
    if (vec && xb.p == nullptr && x.dt != SMFA_DTYPE_F32) {
      // 16-bit rows kept raw (4 registers each, not 8 decoded floats): twice the rows in
      // flight for the same registers. Only rows complete for every lane; rows stay in order.
      const int full = rem >= kBlock ? kRows : (int)(rem / kLanes);
      const uint16_t* p = static_cast<const uint16_t*>(x.p) + start;
      for (; r + 2 * UNROLL <= full; r += 2 * UNROLL) {
        uint4 raw[2 * UNROLL];
#pragma unroll
        for (int u = 0; u < 2 * UNROLL; ++u) raw[u] = *reinterpret_cast<const uint4*>(p + (int64_t)(r + u) * kLanes);
#pragma unroll
        for (int u = 0; u < 2 * UNROLL; ++u) {
          float v[8];
          decode8_16(raw[u], x.dt, v);
          accumulate8(acc, v);
        }
      }
    }
    for (; r + UNROLL <= rows; r += UNROLL) {
      float v[UNROLL][8];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) load_delta8(x, xb, start + (int64_t)(r + u) * kLanes, n, vec, v[u]);
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) accumulate8(acc, v[u]);  // rows in order
    }
    for (; r < rows; ++r) {
      float v[8];
      load_delta8(x, xb, start + (int64_t)r * kLanes, n, vec, v);
      accumulate8(acc, v);
    }
    // halving tree: w = 128..8 across threads (lane l + w lives in thread + w/8) ...
#pragma unroll
    for (int off = 16; off >= 1; off >>= 1) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] = __dadd_rn(acc[j], __shfl_down_sync(0xffffffffu, acc[j], off));
    }
    // ... then w = 4, 2, 1 inside thread 0
    if (lane == 0) {
#pragma unroll
      for (int w = 4; w >= 1; w >>= 1) {
#pragma unroll
        for (int j = 0; j < w; ++j) acc[j] = __dadd_rn(acc[j], acc[j + w]);
      }
      out[b] = acc[0];
    }
  }
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ bool conflict_of(float f, float a) {
  return (f > 0.0f && a < 0.0f) || (f < 0.0f && a > 0.0f);  // the sign test, never f * a
}

// The smallest |v| (fp32) that rounds to Inf in the output dtype (round to nearest even):
// an output is non-finite iff !(|v| < limit), NaN included (see csrc/sculpt_cpu.cpp).
__device__ __forceinline__ float overflow_limit(int dt) {
  // fp32: +Inf; bf16: 0x7F7F8000 = 0x1.ffp+127
  return dt == SMFA_DTYPE_F32 ? __uint_as_float(0x7F800000u) : dt == SMFA_DTYPE_F16 ? 65520.0f : 0x1.ffp+127f;
}

// One thread per 8 elements (= one mask byte), grid-stride.
__global__ void __launch_bounds__(kThreads) sculpt_kernel(Src f, Src fb, Src a, Src ab, float t, int mode,
                                                          Src w, void* out, int out_dt, uint8_t* mask,
                                                          int64_t n, bool vec,
                                                          unsigned long long* __restrict__ counts) {
  unsigned long long cc = 0, mc = 0, nc = 0;
  const float limit = overflow_limit(out_dt);
  const int64_t ngroups = (n + 7) / 8;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < ngroups; g += stride) {
    const int64_t i = g * 8;
    float fv[8], av[8], wv[8], s[8];
    load_delta8(f, fb, i, n, vec, fv);
    load_delta8(a, ab, i, n, vec, av);
    if (w.p != nullptr) load8(w.p, w.dt, i, n, vec, wv);
    unsigned byte = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const bool valid = i + j < n;
      const bool c = valid && conflict_of(fv[j], av[j]);
      const bool r = valid && (__fmul_rn(t, fabsf(av[j])) < fabsf(fv[j]));
      const bool m = mode == 3 ? (c && r) : mode == 1 ? c : mode == 2 ? r : false;
      cc += c;
      mc += m;
      byte |= (unsigned)m << j;
      float v = m ? 0.0f : fv[j];
      if (w.p != nullptr) v = __fadd_rn(wv[j], v);
      nc += valid && !(fabsf(v) < limit);
      s[j] = v;
    }
    store8(out, out_dt, i, n, vec, s);
    if (mask != nullptr) mask[g] = (uint8_t)byte;
  }
  cc = warp_sum(cc);
  mc = warp_sum(mc);
  nc = warp_sum(nc);
  if ((threadIdx.x & 31) == 0 && (cc | mc | nc)) {
    atomicAdd(&counts[0], cc);
    atomicAdd(&counts[1], mc);
    atomicAdd(&counts[2], nc);
  }
}

// Counts for up to kSweepT thresholds ts[t0 .. t0 + nt) (and the conflict count when
// with_conflict); per-thread counters in shared memory, one atomic per value per CTA.
__global__ void __launch_bounds__(kThreads) sweep_kernel(Src f, Src fb, Src a, Src ab, const float* ts,
                                                         int64_t t0, int nt, bool with_conflict, int64_t n,
                                                         bool vec, unsigned long long* __restrict__ counts) {
  __shared__ unsigned int cnt[kSweepT + 1][kThreads];
  __shared__ float tsh[kSweepT];
  const int tid = threadIdx.x;
  for (int k = 0; k <= nt; ++k) cnt[k][tid] = 0;
  if (tid < nt) tsh[tid] = ts[t0 + tid];
  __syncthreads();
  const int64_t ngroups = (n + 7) / 8;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + tid; g < ngroups; g += stride) {
    const int64_t i = g * 8;
    float fv[8], av[8];
    load_delta8(f, fb, i, n, vec, fv);
    load_delta8(a, ab, i, n, vec, av);
    bool c[8];
    unsigned nc = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      c[j] = (i + j < n) && conflict_of(fv[j], av[j]);
      nc += c[j];
      fv[j] = fabsf(fv[j]);
      av[j] = fabsf(av[j]);
    }
    cnt[0][tid] += nc;
    for (int k = 0; k < nt; ++k) {
      const float tk = tsh[k];
      unsigned nm = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) nm += c[j] && (__fmul_rn(tk, av[j]) < fv[j]);
      cnt[k + 1][tid] += nm;
    }
  }
  __syncthreads();
  for (int k = tid; k <= nt; k += blockDim.x) {
    if (k == 0 && !with_conflict) continue;
    unsigned long long sum = 0;
    for (int j = 0; j < kThreads; ++j) sum += cnt[k][j];
    if (sum) atomicAdd(&counts[k == 0 ? 0 : 1 + t0 + (k - 1)], sum);
  }
}

bool aligned16(const void* p) { return ((uintptr_t)p & 15u) == 0; }

bool valid_dtype(int dt) { return dt == SMFA_DTYPE_F32 || dt == SMFA_DTYPE_F16 || dt == SMFA_DTYPE_BF16; }

// A grid of min(needed, per_sm * SMs) CTAs of kThreads threads.
cudaError_t grid_for(int64_t threads_needed, int per_sm, int* grid) {
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  int64_t need = (threads_needed + kThreads - 1) / kThreads;
  const int64_t cap = (int64_t)sms * per_sm;
  if (need > cap) need = cap;
  *grid = need < 1 ? 1 : (int)need;
  return cudaSuccess;
}

}  // namespace

extern "C" cudaError_t smfa_cuda_sumsq_blocks(const void* x, const void* x_base, int dtype, int64_t n,
                                              double* out, cudaStream_t stream) {
  if (!valid_dtype(dtype) || n < 0 || (n > 0 && (x == nullptr || out == nullptr))) return cudaErrorInvalidValue;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  if (nblocks == 0) return cudaSuccess;
  int grid = 0;
  cudaError_t e = grid_for(nblocks * 32, 8, &grid);
  if (e != cudaSuccess) return e;
  const bool vec = aligned16(x) && aligned16(x_base);
  SMFA_LAUNCH(sumsq_kernel<8>, grid, kThreads, stream)(Src{x, dtype}, Src{x_base, dtype}, n, nblocks, vec, out);
  return cudaGetLastError();
}

extern "C" cudaError_t smfa_cuda_sculpt_chunk(const void* f, const void* f_base, int f_dtype, const void* a,
                                              const void* a_base, int a_dtype, float t, int mode, const void* w,
                                              int w_dtype, void* out, int out_dtype, uint8_t* mask, int64_t n,
                                              int64_t* counts, cudaStream_t stream) {
  if (!valid_dtype(f_dtype) || !valid_dtype(a_dtype) || !valid_dtype(out_dtype) ||
      (w != nullptr && !valid_dtype(w_dtype)) || mode < 0 || mode > 3 || n < 0 || counts == nullptr)
    return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(counts, 0, 3 * sizeof(int64_t), stream);
  if (e != cudaSuccess || n == 0) return e;
  int grid = 0;
  e = grid_for((n + 7) / 8, 8, &grid);
  if (e != cudaSuccess) return e;
  const bool vec = aligned16(f) && aligned16(f_base) && aligned16(a) && aligned16(a_base) && aligned16(w) &&
                   aligned16(out);
  SMFA_LAUNCH(sculpt_kernel, grid, kThreads, stream)(
      Src{f, f_dtype}, Src{f_base, f_dtype}, Src{a, a_dtype}, Src{a_base, a_dtype}, t, mode, Src{w, w_dtype}, out,
      out_dtype, mask, n, vec, reinterpret_cast<unsigned long long*>(counts));
  return cudaGetLastError();
}

extern "C" cudaError_t smfa_cuda_sweep_counts(const void* f, const void* f_base, int f_dtype, const void* a,
                                              const void* a_base, int a_dtype, const float* ts, int64_t n_ts,
                                              int64_t n, int64_t* counts, cudaStream_t stream) {
  if (!valid_dtype(f_dtype) || !valid_dtype(a_dtype) || n < 0 || n_ts < 0 || counts == nullptr ||
      (n_ts > 0 && ts == nullptr))
    return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(counts, 0, (size_t)(1 + n_ts) * sizeof(int64_t), stream);
  if (e != cudaSuccess || n == 0) return e;
  int grid = 0;
  e = grid_for((n + 7) / 8, 4, &grid);
  if (e != cudaSuccess) return e;
  const bool vec = aligned16(f) && aligned16(f_base) && aligned16(a) && aligned16(a_base);
  int64_t t0 = 0;
  do {  // at least one launch: it also counts the conflicts
    const int nt = (int)((n_ts - t0) < kSweepT ? (n_ts - t0) : kSweepT);
    SMFA_LAUNCH(sweep_kernel, grid, kThreads, stream)(Src{f, f_dtype}, Src{f_base, f_dtype}, Src{a, a_dtype},
                                                      Src{a_base, a_dtype}, ts, t0, nt, t0 == 0, n, vec,
                                                      reinterpret_cast<unsigned long long*>(counts));
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    t0 += nt;
  } while (t0 < n_ts);
  return cudaSuccess;
}
