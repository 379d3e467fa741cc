// CUDA `voxel_pool`: a warp per point (or voxel) row, its lanes over the channels. A p2v outside
// [0, M) is skipped and flagged; the forward raises once its kernels are done.
//   mean: atomic sums and counts, then a division (float sums are therefore
//         not bit-deterministic in their rounding).
//   max:  an atomic compare-and-swap maximum, then the smallest tied point
//         index by atomicMin, so the arg-max (and the gradient) is deterministic.
#include <ATen/ATen.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "cuda_launch.cuh"

namespace {

constexpr long long kNoPoint = std::numeric_limits<long long>::max();

__device__ inline void atomic_max(float* address, float value) {
  int* bits = reinterpret_cast<int*>(address);
  int old = *bits;
  while (value > __int_as_float(old)) {
    const int assumed = old;
    old = atomicCAS(bits, assumed, __float_as_int(value));
    if (old == assumed) break;
  }
}

__device__ inline void atomic_max(double* address, double value) {
  auto* bits = reinterpret_cast<unsigned long long*>(address);
  unsigned long long old = *bits;
  while (value > __longlong_as_double(static_cast<long long>(old))) {
    const unsigned long long assumed = old;
    old = atomicCAS(bits, assumed, static_cast<unsigned long long>(__double_as_longlong(value)));
    if (old == assumed) break;
  }
}

template <typename scalar_t>
__global__ void sum_kernel(const scalar_t* __restrict__ feats, const int64_t* __restrict__ p2v,
                           int64_t n, int64_t channels, int64_t m, scalar_t* out,
                           unsigned long long* counts, int* invalid) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) {
      *invalid = 1;
      continue;
    }
    if (threadIdx.x == 0) atomicAdd(counts + v, 1ULL);
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      gpuAtomicAdd(out + v * channels + c, feats[i * channels + c]);
    }
  }
}

template <typename scalar_t>
__global__ void divide_kernel(scalar_t* out, const int64_t* counts, int64_t m, int64_t channels) {
  IKNE_CUDA_ROW_LOOP(v, m) {
    if (counts[v] == 0) continue;
    const scalar_t count = static_cast<scalar_t>(counts[v]);
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) out[v * channels + c] /= count;
  }
}

template <typename scalar_t>
__global__ void max_kernel(const scalar_t* __restrict__ feats, const int64_t* __restrict__ p2v,
                           int64_t n, int64_t channels, int64_t m, scalar_t* out, int* invalid) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) {
      *invalid = 1;
      continue;
    }
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      atomic_max(out + v * channels + c, feats[i * channels + c]);
    }
  }
}

template <typename scalar_t>
__global__ void argmax_kernel(const scalar_t* __restrict__ feats, const int64_t* __restrict__ p2v,
                              int64_t n, int64_t channels, int64_t m, const scalar_t* out,
                              long long* argmax) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) continue;
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      if (feats[i * channels + c] == out[v * channels + c]) {
        atomicMin(argmax + v * channels + c, static_cast<long long>(i));
      }
    }
  }
}

// Voxels that got no point: value 0, arg-max -1.
template <typename scalar_t>
__global__ void clear_empty_kernel(scalar_t* out, long long* argmax, int64_t size) {
  IKNE_CUDA_LOOP(idx, size) {
    if (argmax[idx] == kNoPoint) {
      argmax[idx] = -1;
      out[idx] = scalar_t(0);
    }
  }
}

template <typename scalar_t>
__global__ void mean_backward_kernel(const scalar_t* __restrict__ grad_out,
                                     const int64_t* __restrict__ p2v,
                                     const int64_t* __restrict__ counts, int64_t n,
                                     int64_t channels, scalar_t* grad_feats) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    const scalar_t count = static_cast<scalar_t>(counts[v]);
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      grad_feats[i * channels + c] = grad_out[v * channels + c] / count;
    }
  }
}

template <typename scalar_t>
__global__ void max_backward_kernel(const scalar_t* __restrict__ grad_out,
                                    const int64_t* __restrict__ argmax, int64_t m,
                                    int64_t channels, scalar_t* grad_feats) {
  IKNE_CUDA_ROW_LOOP(v, m) {
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      const int64_t i = argmax[v * channels + c];
      if (i >= 0) grad_feats[i * channels + c] = grad_out[v * channels + c];
    }
  }
}

}  // namespace

// out [M, C] and aux (counts [M] for mean, argmax [M, C] for max) are filled here.
void voxel_pool_forward_cuda(const at::Tensor& feats, const at::Tensor& p2v, at::Tensor& out,
                             at::Tensor& aux, bool use_max) {
  TORCH_CHECK(feats.is_contiguous() && p2v.is_contiguous() && out.is_contiguous() &&
                  aux.is_contiguous(),
              "voxel_pool_forward_cuda: tensors must be contiguous");
  const at::cuda::CUDAGuard guard(feats.device());
  const int64_t n = feats.size(0), channels = feats.size(1), m = out.size(0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t* p2v_data = p2v.data_ptr<int64_t>();
  at::Tensor invalid = at::zeros({1}, p2v.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "voxel_pool_forward_cuda", [&] {
    const scalar_t* f = feats.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    if (use_max) {
      out.fill_(-std::numeric_limits<scalar_t>::infinity());
      aux.fill_(kNoPoint);
      auto* argmax = reinterpret_cast<long long*>(aux.data_ptr<int64_t>());
      max_kernel<<<ikne::row_grid_size(n), ikne::row_block(), 0, stream>>>(
          f, p2v_data, n, channels, m, o, invalid.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      argmax_kernel<<<ikne::row_grid_size(n), ikne::row_block(), 0, stream>>>(
          f, p2v_data, n, channels, m, o, argmax);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      clear_empty_kernel<<<ikne::grid_size(m * channels), ikne::kThreadsPerBlock, 0, stream>>>(
          o, argmax, m * channels);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      out.zero_();
      aux.zero_();
      auto* counts = reinterpret_cast<unsigned long long*>(aux.data_ptr<int64_t>());
      sum_kernel<<<ikne::row_grid_size(n), ikne::row_block(), 0, stream>>>(
          f, p2v_data, n, channels, m, o, counts, invalid.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      divide_kernel<<<ikne::row_grid_size(m), ikne::row_block(), 0, stream>>>(
          o, aux.data_ptr<int64_t>(), m, channels);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  TORCH_CHECK_VALUE(invalid.item<int>() == 0, "voxel_pool: p2v must lie in [0, ", m, ")");
}

// grad_feats is zero-filled for max (points that are no arg-max get 0).
void voxel_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& p2v,
                              const at::Tensor& aux, at::Tensor& grad_feats, bool use_max) {
  TORCH_CHECK(grad_out.is_contiguous() && p2v.is_contiguous() && aux.is_contiguous() &&
                  grad_feats.is_contiguous(),
              "voxel_pool_backward_cuda: tensors must be contiguous");
  const at::cuda::CUDAGuard guard(grad_out.device());
  const int64_t n = grad_feats.size(0), channels = grad_feats.size(1), m = grad_out.size(0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "voxel_pool_backward_cuda", [&] {
    if (use_max) {
      if (m * channels == 0) return;
      max_backward_kernel<<<ikne::row_grid_size(m), ikne::row_block(), 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), aux.data_ptr<int64_t>(), m, channels,
          grad_feats.data_ptr<scalar_t>());
    } else {
      if (n * channels == 0) return;
      mean_backward_kernel<<<ikne::row_grid_size(n), ikne::row_block(), 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), p2v.data_ptr<int64_t>(), aux.data_ptr<int64_t>(), n,
          channels, grad_feats.data_ptr<scalar_t>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}
