// CUDA primitives of `rpe_attention_value`. A block serves one query row
// (b, i) for all H heads, so the row's rel_idx is read once, over one slice of
// the Ns superpoints (grid y), so that there are enough blocks to hide memory
// latency. The block keeps [H, 3, Lc] bins in shared memory; Lc = L when it
// fits (8 heads x 3 x 48 floats = 4.6 KB here), else the slice is swept once
// per chunk of Lc bins, so any L works.
//   hist:   shared atomicAdd of attn[b,h,i,j] into the bins, then one global
//           atomicAdd per non-zero bin into hist (so the float summation
//           order, not the result, depends on scheduling); a rel_idx outside
//           [0, L) is skipped and flagged, and raises after the kernel.
//   gather: the [H, 3, Lc] rows of bin_grad are staged in shared memory, then
//           grad_attn[b,h,i,j] = sum_a bin_grad[b,h,i,a,rel_idx[b,i,j,a]].
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda_launch.cuh"

namespace {

constexpr int64_t kSharedBytes = 48 * 1024;  // default per-block limit, no opt-in needed
constexpr int64_t kKeysPerThread = 2;        // superpoints per thread in one slice

struct Shape {
  int64_t heads, queries, keys, num_bins;
};

// Bins per chunk so that [H, 3, Lc] accumulators fit in shared memory.
int64_t bins_per_chunk(int64_t heads, int64_t num_bins, size_t acc_size) {
  const int64_t fit = kSharedBytes / (heads * 3 * static_cast<int64_t>(acc_size));
  TORCH_CHECK(fit >= 1, "rpe_attention_value (CUDA): ", heads,
              " heads do not fit in shared memory");
  return std::max<int64_t>(1, std::min(num_bins, fit));
}

// Grid: x over the B * Nq query rows, y over slices of the superpoints.
dim3 row_slice_grid(int64_t rows, int64_t keys) {
  const int64_t per_slice = ikne::kThreadsPerBlock * kKeysPerThread;
  const int64_t slices = std::max<int64_t>(1, (keys + per_slice - 1) / per_slice);
  TORCH_CHECK(rows < (int64_t{1} << 31) && slices < 65536,
              "rpe_attention_value (CUDA): too many query rows or superpoints");
  return dim3(static_cast<unsigned int>(rows), static_cast<unsigned int>(slices));
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void rpe_hist_kernel(const scalar_t* __restrict__ attn,
                                const index_t* __restrict__ rel_idx, acc_t* __restrict__ hist,
                                Shape s, int chunk, int* invalid) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_raw[];
  acc_t* bins = reinterpret_cast<acc_t*>(shared_raw);  // [H, 3, width]
  const int64_t b = blockIdx.x / s.queries, i = blockIdx.x % s.queries;
  const index_t* rel_row = rel_idx + static_cast<int64_t>(blockIdx.x) * s.keys * 3;
  const int64_t per_slice = (s.keys + gridDim.y - 1) / gridDim.y;
  const int64_t j_begin = blockIdx.y * per_slice;
  const int64_t j_end = j_begin + per_slice < s.keys ? j_begin + per_slice : s.keys;
  const int heads = static_cast<int>(s.heads);
  for (int64_t l0 = 0; l0 < s.num_bins; l0 += chunk) {
    const int width = static_cast<int>(s.num_bins - l0 < chunk ? s.num_bins - l0 : chunk);
    for (int k = threadIdx.x; k < heads * 3 * width; k += blockDim.x) bins[k] = acc_t(0);
    __syncthreads();
    for (int64_t j = j_begin + threadIdx.x; j < j_end; j += blockDim.x) {
      int local[3];
      for (int a = 0; a < 3; ++a) {
        const int64_t bin = static_cast<int64_t>(rel_row[3 * j + a]);
        if (l0 == 0 && (bin < 0 || bin >= s.num_bins)) *invalid = 1;
        local[a] = bin >= l0 && bin < l0 + width ? static_cast<int>(bin - l0) : -1;
      }
      for (int h = 0; h < heads; ++h) {
        const acc_t w = static_cast<acc_t>(attn[((b * heads + h) * s.queries + i) * s.keys + j]);
        for (int a = 0; a < 3; ++a) {
          if (local[a] >= 0) atomicAdd(bins + (h * 3 + a) * width + local[a], w);
        }
      }
    }
    __syncthreads();
    for (int k = threadIdx.x; k < heads * 3 * width; k += blockDim.x) {
      if (bins[k] == acc_t(0)) continue;
      const int h = k / (3 * width), a = (k / width) % 3, l = k % width;
      gpuAtomicAdd(hist + (((b * heads + h) * s.queries + i) * 3 + a) * s.num_bins + l0 + l,
                   bins[k]);
    }
    __syncthreads();
  }
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void rpe_gather_kernel(const acc_t* __restrict__ bin_grad,
                                  const index_t* __restrict__ rel_idx,
                                  scalar_t* __restrict__ grad_attn, Shape s, int chunk) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_raw[];
  acc_t* bins = reinterpret_cast<acc_t*>(shared_raw);  // [H, 3, width]
  const int64_t b = blockIdx.x / s.queries, i = blockIdx.x % s.queries;
  const index_t* rel_row = rel_idx + static_cast<int64_t>(blockIdx.x) * s.keys * 3;
  const int64_t per_slice = (s.keys + gridDim.y - 1) / gridDim.y;
  const int64_t j_begin = blockIdx.y * per_slice;
  const int64_t j_end = j_begin + per_slice < s.keys ? j_begin + per_slice : s.keys;
  const int heads = static_cast<int>(s.heads);
  for (int64_t l0 = 0; l0 < s.num_bins; l0 += chunk) {
    const int width = static_cast<int>(s.num_bins - l0 < chunk ? s.num_bins - l0 : chunk);
    for (int k = threadIdx.x; k < heads * 3 * width; k += blockDim.x) {
      const int h = k / (3 * width), a = (k / width) % 3, l = k % width;
      bins[k] = bin_grad[(((b * heads + h) * s.queries + i) * 3 + a) * s.num_bins + l0 + l];
    }
    __syncthreads();
    for (int64_t j = j_begin + threadIdx.x; j < j_end; j += blockDim.x) {
      int local[3];
      for (int a = 0; a < 3; ++a) {
        const int64_t bin = static_cast<int64_t>(rel_row[3 * j + a]);
        local[a] = bin >= l0 && bin < l0 + width ? static_cast<int>(bin - l0) : -1;
      }
      for (int h = 0; h < heads; ++h) {
        scalar_t* target = grad_attn + ((b * heads + h) * s.queries + i) * s.keys + j;
        acc_t sum = l0 == 0 ? acc_t(0) : static_cast<acc_t>(*target);
        for (int a = 0; a < 3; ++a) {
          if (local[a] >= 0) sum += bins[(h * 3 + a) * width + local[a]];
        }
        *target = static_cast<scalar_t>(sum);
      }
    }
    __syncthreads();
  }
}

}  // namespace

void rpe_attention_hist_cuda(const at::Tensor& attn, const at::Tensor& rel_idx, at::Tensor& hist) {
  TORCH_CHECK(attn.is_contiguous() && rel_idx.is_contiguous() && hist.is_contiguous(),
              "rpe_attention_hist_cuda: tensors must be contiguous");
  const at::cuda::CUDAGuard guard(attn.device());
  const Shape s{attn.size(1), attn.size(2), attn.size(3), hist.size(3) / 3};
  TORCH_CHECK_VALUE(s.num_bins > 0 || s.keys == 0,
                    "rpe_attention_value: rel_idx must lie in [0, 0): there are no bins");
  const int64_t rows = attn.size(0) * s.queries;
  if (rows * s.heads * s.keys == 0) return;  // hist stays zero
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor invalid = at::zeros({1}, attn.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attn.scalar_type(),
                                  "rpe_attention_hist_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t chunk = bins_per_chunk(s.heads, s.num_bins, sizeof(acc_t));
    const size_t shared = s.heads * 3 * chunk * sizeof(acc_t);
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_hist_cuda", [&] {
      rpe_hist_kernel<scalar_t, acc_t, index_t>
          <<<row_slice_grid(rows, s.keys), ikne::kThreadsPerBlock, shared, stream>>>(
              attn.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(), hist.data_ptr<acc_t>(), s,
              static_cast<int>(chunk), invalid.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  TORCH_CHECK_VALUE(invalid.item<int>() == 0, "rpe_attention_value: rel_idx must lie in [0, ",
                    s.num_bins, ")");
}

void rpe_attention_gather_cuda(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn) {
  TORCH_CHECK(bin_grad.is_contiguous() && rel_idx.is_contiguous() && grad_attn.is_contiguous(),
              "rpe_attention_gather_cuda: tensors must be contiguous");
  const at::cuda::CUDAGuard guard(grad_attn.device());
  const Shape s{grad_attn.size(1), grad_attn.size(2), grad_attn.size(3), bin_grad.size(3) / 3};
  if (grad_attn.numel() == 0) return;  // with no bins there are no valid superpoints either
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_attn.scalar_type(),
                                  "rpe_attention_gather_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t chunk = bins_per_chunk(s.heads, s.num_bins, sizeof(acc_t));
    const size_t shared = s.heads * 3 * chunk * sizeof(acc_t);
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_gather_cuda", [&] {
      rpe_gather_kernel<scalar_t, acc_t, index_t>
          <<<row_slice_grid(grad_attn.size(0) * s.queries, s.keys), ikne::kThreadsPerBlock,
             shared, stream>>>(bin_grad.data_ptr<acc_t>(), rel_idx.data_ptr<index_t>(),
                               grad_attn.data_ptr<scalar_t>(), s, static_cast<int>(chunk));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}
