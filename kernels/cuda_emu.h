// CPU emulation of the slice of CUDA that tile_kernel.cu uses, so the very same source compiles with
// g++ and runs in tests on machines without a GPU.
//
// Every CUDA thread of a block is a ucontext fiber with its own stack, all on one OS thread:
// execution is deterministic and __syncthreads() has real barrier semantics (a fiber that reaches
// it yields to the scheduler, which resumes the block only when every live thread waits there).
// Between barriers each thread runs to the next one before the next thread starts, in increasing
// or (`reverse`) decreasing thread order: a missing barrier shows up as a different frame in one
// of the two orders. Blocks run one after another, so `__shared__` can simply mean `static`: one
// copy, shared by the threads of the running block. A barrier that some threads of a block skip
// (they returned) is reported as an error, where real hardware would hang or misbehave.
#pragma once

#include <ucontext.h>

#include <math.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

typedef _Float16 __half;  // IEEE binary16 with round-to-nearest-even conversions, as on the GPU
inline float __half2float(__half h) { return static_cast<float>(h); }

inline int min(int a, int b) { return a < b ? a : b; }

template <typename T>
inline T __ldg(const T* p) { return *p; }

// Built-in variables: the scheduler sets them before it resumes a fiber.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

inline int atomicOr(int* address, int value) {  // fibers never interleave inside a statement
    const int old = *address;
    *address = old | value;
    return old;
}

namespace cuda_emu {

enum class FiberState { running, at_barrier, finished };

struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack;  // uninitialised: only the pages a thread touches are mapped
    FiberState state = FiberState::running;
};

struct Scheduler {
    static constexpr size_t stack_bytes = 256 * 1024;
    ucontext_t main_context;
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
    const std::function<void()>* body = nullptr;
};

inline Scheduler scheduler;

inline void fiber_entry() {
    (*scheduler.body)();
    scheduler.current->state = FiberState::finished;
    // returning resumes uc_link, the scheduler's context
}

inline void resume(Fiber& fiber, unsigned int thread_index) {
    threadIdx = {thread_index % blockDim.x, (thread_index / blockDim.x) % blockDim.y,
                 thread_index / (blockDim.x * blockDim.y)};
    scheduler.current = &fiber;
    swapcontext(&scheduler.main_context, &fiber.context);
}

// Runs one block to completion; throws std::runtime_error on a barrier that not every thread reaches.
inline void run_block(unsigned int n_threads, bool reverse) {
    auto& fibers = scheduler.fibers;
    for (unsigned int t = 0; t < n_threads; ++t) {
        Fiber& f = fibers[t];
        f.state = FiberState::running;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = Scheduler::stack_bytes;
        f.context.uc_link = &scheduler.main_context;
        makecontext(&f.context, fiber_entry, 0);
    }
    for (;;) {
        unsigned int waiting = 0, finished = 0;
        for (unsigned int i = 0; i < n_threads; ++i) {
            const unsigned int t = reverse ? n_threads - 1 - i : i;
            if (fibers[t].state == FiberState::running) resume(fibers[t], t);
            waiting += fibers[t].state == FiberState::at_barrier;
            finished += fibers[t].state == FiberState::finished;
        }
        if (finished == n_threads) return;
        if (finished > 0) {
            throw std::runtime_error("__syncthreads() reached by " + std::to_string(waiting) + " of " +
                                     std::to_string(n_threads) + " threads of block (" +
                                     std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) +
                                     "); the others returned");
        }
        for (unsigned int t = 0; t < n_threads; ++t) fibers[t].state = FiberState::running;
    }
}

// Runs `kernel_call` (a call of a __global__ function with its arguments) as a grid of blocks.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& kernel_call, bool reverse = false) {
    const unsigned int n_threads = block.x * block.y * block.z;
    if (n_threads == 0 || n_threads > 1024) throw std::runtime_error("block of " + std::to_string(n_threads) + " threads");
    if (scheduler.fibers.size() < n_threads) {
        scheduler.fibers.resize(n_threads);
        for (Fiber& f : scheduler.fibers)
            if (!f.stack) f.stack.reset(new char[Scheduler::stack_bytes]);
    }
    scheduler.body = &kernel_call;
    gridDim = grid;
    blockDim = block;
    for (unsigned int z = 0; z < grid.z; ++z)
        for (unsigned int y = 0; y < grid.y; ++y)
            for (unsigned int x = 0; x < grid.x; ++x) {
                blockIdx = {x, y, z};
                run_block(n_threads, reverse);
            }
}

}  // namespace cuda_emu

inline void __syncthreads() {
    cuda_emu::Fiber* self = cuda_emu::scheduler.current;
    self->state = cuda_emu::FiberState::at_barrier;
    swapcontext(&self->context, &cuda_emu::scheduler.main_context);
}
