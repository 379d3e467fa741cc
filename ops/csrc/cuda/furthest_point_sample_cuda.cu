// CUDA `furthest_point_sample`: one block per batch. Each step, the threads update the
// running minimum distance of their strided points to the last sample and keep their
// farthest point (smallest index among ties); a shared-memory tree reduction with the same
// tie rule picks the next sample, so the result equals the CPU kernel's.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "squared_distance.cuh"

namespace {

constexpr int kFpsThreads = 512;  // a power of two (tree reduction)

template <typename scalar_t>
__global__ void __launch_bounds__(kFpsThreads)
    fps_kernel(const scalar_t* __restrict__ xyz, int64_t n, int64_t num, scalar_t* dist,
               int64_t* idx) {
  __shared__ scalar_t best_dist[kFpsThreads];
  __shared__ int64_t best_idx[kFpsThreads];
  const int tid = threadIdx.x;
  const scalar_t* p = xyz + blockIdx.x * n * 3;
  scalar_t* d = dist + blockIdx.x * n;
  int64_t* o = idx + blockIdx.x * num;
  for (int64_t j = tid; j < n; j += kFpsThreads) d[j] = std::numeric_limits<scalar_t>::infinity();
  if (tid == 0) o[0] = 0;
  int64_t last = 0;
  for (int64_t s = 1; s < num; ++s) {
    const scalar_t x0 = p[3 * last], y0 = p[3 * last + 1], z0 = p[3 * last + 2];
    scalar_t my_dist = -1;
    int64_t my_idx = n;
    for (int64_t j = tid; j < n; j += kFpsThreads) {
      scalar_t dj = ikne::squared_distance(p[3 * j] - x0, p[3 * j + 1] - y0, p[3 * j + 2] - z0);
      if (dj < d[j]) {
        d[j] = dj;
      } else {
        dj = d[j];
      }
      if (dj > my_dist) {
        my_dist = dj;
        my_idx = j;
      }
    }
    best_dist[tid] = my_dist;
    best_idx[tid] = my_idx;
    __syncthreads();
    for (int stride = kFpsThreads / 2; stride > 0; stride >>= 1) {
      if (tid < stride) {
        const scalar_t other_dist = best_dist[tid + stride];
        const int64_t other_idx = best_idx[tid + stride];
        if (other_dist > best_dist[tid] ||
            (other_dist == best_dist[tid] && other_idx < best_idx[tid])) {
          best_dist[tid] = other_dist;
          best_idx[tid] = other_idx;
        }
      }
      __syncthreads();
    }
    last = best_idx[0];
    if (tid == 0) o[s] = last;
    __syncthreads();  // everyone has read best_idx[0] before the next step overwrites it
  }
}

}  // namespace

// xyz [B, N, 3] contiguous; idx [B, num] int64 (contiguous, num >= 1) is filled here.
void furthest_point_sample_cuda(const at::Tensor& xyz, at::Tensor& idx) {
  const at::cuda::CUDAGuard guard(xyz.device());
  const int64_t batches = xyz.size(0), n = xyz.size(1), num = idx.size(1);
  at::Tensor dist = at::empty({batches, n}, xyz.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "furthest_point_sample_cuda", [&] {
    fps_kernel<scalar_t><<<static_cast<unsigned int>(batches), kFpsThreads, 0, stream>>>(
        xyz.data_ptr<scalar_t>(), n, num, dist.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}
