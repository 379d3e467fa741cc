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

// counts[v] = number of points of voxel v (a p2v outside [0, M) sets the
// flag), and out [size] = 0, so that no fill is launched for it.
template <typename scalar_t>
__global__ void count_kernel(const int64_t* __restrict__ p2v, int64_t n, int64_t m,
                             unsigned long long* counts, scalar_t* out, int64_t size, int* flag) {
  IKNE_CUDA_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (v < 0 || v >= m) {
      *flag = 1;
    } else {
      atomicAdd(counts + v, 1ULL);
    }
  }
  IKNE_CUDA_LOOP(k, size) { out[k] = scalar_t(0); }
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
                               int* flag) {
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

// The arg-max point of a max_key (-1 for 0, no point), or aux itself if it is
// a plain arg-max (the other dtypes' path).
template <bool kPacked>
__device__ inline int64_t argmax_point(int64_t aux) {
  if constexpr (kPacked) {
    return aux == 0 ? -1 : 0xFFFFFFFFLL - (aux & 0xFFFFFFFFLL);
  } else {
    return aux;
  }
}

// keys -> the maximum values (0 for empty voxels); the keys stay as aux.
__global__ void decode_max_kernel(const int64_t* __restrict__ keys, float* out, int64_t size) {
  IKNE_CUDA_LOOP(idx, size) {
    const auto ordered = static_cast<unsigned int>(static_cast<unsigned long long>(keys[idx]) >> 32);
    out[idx] = keys[idx] == 0 ? 0.f
                              : __uint_as_float(ordered & 0x80000000u ? ordered & 0x7FFFFFFFu : ~ordered);
  }
}

// Any dtype and size: an atomic compare-and-swap maximum, then the smallest
// tied point index by atomicMin.
template <typename scalar_t>
__global__ void max_kernel(const scalar_t* __restrict__ feats, const int64_t* __restrict__ p2v,
                           int64_t n, int64_t channels, int64_t m, scalar_t* out, int* flag) {
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

// In the backward kernels: a voxel index outside [0, m) (which the forward
// flagged; the wrapper may raise only later) gives point i a zero gradient.
template <typename scalar_t>
__device__ bool outside(int64_t v, int64_t m, int64_t i, int64_t channels, scalar_t* grad_feats) {
  if (v >= 0 && v < m) return false;
  for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) grad_feats[i * channels + c] = scalar_t(0);
  return true;
}

template <typename scalar_t, int kVec>
__global__ void mean_backward_kernel(const scalar_t* __restrict__ grad_out,
                                     const int64_t* __restrict__ p2v,
                                     const int64_t* __restrict__ counts, int64_t n,
                                     int64_t channels, int64_t m, scalar_t* grad_feats) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (outside(v, m, i, channels, grad_feats)) continue;
    const scalar_t count = static_cast<scalar_t>(counts[v]);
    for (int64_t c = threadIdx.x * kVec; c < channels; c += blockDim.x * kVec) {
      if constexpr (kVec == 4) {
        const float4 g = *reinterpret_cast<const float4*>(grad_out + v * channels + c);
        *reinterpret_cast<float4*>(grad_feats + i * channels + c) =
            make_float4(g.x / count, g.y / count, g.z / count, g.w / count);
      } else {
        grad_feats[i * channels + c] = grad_out[v * channels + c] / count;
      }
    }
  }
}

// grad_feats[i, c] = grad_out[v, c] where point i is the arg-max of its voxel
// v in channel c, else 0: one pass over the points, no zero fill.
template <typename scalar_t, int kVec, bool kPacked>
__global__ void max_backward_kernel(const scalar_t* __restrict__ grad_out,
                                    const int64_t* __restrict__ p2v,
                                    const int64_t* __restrict__ aux, int64_t n,
                                    int64_t channels, int64_t m, scalar_t* grad_feats) {
  IKNE_CUDA_ROW_LOOP(i, n) {
    const int64_t v = p2v[i];
    if (outside(v, m, i, channels, grad_feats)) continue;
    for (int64_t c = threadIdx.x * kVec; c < channels; c += blockDim.x * kVec) {
      const int64_t* a = aux + v * channels + c;
      if constexpr (kVec == 4) {
        const float4 g = *reinterpret_cast<const float4*>(grad_out + v * channels + c);
        *reinterpret_cast<float4*>(grad_feats + i * channels + c) = make_float4(
            argmax_point<kPacked>(a[0]) == i ? g.x : 0.f, argmax_point<kPacked>(a[1]) == i ? g.y : 0.f,
            argmax_point<kPacked>(a[2]) == i ? g.z : 0.f, argmax_point<kPacked>(a[3]) == i ? g.w : 0.f);
      } else {
        grad_feats[i * channels + c] =
            argmax_point<kPacked>(a[0]) == i ? grad_out[v * channels + c] : scalar_t(0);
      }
    }
  }
}

// Launches a row kernel over `rows` rows of `channels`, `vec` channels a thread.
template <typename Kernel, typename... Args>
void launch_rows(int vec, Kernel kernel, int64_t rows, int64_t channels, cudaStream_t stream,
                 Args... args) {
  const dim3 block = ikne::row_block(channels / vec);
  kernel<<<ikne::row_grid_size(rows, block), block, 0, stream>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// A zero-filled tensor by a memset on `stream`: cheaper on the host than at::zeros's fill kernel.
at::Tensor zeros_on_stream(at::IntArrayRef sizes, const at::TensorOptions& options,
                           cudaStream_t stream) {
  at::Tensor zeros = at::empty(sizes, options);
  C10_CUDA_CHECK(cudaMemsetAsync(zeros.data_ptr(), 0, zeros.nbytes(), stream));
  return zeros;
}

// Float32 rows of a multiple of 4 channels starting on 16 bytes: float4 access.
bool float4_rows(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat && t.size(1) % 4 == 0 &&
         reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

// The one-pass float32 max (max_key keys as aux) applies: point indices fit in 32 bits.
bool packed_max(const at::Tensor& values, int64_t n) {
  return values.scalar_type() == at::kFloat && n < 0xFFFFFFFFLL;
}

}  // namespace

// Returns {out [M, C], aux}: aux = counts [M] for mean; for max, the max_key
// keys [M, C] (float32) or the arg-max [M, C]. The kernels set flag, pinned host
// memory (device-accessible under unified addressing), without a copy or a wait.
// N, M, C >= 1: the wrapper sends empty inputs to the reference.
std::vector<at::Tensor> voxel_pool_forward_cuda(const at::Tensor& feats, const at::Tensor& p2v,
                                                int64_t m, bool use_max, int* flag) {
  const at::cuda::CUDAGuard guard(feats.device());
  const int64_t n = feats.size(0), channels = feats.size(1);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t* p2v_data = p2v.data_ptr<int64_t>();
  const auto long_options = p2v.options();
  const bool vec4 = float4_rows(feats);
  at::Tensor out, aux;
  if (use_max && packed_max(feats, n)) {
    aux = zeros_on_stream({m, channels}, long_options, stream);
    out = at::empty({m, channels}, feats.options());
    auto* keys = reinterpret_cast<unsigned long long*>(aux.data_ptr<int64_t>());
    // One channel a lane (measured on an H200: float4 rows made its atomics slower, 47 vs 25 us).
    launch_rows(1, max_key_kernel, n, channels, stream, feats.data_ptr<float>(), p2v_data, n,
                channels, m, keys, flag);
    decode_max_kernel<<<ikne::grid_size(m * channels), ikne::kThreadsPerBlock, 0, stream>>>(
        aux.data_ptr<int64_t>(), out.data_ptr<float>(), m * channels);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else if (use_max) {
    aux = at::full({m, channels}, kNoPoint, long_options);
    auto* argmax = reinterpret_cast<long long*>(aux.data_ptr<int64_t>());
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "voxel_pool_forward_cuda", [&] {
      out = at::full({m, channels}, -std::numeric_limits<scalar_t>::infinity(), feats.options());
      const scalar_t* f = feats.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      launch_rows(1, max_kernel<scalar_t>, n, channels, stream, f, p2v_data, n, channels, m, o,
                  flag);
      launch_rows(1, argmax_kernel<scalar_t>, n, channels, stream, f, p2v_data, n, channels, m,
                  static_cast<const scalar_t*>(o), argmax);
      clear_empty_kernel<<<ikne::grid_size(m * channels), ikne::kThreadsPerBlock, 0, stream>>>(
          o, argmax, m * channels);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  } else {
    aux = zeros_on_stream({m}, long_options, stream);
    out = at::empty({m, channels}, feats.options());
    auto* counts = reinterpret_cast<unsigned long long*>(aux.data_ptr<int64_t>());
    const int64_t* counts_data = aux.data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "voxel_pool_forward_cuda", [&] {
      count_kernel<<<ikne::grid_size(std::max(n, m * channels)), ikne::kThreadsPerBlock, 0, stream>>>(
          p2v_data, n, m, counts, out.data_ptr<scalar_t>(), m * channels, flag);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (vec4) {
        launch_rows(4, mean_kernel<float, 4>, n, channels, stream, feats.data_ptr<float>(),
                    p2v_data, counts_data, n, channels, m, out.data_ptr<float>());
      } else {
        launch_rows(1, mean_kernel<scalar_t, 1>, n, channels, stream, feats.data_ptr<scalar_t>(),
                    p2v_data, counts_data, n, channels, m, out.data_ptr<scalar_t>());
      }
    });
  }
  return {out, aux};
}

at::Tensor voxel_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& p2v,
                                    const at::Tensor& aux, bool use_max) {
  const at::cuda::CUDAGuard guard(grad_out.device());
  const int64_t n = p2v.size(0), channels = grad_out.size(1), m = grad_out.size(0);
  at::Tensor grad_feats = at::empty({n, channels}, grad_out.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t* p2v_data = p2v.data_ptr<int64_t>();
  const int64_t* aux_data = aux.data_ptr<int64_t>();
  const bool packed = use_max && packed_max(grad_out, n);
  if (float4_rows(grad_out)) {  // grad_feats is new, so 16-byte aligned
    const auto kernel = !use_max ? mean_backward_kernel<float, 4>
                        : packed ? max_backward_kernel<float, 4, true>
                                 : max_backward_kernel<float, 4, false>;
    launch_rows(4, kernel, n, channels, stream, grad_out.data_ptr<float>(), p2v_data, aux_data, n,
                channels, m, grad_feats.data_ptr<float>());
    return grad_feats;
  }
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "voxel_pool_backward_cuda", [&] {
    const auto kernel = !use_max ? mean_backward_kernel<scalar_t, 1>
                        : packed ? max_backward_kernel<scalar_t, 1, true>
                                 : max_backward_kernel<scalar_t, 1, false>;
    launch_rows(1, kernel, n, channels, stream, grad_out.data_ptr<scalar_t>(), p2v_data, aux_data,
                n, channels, m, grad_feats.data_ptr<scalar_t>());
  });
  return grad_feats;
}
