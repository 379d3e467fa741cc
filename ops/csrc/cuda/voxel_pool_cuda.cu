// CUDA `voxel_pool`: rows of points (or voxels) over threads y and the grid,
// channels over threads x. A p2v outside [0, M) is skipped and sets the flag.
//   mean: counts first, then each point adds feats / count atomically (float
//         rounding therefore not bit-deterministic); float32 rows of a multiple
//         of 4 channels use 16-byte atomics.
//   max:  float32: one 64-bit atomicMax of (value bits, point index) keys, then
//         a decode; other dtypes: a compare-and-swap maximum, then the smallest
//         tied point index by atomicMin. Both give the smallest index among ties.
#include <ATen/ATen.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>
#include <limits>
#include <type_traits>

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

// counts[v] = number of points of voxel v; a p2v outside [0, M) sets the flag.
__global__ void count_kernel(const int64_t* __restrict__ p2v, int64_t n, int64_t m,
                             unsigned long long* counts, unsigned long long* flag) {
  IKNE_CUDA_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) {
      *flag = 1;
    } else {
      atomicAdd(counts + v, 1ULL);
    }
  }
}

// dst[0 : kVec] += scale * src[0 : kVec] atomically; kVec = 4 (float only) is
// one 16-byte atomic on sm_90 and later.
template <int kVec, typename scalar_t>
__device__ inline void atomic_add_scaled(scalar_t* dst, const scalar_t* src, scalar_t scale) {
  if constexpr (kVec == 4) {
    const float4 x = *reinterpret_cast<const float4*>(src);
    const float4 y = make_float4(x.x * scale, x.y * scale, x.z * scale, x.w * scale);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4*>(dst), y);
#else
    atomicAdd(dst, y.x);
    atomicAdd(dst + 1, y.y);
    atomicAdd(dst + 2, y.z);
    atomicAdd(dst + 3, y.w);
#endif
  } else {
    gpuAtomicAdd(dst, *src * scale);
  }
}

// out[v] += feats[i] / counts[v] over the points i of each voxel v: the mean
// without a division pass over the voxels. Rows over threads y, kVec channels
// per thread x.
template <typename scalar_t, int kVec>
__global__ void mean_kernel(const scalar_t* __restrict__ feats, const int64_t* __restrict__ p2v,
                            const int64_t* __restrict__ counts, int64_t n, int64_t channels,
                            int64_t m, scalar_t* out) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) continue;  // flagged by count_kernel
    const scalar_t scale = scalar_t(1) / static_cast<scalar_t>(counts[v]);
    for (int64_t c = threadIdx.x * kVec; c < channels; c += blockDim.x * kVec) {
      atomic_add_scaled<kVec>(out + v * channels + c, feats + i * channels + c, scale);
    }
  }
}

// float32 max in one pass: the value's order-preserving bits above the
// complement of the point index, so one 64-bit atomicMax keeps the largest
// value and, among ties, the smallest index. 0 (no point) sorts below all keys.
__device__ inline unsigned long long max_key(float value, int64_t i) {
  const unsigned int bits = __float_as_uint(value);
  const unsigned int ordered = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
  return (static_cast<unsigned long long>(ordered) << 32) | (0xFFFFFFFFu - static_cast<unsigned int>(i));
}

__global__ void max_key_kernel(const float* __restrict__ feats, const int64_t* __restrict__ p2v,
                               int64_t n, int64_t channels, int64_t m, unsigned long long* keys,
                               unsigned long long* flag) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) {
      *flag = 1;
      continue;
    }
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      atomicMax(keys + v * channels + c, max_key(feats[i * channels + c], i));
    }
  }
}

// keys -> out values and, in place, argmax (-1 and 0 for empty voxels).
__global__ void decode_max_kernel(int64_t* keys_argmax, float* out, int64_t size) {
  IKNE_CUDA_LOOP(idx, size) {
    const auto key = static_cast<unsigned long long>(keys_argmax[idx]);
    if (key == 0) {
      keys_argmax[idx] = -1;
      out[idx] = 0.f;
      continue;
    }
    const unsigned int ordered = static_cast<unsigned int>(key >> 32);
    out[idx] = __uint_as_float(ordered & 0x80000000u ? ordered & 0x7FFFFFFFu : ~ordered);
    keys_argmax[idx] = 0xFFFFFFFFu - static_cast<unsigned int>(key & 0xFFFFFFFFu);
  }
}

// Any dtype and size: an atomic compare-and-swap maximum, then the smallest
// tied point index by atomicMin.
template <typename scalar_t>
__global__ void max_kernel(const scalar_t* __restrict__ feats, const int64_t* __restrict__ p2v,
                           int64_t n, int64_t channels, int64_t m, scalar_t* out,
                           unsigned long long* flag) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) {
      *flag = 1;
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

// grad_feats[i, c] = grad_out[v, c] where point i is the arg-max of its voxel
// v in channel c, else 0: one pass over the points, no zero fill.
template <typename scalar_t>
__global__ void max_backward_kernel(const scalar_t* __restrict__ grad_out,
                                    const int64_t* __restrict__ p2v,
                                    const int64_t* __restrict__ argmax, int64_t n,
                                    int64_t channels, scalar_t* grad_feats) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) {
      grad_feats[i * channels + c] =
          argmax[v * channels + c] == i ? grad_out[v * channels + c] : scalar_t(0);
    }
  }
}

// Threads x over channels (kVec each, a power of two up to 32 lanes), y over rows.
dim3 row_block_for(int64_t lanes_needed) {
  int lanes = 1;
  while (lanes < lanes_needed && lanes < 32) lanes *= 2;
  return dim3(lanes, ikne::kThreadsPerBlock / lanes);
}

unsigned int row_grid_for(int64_t rows, const dim3& block) {
  const int64_t blocks = (rows + block.y - 1) / block.y;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

template <typename scalar_t, int kVec>
void launch_mean(const at::Tensor& feats, const at::Tensor& p2v, const at::Tensor& counts,
                 at::Tensor& out, cudaStream_t stream) {
  const int64_t n = feats.size(0), channels = feats.size(1);
  const dim3 block = row_block_for(channels / kVec);
  mean_kernel<scalar_t, kVec><<<row_grid_for(n, block), block, 0, stream>>>(
      feats.data_ptr<scalar_t>(), p2v.data_ptr<int64_t>(), counts.data_ptr<int64_t>(), n, channels,
      out.size(0), out.data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

// Returns {out [M, C], aux (counts [M] for mean, argmax [M, C] for max), flag}.
// The flag is one more element of the counts or keys, so it shares their zero fill.
// N, M, C >= 1: the wrapper sends empty inputs to the reference.
std::vector<at::Tensor> voxel_pool_forward_cuda(const at::Tensor& feats, const at::Tensor& p2v,
                                                int64_t m, bool use_max) {
  const at::cuda::CUDAGuard guard(feats.device());
  const int64_t n = feats.size(0), channels = feats.size(1);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t* p2v_data = p2v.data_ptr<int64_t>();
  const auto long_options = p2v.options();
  if (use_max && feats.scalar_type() == at::kFloat && n < 0xFFFFFFFFLL) {
    at::Tensor keys = at::zeros({m * channels + 1}, long_options);
    at::Tensor out = at::empty({m, channels}, feats.options());
    auto* key_data = reinterpret_cast<unsigned long long*>(keys.data_ptr<int64_t>());
    const dim3 block = row_block_for(channels);
    max_key_kernel<<<row_grid_for(n, block), block, 0, stream>>>(
        feats.data_ptr<float>(), p2v_data, n, channels, m, key_data, key_data + m * channels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    decode_max_kernel<<<ikne::grid_size(m * channels), ikne::kThreadsPerBlock, 0, stream>>>(
        keys.data_ptr<int64_t>(), out.data_ptr<float>(), m * channels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {out, keys.narrow(0, 0, m * channels).view({m, channels}), keys.narrow(0, m * channels, 1)};
  }
  if (use_max) {
    at::Tensor out = at::empty({m, channels}, feats.options());
    at::Tensor argmax = at::empty({m * channels + 1}, long_options);
    argmax.narrow(0, 0, m * channels).fill_(kNoPoint);
    argmax.narrow(0, m * channels, 1).zero_();
    auto* argmax_data = reinterpret_cast<long long*>(argmax.data_ptr<int64_t>());
    const dim3 block = row_block_for(channels);
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "voxel_pool_forward_cuda", [&] {
      out.fill_(-std::numeric_limits<scalar_t>::infinity());
      const scalar_t* f = feats.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      max_kernel<<<row_grid_for(n, block), block, 0, stream>>>(
          f, p2v_data, n, channels, m, o,
          reinterpret_cast<unsigned long long*>(argmax_data + m * channels));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      argmax_kernel<<<row_grid_for(n, block), block, 0, stream>>>(f, p2v_data, n, channels, m, o,
                                                                  argmax_data);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      clear_empty_kernel<<<ikne::grid_size(m * channels), ikne::kThreadsPerBlock, 0, stream>>>(
          o, argmax_data, m * channels);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return {out, argmax.narrow(0, 0, m * channels).view({m, channels}),
            argmax.narrow(0, m * channels, 1)};
  }
  at::Tensor counts = at::zeros({m + 1}, long_options);
  at::Tensor out = at::zeros({m, channels}, feats.options());
  auto* count_data = reinterpret_cast<unsigned long long*>(counts.data_ptr<int64_t>());
  count_kernel<<<ikne::grid_size(n), ikne::kThreadsPerBlock, 0, stream>>>(p2v_data, n, m, count_data,
                                                                          count_data + m);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const bool vec4 = feats.scalar_type() == at::kFloat && channels % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(feats.data_ptr()) % 16 == 0;
  if (vec4) {
    launch_mean<float, 4>(feats, p2v, counts, out, stream);
  } else {
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "voxel_pool_forward_cuda",
                               [&] { launch_mean<scalar_t, 1>(feats, p2v, counts, out, stream); });
  }
  return {out, counts.narrow(0, 0, m), counts.narrow(0, m, 1)};
}

at::Tensor voxel_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& p2v,
                                    const at::Tensor& aux, bool use_max) {
  const at::cuda::CUDAGuard guard(grad_out.device());
  const int64_t n = p2v.size(0), channels = grad_out.size(1);
  at::Tensor grad_feats = at::empty({n, channels}, grad_out.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const dim3 block = row_block_for(channels);
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "voxel_pool_backward_cuda", [&] {
    if (use_max) {
      max_backward_kernel<<<row_grid_for(n, block), block, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), p2v.data_ptr<int64_t>(), aux.data_ptr<int64_t>(), n,
          channels, grad_feats.data_ptr<scalar_t>());
    } else {
      mean_backward_kernel<<<row_grid_for(n, block), block, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), p2v.data_ptr<int64_t>(), aux.data_ptr<int64_t>(), n,
          channels, grad_feats.data_ptr<scalar_t>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_feats;
}
