// What the CPU kernels share (csrc/norms_cpu.cpp, sculpt_cpu.cpp, sweep_cpu.cpp, module.cpp):
// the layout constants, the input checks, the thread count, the NaN bits torch writes, the
// huge-page advice, the ops' entry points, and the run-time choice of instruction set.
//
// ISA dispatch. Everything is compiled for the baseline target (x86-64 unless SMFA_MARCH
// says otherwise). Each kernel's ISA-generic body (decode.inc, norms.inc, sculpt.inc,
// sweep.inc, written against `simd::`) is included twice by its .cpp: once in namespace
// `portable` with simd = simd_portable, once, on x86, inside SMFA_AVX2_BEGIN/END in
// namespace `avx2` with simd = simd_avx2. The entry points (plain baseline code) pick one
// per call with SMFA_ISA_CALL, after cpu_isa(): AVX2 when the CPU has AVX2 and F16C, else
// portable; SMFA_CPU_ISA=portable forces the portable path (read once per process).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

#include "smfa_simd.h"

namespace smfa {

constexpr int64_t kBlock = 65536;  // == smfa_core._ops.BLOCK
constexpr int64_t kLanes = 256;    // == smfa_core._ops.LANES
constexpr int64_t kTile = 1024;    // elements per decode tile (multiple of 8)
constexpr int64_t kSerialBelow = 1 << 15;  // smaller inputs run on one thread

static_assert(kBlock % kLanes == 0, "BLOCK must be a multiple of LANES");
static_assert(kLanes % 8 == 0 && kTile % 8 == 0, "8-lane vectors");

// ---- checks (messages start with "smfa::<op>:" and name the argument)
void check_input(const at::Tensor& x, const char* op, const char* name);
// Checks x (and its base, when given) and returns the number of elements.
int64_t check_pair(const at::Tensor& x, const std::optional<at::Tensor>& xb, const char* op,
                   const char* name, const char* base_name);

// OpenMP threads for n elements in `items` independent pieces (1 below kSerialBelow).
int threads_for(int64_t n, int64_t items);

// The bits torch's CPU `.to(torch.bfloat16)` gives a NaN in this process (0xFFFF or 0x7FC0).
uint16_t bf16_nan_bits();

// Ask for transparent huge pages on a large, probably fresh output (best effort).
void advise_huge_pages(void* ptr, int64_t bytes);

// ---- instruction set of the vector code, chosen once per process
enum class CpuIsa { kPortable, kAvx2 };
CpuIsa cpu_isa();
const char* cpu_isa_name();  // "avx2" or "portable"
inline bool use_avx2() { return cpu_isa() == CpuIsa::kAvx2; }

// dst[i] = float(x[i]) (- float(xb[i])), i < len, zero-padded to a multiple of 8 (decode.inc)
using DecodeFn = void (*)(const void*, const void*, int64_t, float*);

// ---- the ops (registered in module.cpp; schemas in smfa_core/_ops.py)
at::Tensor sumsq_blocks_cpu(const at::Tensor& x, const std::optional<at::Tensor>& x_base);
at::Tensor sculpt_chunk_cpu(const at::Tensor& f, const std::optional<at::Tensor>& f_base,
                            const at::Tensor& a, const std::optional<at::Tensor>& a_base, double t,
                            int64_t mode, const std::optional<at::Tensor>& w, const at::Tensor& out,
                            const std::optional<at::Tensor>& mask);
at::Tensor sweep_counts_cpu(const at::Tensor& f, const std::optional<at::Tensor>& f_base,
                            const at::Tensor& a, const std::optional<at::Tensor>& a_base,
                            const at::Tensor& ts);

}  // namespace smfa

// fn(args) from the ISA chosen by cpu_isa(): avx2::fn or portable::fn (both compiled from the
// same body, see above). Non-x86 builds have the portable one only.
#ifdef SMFA_X86
#define SMFA_ISA_CALL(fn, ...) (::smfa::use_avx2() ? avx2::fn(__VA_ARGS__) : portable::fn(__VA_ARGS__))
#else
#define SMFA_ISA_CALL(fn, ...) (portable::fn(__VA_ARGS__))
#endif
