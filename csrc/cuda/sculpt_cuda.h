// smfa CUDA kernels: a small C launcher API over raw device pointers (no torch here).
//
// Same bits as smfa_core/backends/reference.py (see smfa_core/_ops.py for the op set).
// Every launcher is asynchronous on `stream`, returns the first CUDA error it meets
// (cudaSuccess otherwise) and never aborts. Pointers are device pointers; a NULL
// optional pointer (x_base, w, mask) means "not given". Tensors are flat and contiguous;
// 16-byte vector loads are used when every pointer is 16-byte aligned, scalar otherwise.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// dtype codes (also in smfa_core/backends/triton_kernels.py: KIND)
enum { SMFA_DTYPE_F32 = 0, SMFA_DTYPE_F16 = 1, SMFA_DTYPE_BF16 = 2 };

#define SMFA_CUDA_BLOCK 65536  // == smfa_core._ops.BLOCK
#define SMFA_CUDA_LANES 256    // == smfa_core._ops.LANES

// out[b] = sum of squares of block b (fp64), canonical lane order; ceil(n / BLOCK) values.
// x_base (same dtype code as x) may be NULL.
cudaError_t smfa_cuda_sumsq_blocks(const void* x, const void* x_base, int dtype, int64_t n,
                                   double* out, cudaStream_t stream);

// out = M ? 0 : f, or round(w + that); mask (ceil(n/8) bytes) may be NULL, w may be NULL.
// counts: 3 int64 on the device, overwritten with [conflict, masked, non-finite outputs]
// (NaN/Inf in out as written, an overflow of out's dtype included).
cudaError_t smfa_cuda_sculpt_chunk(const void* f, const void* f_base, int f_dtype,
                                   const void* a, const void* a_base, int a_dtype,
                                   float t, int mode, const void* w, int w_dtype,
                                   void* out, int out_dtype, uint8_t* mask, int64_t n,
                                   int64_t* counts, cudaStream_t stream);

// counts: 1 + n_ts int64 on the device, overwritten with [conflict, masked at ts[i]...]
// (mode "both"); ts: n_ts float32 on the device.
cudaError_t smfa_cuda_sweep_counts(const void* f, const void* f_base, int f_dtype,
                                   const void* a, const void* a_base, int a_dtype,
                                   const float* ts, int64_t n_ts, int64_t n, int64_t* counts,
                                   cudaStream_t stream);

#ifdef __cplusplus
}
#endif
