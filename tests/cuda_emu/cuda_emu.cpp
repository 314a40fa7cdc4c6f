// The fiber scheduler and runtime calls behind cuda_emu.h (see there for the model).
#include "cuda_emu.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace smfa_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreads = 1024;

struct Fiber {
  ucontext_t uc;
  ThreadState st;
  bool done = false;
};

struct State {
  dim3 grid, block, bidx;
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;  // one per thread slot, kept for the process's life
  ucontext_t sched;
  int cur = -1;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  // barriers: the last thread to arrive bumps the generation the others wait on
  int live = 0, block_arrived = 0;
  uint64_t block_gen = 0;
  std::vector<int> warp_size, warp_live, warp_arrived;
  std::vector<uint64_t> warp_gen;
  std::vector<uint64_t> slots;  // [2][warps][32]: shuffle exchange, double-buffered
  std::vector<unsigned char> parity;
  uint64_t events = 0;  // barrier arrivals, releases and exits: progress for deadlock detection
  cudaError_t error = cudaSuccess;
  int sms = 2;
  int64_t launches = 0, threads_run = 0;
};

State S;
std::mutex launch_mutex;
const ThreadState kHost{};

inline void compiler_barrier() { asm volatile("" ::: "memory"); }

void fail(cudaError_t e) {
  if (S.error == cudaSuccess) S.error = e;
}

// Back to the scheduler; returns when this fiber is resumed.
void yield() {
  const int me = S.cur;
  compiler_barrier();
  swapcontext(&S.fibers[me].uc, &S.sched);
  compiler_barrier();
}

char* stack_for(size_t i) {
  while (S.stacks.size() <= i) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) abort();
    mprotect(p, page, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
    S.stacks.push_back(static_cast<char*>(p) + page);
  }
  return S.stacks[i];
}

void thread_exit(int i) {
  Fiber& f = S.fibers[i];
  f.done = true;
  --S.live;
  const int w = f.st.warp;
  --S.warp_live[w];
  ++S.events;
  if (S.warp_arrived[w] > 0) {  // lanes wait at a shuffle this thread will never reach
    fail(cudaErrorLaunchFailure);
    S.warp_arrived[w] = 0;
    ++S.warp_gen[w];
  }
  if (S.block_arrived > 0) {  // threads wait at a __syncthreads this thread will never reach
    fail(cudaErrorLaunchFailure);
    S.block_arrived = 0;
    ++S.block_gen;
  }
}

void entry() {
  const int i = S.cur;
  S.body(S.ctx);
  thread_exit(i);
  // returning resumes uc_link, the scheduler
}

void run_block() {
  const unsigned n = S.block.x * S.block.y * S.block.z;
  const int nwarps = (int)((n + 31) / 32);
  S.fibers.assign(n, Fiber{});
  S.warp_size.assign(nwarps, 0);
  for (int w = 0; w < nwarps; ++w) S.warp_size[w] = (int)(n - 32u * w < 32u ? n - 32u * w : 32u);
  S.warp_live = S.warp_size;
  S.warp_arrived.assign(nwarps, 0);
  S.warp_gen.assign(nwarps, 0);
  S.slots.assign((size_t)2 * nwarps * 32, 0);
  S.parity.assign(n, 0);
  S.live = (int)n;
  S.block_arrived = 0;
  for (unsigned t = 0; t < n; ++t) {
    Fiber& f = S.fibers[t];
    f.st.idx = dim3(t % S.block.x, (t / S.block.x) % S.block.y, t / (S.block.x * S.block.y));
    f.st.warp = (int)(t / 32);
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = stack_for(t);
    f.uc.uc_stack.ss_size = kStackBytes;
    f.uc.uc_link = &S.sched;
    makecontext(&f.uc, entry, 0);
  }
  S.threads_run += n;
  while (S.live > 0) {
    const uint64_t before = S.events;
    for (unsigned t = 0; t < n; ++t) {
      if (S.fibers[t].done) continue;
      S.cur = (int)t;
      compiler_barrier();
      swapcontext(&S.sched, &S.fibers[t].uc);
      compiler_barrier();
    }
    if (S.events == before) {  // a whole round without progress: the barriers can never open
      fail(cudaErrorLaunchFailure);
      break;
    }
  }
  S.cur = -1;
}

}  // namespace

const ThreadState& current() { return S.cur >= 0 ? S.fibers[S.cur].st : kHost; }
const dim3& block_idx() { return S.bidx; }
const dim3& block_dim() { return S.block; }
const dim3& grid_dim() { return S.grid; }

void syncthreads() {
  const uint64_t g = S.block_gen;
  ++S.events;
  if (++S.block_arrived == S.live) {
    S.block_arrived = 0;
    ++S.block_gen;
    return;
  }
  while (S.block_gen == g) yield();
}

uint64_t warp_exchange(uint64_t mine, int src_lane) {
  const int t = S.cur;
  const int w = S.fibers[t].st.warp;
  const int nwarps = (int)S.warp_gen.size();
  if (S.warp_live[w] != S.warp_size[w]) fail(cudaErrorLaunchFailure);  // a lane has exited
  const int par = S.parity[t];
  S.parity[t] ^= 1;
  uint64_t* slot = &S.slots[((size_t)par * nwarps + w) * 32];
  slot[t % 32] = mine;
  const uint64_t g = S.warp_gen[w];
  ++S.events;
  if (++S.warp_arrived[w] == S.warp_live[w]) {
    S.warp_arrived[w] = 0;
    ++S.warp_gen[w];
  } else {
    while (S.warp_gen[w] == g) yield();
  }
  // The next shuffle writes the other buffer; this one is rewritten only after every lane
  // has passed the next barrier, i.e. after every lane has read from it here.
  return slot[src_lane];
}

void launch(dim3 grid, dim3 block, void (*body)(void*), void* ctx) {
  std::lock_guard<std::mutex> lock(launch_mutex);
  const uint64_t nt = (uint64_t)block.x * block.y * block.z;
  if (nt == 0 || nt > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
      grid.z > 65535) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  ++S.launches;
  S.grid = grid;
  S.block = block;
  S.body = body;
  S.ctx = ctx;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        S.bidx = dim3(x, y, z);
        run_block();
      }
}

}  // namespace smfa_emu

extern "C" {

cudaError_t cudaGetDevice(int* dev) {
  *dev = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev) {
  if (dev != 0) return cudaErrorInvalidValue;
  switch (attr) {
    case cudaDevAttrMultiProcessorCount:
      *value = smfa_emu::S.sms;
      return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock:
      *value = (int)smfa_emu::kMaxThreads;
      return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t) {
  if (n > 0 && p == nullptr) return cudaErrorInvalidValue;
  memset(p, value, n);
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = smfa_emu::S.error;
  smfa_emu::S.error = cudaSuccess;
  return e;
}

void smfa_emu_set_sms(int sms) { smfa_emu::S.sms = sms < 1 ? 1 : sms; }
int64_t smfa_emu_launches(void) { return smfa_emu::S.launches; }
int64_t smfa_emu_threads_run(void) { return smfa_emu::S.threads_run; }

}  // extern "C"
