// Host emulation of the CUDA execution model, to run the kernels of
// src/cuda/kernels/ on a machine without a GPU (tests/kernels_on_host.rs).
// Blocks run one after another; the threads of a block run as real threads
// and __syncthreads() is a barrier, so a missing barrier or a race between
// the threads of a stage shows up as a wrong result.
#include <condition_variable>
#include <mutex>
#include <cmath>
#include <cstddef>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
// A reusable barrier: the last thread to arrive starts the next generation.
class Barrier {
    std::mutex m_;
    std::condition_variable cv_;
    unsigned count_, waiting_ = 0, generation_ = 0;

  public:
    explicit Barrier(unsigned count) : count_(count) {}
    void arrive_and_wait() {
        std::unique_lock<std::mutex> lock(m_);
        unsigned gen = generation_;
        if (++waiting_ == count_) {
            waiting_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return gen != generation_; });
        }
    }
};
Barrier* g_barrier;
float* g_smem;  // stands for `extern __shared__ float smem[]`

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
inline void __syncthreads() { g_barrier->arrive_and_wait(); }
inline void sincosf(float x, float* s, float* c) {
    *s = std::sin(x);
    *c = std::cos(x);
}

template <class F>
void launch(unsigned grid, unsigned block, size_t smem_bytes, F f) {
    gridDim.x = grid;
    blockDim.x = block;
    std::vector<float> smem(smem_bytes / 4 + 1, NAN);
    for (unsigned b = 0; b < grid; ++b) {
        Barrier bar(block);
        g_barrier = &bar;
        g_smem = smem.data();
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([=] {
                threadIdx.x = t;
                blockIdx.x = b;
                f();
            });
        for (auto& t : threads) t.join();
    }
}
