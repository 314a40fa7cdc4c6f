// Kernels that pin down the CUDA semantics tests/cuda_emu must reproduce (tests/core/test_cuda_emulated.py).
// Valid CUDA: nvcc compiles this file too, so the emulator is checked on real CUDA code.
#include <cuda_runtime.h>
#include <stdint.h>

#ifndef SMFA_LAUNCH
#define SMFA_LAUNCH(kernel, grid, block, stream) kernel<<<(grid), (block), 0, (stream)>>>
#endif

namespace {

__global__ void shfl_kernel(unsigned long long* out, double* dout, int delta) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  out[t] = __shfl_down_sync(0xffffffffu, (unsigned long long)t * 10ull, delta);
  dout[t] = __shfl_down_sync(0xffffffffu, (double)t + 0.5, delta);
}

// Without a working barrier thread t would read s[t + 1] before thread t + 1 wrote it.
__global__ void sync_kernel(int* out) {
  __shared__ int s[1024];
  const unsigned t = threadIdx.x;
  s[t] = (int)(t + 1000 * blockIdx.x);
  __syncthreads();
  const int right = s[(t + 1) % blockDim.x];
  __syncthreads();
  s[t] = -1;  // a second phase: nobody may still be reading
  out[blockIdx.x * blockDim.x + t] = right;
}

__global__ void index_kernel(int* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  out[t] = (int)(blockIdx.x * 100000 + threadIdx.x * 10 + (gridDim.x == 3) + (blockDim.x == 40));
}

__global__ void exit_before_shuffle_kernel(unsigned long long* out) {
  if (threadIdx.x == 3) return;  // undefined behaviour on a GPU: the emulator reports it
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (unsigned long long)threadIdx.x, 1);
}

__global__ void deadlock_kernel(unsigned long long* out) {
  if (threadIdx.x < 16)  // half a warp shuffles while everybody else waits at a barrier
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (unsigned long long)threadIdx.x, 1);
  else
    __syncthreads();
}

__global__ void atomic_kernel(unsigned long long* counter) { atomicAdd(counter, 1ull + threadIdx.x % 2); }

}  // namespace

extern "C" {

cudaError_t selftest_shfl(unsigned long long* out, double* dout, int blocks, int delta) {
  SMFA_LAUNCH(shfl_kernel, blocks, 64, (cudaStream_t)0)(out, dout, delta);
  return cudaGetLastError();
}
cudaError_t selftest_sync(int* out, int blocks, int threads) {
  SMFA_LAUNCH(sync_kernel, blocks, threads, (cudaStream_t)0)(out);
  return cudaGetLastError();
}
cudaError_t selftest_index(int* out) {
  SMFA_LAUNCH(index_kernel, 3, 40, (cudaStream_t)0)(out);
  return cudaGetLastError();
}
cudaError_t selftest_exit_before_shuffle(unsigned long long* out) {
  SMFA_LAUNCH(exit_before_shuffle_kernel, 1, 32, (cudaStream_t)0)(out);
  return cudaGetLastError();
}
cudaError_t selftest_deadlock(unsigned long long* out) {
  SMFA_LAUNCH(deadlock_kernel, 1, 64, (cudaStream_t)0)(out);
  return cudaGetLastError();
}
cudaError_t selftest_atomic(unsigned long long* counter, int blocks, int threads) {
  SMFA_LAUNCH(atomic_kernel, blocks, threads, (cudaStream_t)0)(counter);
  return cudaGetLastError();
}

}  // extern "C"
