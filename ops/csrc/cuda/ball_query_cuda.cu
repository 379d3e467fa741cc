// CUDA `ball_query`: a thread per centre scans the points in order, exactly as the CPU
// kernel does (same rounding of the squared distance, same fill rule).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda_launch.cuh"
#include "squared_distance.cuh"

namespace {

template <typename scalar_t>
__global__ void ball_query_kernel(const scalar_t* __restrict__ center,
                                  const scalar_t* __restrict__ xyz, int64_t m, int64_t n,
                                  int64_t k, int64_t rows, scalar_t r2, int64_t* idx) {
  IKNE_CUDA_LOOP(row, rows) {
    const scalar_t* c = center + 3 * row;
    const scalar_t* p = xyz + (row / m) * n * 3;
    int64_t* o = idx + row * k;
    int64_t found = 0;
    for (int64_t j = 0; j < n && found < k; ++j) {
      if (ikne::squared_distance(p[3 * j] - c[0], p[3 * j + 1] - c[1], p[3 * j + 2] - c[2]) < r2) {
        o[found++] = j;
      }
    }
    const int64_t fill = found > 0 ? o[0] : -1;
    for (int64_t s = found; s < k; ++s) o[s] = fill;
  }
}

}  // namespace

// center [B, M, 3] and xyz [B, N, 3] contiguous; idx [B, M, K] (contiguous, non-empty) is
// filled here.
void ball_query_cuda(const at::Tensor& center, const at::Tensor& xyz, double radius,
                     at::Tensor& idx) {
  const at::cuda::CUDAGuard guard(center.device());
  const int64_t m = center.size(1), n = xyz.size(1), k = idx.size(2);
  const int64_t rows = center.size(0) * m;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(center.scalar_type(), "ball_query_cuda", [&] {
    ball_query_kernel<scalar_t><<<ikne::grid_size(rows), ikne::kThreadsPerBlock, 0, stream>>>(
        center.data_ptr<scalar_t>(), xyz.data_ptr<scalar_t>(), m, n, k, rows,
        static_cast<scalar_t>(radius * radius), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}
