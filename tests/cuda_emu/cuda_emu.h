// A host emulation of the small part of CUDA that csrc/cuda/*.cu use, so that the CUDA
// kernels' own source runs on a machine without a GPU and its bits can be tested against
// smfa_core/backends/reference.py (tests/core/test_kernels_gpu.py, backend "cuda-emulated").
//
// Build: g++ -std=c++17 -O2 -ffp-contract=off -Itests/cuda_emu csrc/cuda/*.cu tests/cuda_emu/cuda_emu.cpp
// (this directory's cuda_runtime.h / cuda_runtime_api.h / cuda_fp16.h shadow the toolkit's).
//
// Execution model: each CUDA thread is a fiber (ucontext); blocks run one after another, the
// threads of a block round-robin, switching only at barriers. __syncthreads is a block
// barrier, __shfl_*_sync a warp barrier over a per-warp exchange slot (double-buffered, so one
// barrier per shuffle suffices). "Device" pointers are host pointers; launches and memsets are
// synchronous. Emulated faults (a shuffle with exited lanes, a bad launch configuration) are
// reported through cudaGetLastError like real launch errors.
//
// What this does NOT check: memory-model races between threads (fibers never interleave
// inside straight-line code), coalescing or speed, register/shared-memory limits beyond the
// 1024-thread block limit, and uninitialised __shared__ memory (it is static here, so it
// keeps the previous block's values instead of garbage).
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

// ------------------------------------------------------------------ qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// ------------------------------------------------------------------ runtime API subset
typedef enum cudaError_enum_emu {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
} cudaError_t;

typedef struct CUstream_st_emu* cudaStream_t;

enum cudaDeviceAttr { cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMultiProcessorCount = 16 };

extern "C" {
cudaError_t cudaGetDevice(int* dev);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev);
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream);
cudaError_t cudaGetLastError(void);
// Emulation controls (not CUDA): the SM count grids are sized by, and launch statistics.
void smfa_emu_set_sms(int sms);
int64_t smfa_emu_launches(void);
int64_t smfa_emu_threads_run(void);
}

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// ------------------------------------------------------------------ bit casts and rounding
// The _rn intrinsics are IEEE round-to-nearest-even operations; on x86-64 (SSE, no excess
// precision) with -ffp-contract=off plain operators are exactly that.
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }

// fp16: GCC/Clang's _Float16 converts with IEEE round-to-nearest-even, as __float2half_rn.
struct __half {
  uint16_t x;
};
inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }
inline float __half2float(__half h) {
  _Float16 v;
  memcpy(&v, &h.x, 2);
  return (float)v;
}
inline __half __float2half_rn(float f) {
  const _Float16 v = (_Float16)f;
  __half h;
  memcpy(&h.x, &v, 2);
  return h;
}

// ------------------------------------------------------------------ execution model
namespace smfa_emu {

struct ThreadState {
  dim3 idx;
  int warp;
};

const ThreadState& current();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();

void syncthreads();
// Warp exchange: publish 8 bytes, wait for the warp, read lane `src`'s value (own if out of range).
uint64_t warp_exchange(uint64_t mine, int src_lane);

void launch(dim3 grid, dim3 block, void (*body)(void*), void* ctx);

template <class Kernel>
struct Launch {
  dim3 grid, block;
  Kernel* kernel;
  template <class... Args>
  void operator()(Args... args) const {
    // parameters copied once, by value, as a kernel launch copies them
    auto bound = [k = kernel, args...]() { k(args...); };
    using Bound = decltype(bound);
    launch(grid, block, [](void* p) { (*static_cast<Bound*>(p))(); }, &bound);
  }
};

struct Launcher {
  dim3 grid, block;
  cudaStream_t stream;  // launches are synchronous here: every stream is the same
  template <class Kernel>
  Launch<Kernel> operator->*(Kernel* k) const {
    return Launch<Kernel>{grid, block, k};
  }
};

}  // namespace smfa_emu

#define threadIdx (::smfa_emu::current().idx)
#define blockIdx (::smfa_emu::block_idx())
#define blockDim (::smfa_emu::block_dim())
#define gridDim (::smfa_emu::grid_dim())

// The .cu files launch through SMFA_LAUNCH(kernel, grid, block, stream)(args...).
#define SMFA_LAUNCH(kernel, grid, block, stream) \
  (::smfa_emu::Launcher{dim3(grid), dim3(block), (stream)}->*(kernel))

inline void __syncthreads() { smfa_emu::syncthreads(); }

template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "8-byte shuffle only");
  (void)mask;  // the emulator requires (and checks) that all 32 lanes take part
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof(T));
  const int lane = (int)(threadIdx.x & 31u);
  const int src = lane + (int)delta;
  bits = smfa_emu::warp_exchange(bits, src < 32 ? src : lane);
  T out;
  memcpy(&out, &bits, sizeof(T));
  return out;
}

// Fibers never run concurrently: a plain add is atomic here.
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = old + v;
  return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}
