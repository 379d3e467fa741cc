// CUDA `rpe_attention_value`. A block serves one query row (b, i) for all H
// heads, so the row's rel_idx is read once, and keeps the row's [H, 3, Lc]
// bins in shared memory: Lc = L when they fit (8 heads x 3 x 48 floats =
// 4.6 KB here), else the row is swept once per chunk of Lc bins, so any L works.
//   forward:  shared atomicAdd of attn[b,h,i,j] into the bins, then, in the same
//             block, out[b,h,i,:] = bins . table (and the bins are stored as
//             hist when the table's gradient will be needed). A rel_idx outside
//             [0, L) is skipped and sets the flag (in pinned host memory).
//   backward: bin_grad[h,a,l] = grad_out[b,h,i,:] . table[a,l,h,:] (a thread per
//             bin) is staged in shared memory, then gathered into grad_attn;
//             grad_table = sum over query rows of hist^T grad_out is a second
//             kernel, each thread summing a slice of rows before one atomicAdd.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "cuda_launch.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBytes = 48 * 1024;  // default per-block limit, no opt-in needed
constexpr int64_t kTableGradRows = 32;       // query rows per thread of the grad_table kernel
constexpr int kHeadBatch = 8;                // heads whose attention is loaded together

// Sizes, with rows = B * Nq query rows (b, i). The H rows (b, h, i) of query
// row (b, i) in [B, H, Nq, *] tensors are first_head_row + h * Nq.
struct Shape {
  int64_t rows, heads, queries, keys, num_bins, dim;
  __host__ __device__ int64_t first_head_row(int64_t row) const {
    return (row / queries) * heads * queries + row % queries;
  }
};

// The bins [l0, l0 + width) of one chunk, and the set-up both directions share.
struct BinChunk {
  int64_t l0;
  int width;

  // Chunk-local bins of one superpoint's three axes (-1 outside the chunk);
  // false if a bin lies outside [0, L).
  template <typename index_t>
  __device__ bool local_bins(const index_t* rel, int64_t num_bins, int local[3]) const {
    bool valid = true;
    #pragma unroll
    for (int a = 0; a < 3; ++a) {
      const int64_t bin = static_cast<int64_t>(rel[a]);
      valid = valid && bin >= 0 && bin < num_bins;
      local[a] = bin >= l0 && bin < l0 + width ? static_cast<int>(bin - l0) : -1;
    }
    return valid;
  }
  // Shared-memory bin k of [H, 3, width] as (h, a, l).
  __device__ void split(int k, int& h, int& a, int& l) const {
    h = k / (3 * width);
    a = (k / width) % 3;
    l = k % width;
  }
};

__device__ inline BinChunk chunk_at(int64_t l0, const Shape& s, int chunk) {
  return BinChunk{l0, static_cast<int>(s.num_bins - l0 < chunk ? s.num_bins - l0 : chunk)};
}

// sum over k < n of x[k] * y[k * y_stride] in acc_t, with kUnroll independent
// loads in flight (the products with the table are latency-bound otherwise).
template <typename acc_t, typename x_t, typename y_t>
__device__ acc_t dot(const x_t* x, const y_t* y, int64_t n, int64_t y_stride) {
  constexpr int kUnroll = 8;
  acc_t sum = 0;
  int64_t k = 0;
  for (; k + kUnroll <= n; k += kUnroll) {
    acc_t xs[kUnroll], ys[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      xs[u] = static_cast<acc_t>(x[k + u]);
      ys[u] = static_cast<acc_t>(y[(k + u) * y_stride]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) sum += xs[u] * ys[u];
  }
  for (; k < n; ++k) sum += static_cast<acc_t>(x[k]) * static_cast<acc_t>(y[k * y_stride]);
  return sum;
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    rpe_forward_kernel(const scalar_t* __restrict__ attn, const index_t* __restrict__ rel_idx,
                       const scalar_t* __restrict__ table, scalar_t* __restrict__ out,
                       acc_t* __restrict__ hist, Shape s, int chunk, int* __restrict__ flag) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_raw[];
  acc_t* bins = reinterpret_cast<acc_t*>(shared_raw);  // [H, 3, width]
  const int heads = static_cast<int>(s.heads);
  const int64_t head_stride = s.queries;
  for (int64_t row = blockIdx.x; row < s.rows; row += gridDim.x) {
    const index_t* rel_row = rel_idx + row * s.keys * 3;
    const int64_t first = s.first_head_row(row);
    for (int64_t l0 = 0; l0 < s.num_bins; l0 += chunk) {
      const BinChunk c = chunk_at(l0, s, chunk);
      const int size = heads * 3 * c.width;
      for (int k = threadIdx.x; k < size; k += blockDim.x) bins[k] = acc_t(0);
      __syncthreads();
      for (int64_t j = threadIdx.x; j < s.keys; j += blockDim.x) {
        int local[3];
        if (!c.local_bins(rel_row + 3 * j, s.num_bins, local)) *flag = 1;
        const scalar_t* a_col = attn + first * s.keys + j;
        for (int h0 = 0; h0 < heads; h0 += kHeadBatch) {  // the loads first, then the atomics
          acc_t w[kHeadBatch];
#pragma unroll
          for (int u = 0; u < kHeadBatch; ++u) {
            w[u] = h0 + u < heads ? static_cast<acc_t>(a_col[(h0 + u) * head_stride * s.keys]) : acc_t(0);
          }
#pragma unroll
          for (int u = 0; u < kHeadBatch; ++u) {
            #pragma unroll
            for (int a = 0; a < 3; ++a) {
              if (h0 + u < heads && local[a] >= 0) {
                atomicAdd(bins + ((h0 + u) * 3 + a) * c.width + local[a], w[u]);
              }
            }
          }
        }
      }
      __syncthreads();
      if (hist != nullptr) {
        for (int k = threadIdx.x; k < size; k += blockDim.x) {
          int h, a, l;
          c.split(k, h, a, l);
          hist[(first + h * head_stride) * 3 * s.num_bins + a * s.num_bins + l0 + l] = bins[k];
        }
      }
      // out[h, d] (+)= sum over the chunk of bins[h, a, l] * table[a, l0 + l, h, d]
      for (int64_t k = threadIdx.x; k < s.heads * s.dim; k += blockDim.x) {
        const int64_t h = k / s.dim, d = k % s.dim;
        scalar_t* target = out + (first + h * head_stride) * s.dim + d;
        acc_t sum = l0 == 0 ? acc_t(0) : static_cast<acc_t>(*target);
        #pragma unroll
        for (int a = 0; a < 3; ++a) {
          sum += dot<acc_t>(bins + (h * 3 + a) * c.width,
                            table + ((a * s.num_bins + l0) * s.heads + h) * s.dim + d, c.width,
                            s.heads * s.dim);
        }
        *target = static_cast<scalar_t>(sum);
      }
      __syncthreads();
    }
  }
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    rpe_attn_grad_kernel(const scalar_t* __restrict__ grad_out, const index_t* __restrict__ rel_idx,
                         const scalar_t* __restrict__ table, scalar_t* __restrict__ grad_attn,
                         Shape s, int chunk) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_raw[];
  acc_t* bins = reinterpret_cast<acc_t*>(shared_raw);  // [H, 3, width]
  const int heads = static_cast<int>(s.heads);
  const int64_t head_stride = s.queries;
  for (int64_t row = blockIdx.x; row < s.rows; row += gridDim.x) {
    const index_t* rel_row = rel_idx + row * s.keys * 3;
    const int64_t first = s.first_head_row(row);
    for (int64_t l0 = 0; l0 < s.num_bins; l0 += chunk) {
      const BinChunk c = chunk_at(l0, s, chunk);
      const int size = heads * 3 * c.width;
      for (int k = threadIdx.x; k < size; k += blockDim.x) {  // bin_grad, a thread per bin
        int h, a, l;
        c.split(k, h, a, l);
        bins[k] = dot<acc_t>(grad_out + (first + h * head_stride) * s.dim,
                             table + ((a * s.num_bins + l0 + l) * s.heads + h) * s.dim, s.dim, 1);
      }
      __syncthreads();
      for (int64_t j = threadIdx.x; j < s.keys; j += blockDim.x) {
        int local[3];
        c.local_bins(rel_row + 3 * j, s.num_bins, local);  // validated by the forward
        scalar_t* g_col = grad_attn + first * s.keys + j;
        for (int h = 0; h < heads; ++h) {
          scalar_t* target = g_col + h * head_stride * s.keys;
          acc_t sum = l0 == 0 ? acc_t(0) : static_cast<acc_t>(*target);
          #pragma unroll
          for (int a = 0; a < 3; ++a) {
            if (local[a] >= 0) sum += bins[(h * 3 + a) * c.width + local[a]];
          }
          *target = static_cast<scalar_t>(sum);
        }
      }
      __syncthreads();
    }
  }
}

// grad_table[a, l, h, d] += sum over a slice of query rows of
// hist[b, h, i, a * L + l] * grad_out[b, h, i, d]; grid y over the slices.
template <typename scalar_t, typename acc_t>
__global__ void rpe_table_grad_kernel(const acc_t* __restrict__ hist,
                                      const scalar_t* __restrict__ grad_out,
                                      acc_t* __restrict__ grad_table, Shape s,
                                      int64_t rows_per_slice) {
  const int64_t row_begin = blockIdx.y * rows_per_slice;
  const int64_t row_end = min(s.rows, row_begin + rows_per_slice);
  IKNE_CUDA_LOOP(idx, 3 * s.num_bins * s.heads * s.dim) {
    const int64_t bin = idx / (s.heads * s.dim);
    const int64_t h = (idx / s.dim) % s.heads, d = idx % s.dim;
    int64_t i = row_begin % s.queries;  // (b, i) of the row, stepped without divisions
    int64_t head_row = s.first_head_row(row_begin) + h * s.queries;
    acc_t sum = 0;
#pragma unroll 4
    for (int64_t row = row_begin; row < row_end; ++row) {
      sum += hist[head_row * 3 * s.num_bins + bin] * static_cast<acc_t>(grad_out[head_row * s.dim + d]);
      if (++i < s.queries) {
        ++head_row;
      } else {  // next batch: from (b, h, Nq - 1) to (b + 1, h, 0)
        i = 0;
        head_row += (s.heads - 1) * s.queries + 1;
      }
    }
    gpuAtomicAdd(grad_table + idx, sum);
  }
}

// From a [B, H, Nq, *] tensor, the number of superpoints and the table.
Shape shape_of(const at::Tensor& rows_like, int64_t keys, const at::Tensor& table) {
  return Shape{rows_like.size(0) * rows_like.size(2), rows_like.size(1), rows_like.size(2), keys,
               table.size(1), table.size(3)};
}

// Bins per chunk so that the [H, 3, Lc] bins fit in shared memory (the Python
// wrapper limits H so that one bin per head and axis always fits).
int bins_per_chunk(const Shape& s, size_t acc_size) {
  const int64_t fit = kSharedBytes / (s.heads * 3 * static_cast<int64_t>(acc_size));
  TORCH_CHECK(fit >= 1, "rpe_attention_value (CUDA): internal: too many heads");
  return static_cast<int>(std::min(s.num_bins, fit));
}

unsigned int row_grid(const Shape& s) {
  return static_cast<unsigned int>(std::min<int64_t>(s.rows, int64_t{1} << 30));
}

}  // namespace

// All dims are >= 1 here: the wrapper sends empty inputs to the reference.
at::Tensor rpe_attention_forward_cuda(const at::Tensor& attn, const at::Tensor& rel_idx,
                                      const at::Tensor& table, at::Tensor& out, at::Tensor& hist) {
  const at::cuda::CUDAGuard guard(attn.device());
  const Shape s = shape_of(attn, attn.size(3), table);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor flag = ikne::pinned_flag();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attn.scalar_type(),
                                  "rpe_attention_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int chunk = bins_per_chunk(s, sizeof(acc_t));
    const size_t shared = s.heads * 3 * chunk * sizeof(acc_t);
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_forward_cuda", [&] {
      rpe_forward_kernel<scalar_t, acc_t, index_t><<<row_grid(s), kThreads, shared, stream>>>(
          attn.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(), table.data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>(), hist.defined() ? hist.data_ptr<acc_t>() : nullptr, s, chunk,
          flag.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  ikne::synchronize_for_flag(stream);
  return flag;
}

void rpe_attention_backward_cuda(const at::Tensor& grad_out, const at::Tensor& rel_idx,
                                 const at::Tensor& table, const at::Tensor& hist,
                                 at::Tensor& grad_attn, at::Tensor& grad_table) {
  const at::cuda::CUDAGuard guard(grad_out.device());
  const Shape s = shape_of(grad_out, rel_idx.size(2), table);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(),
                                  "rpe_attention_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (grad_attn.defined()) {
      const int chunk = bins_per_chunk(s, sizeof(acc_t));
      const size_t shared = s.heads * 3 * chunk * sizeof(acc_t);
      AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_backward_cuda", [&] {
        rpe_attn_grad_kernel<scalar_t, acc_t, index_t><<<row_grid(s), kThreads, shared, stream>>>(
            grad_out.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(),
            table.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), s, chunk);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    if (grad_table.defined()) {
      const int64_t slices = std::min<int64_t>((s.rows + kTableGradRows - 1) / kTableGradRows, 65535);
      const int64_t rows_per_slice = (s.rows + slices - 1) / slices;
      const dim3 grid(ikne::grid_size(3 * s.num_bins * s.heads * s.dim),
                      static_cast<unsigned int>(slices));
      rpe_table_grad_kernel<scalar_t, acc_t><<<grid, ikne::kThreadsPerBlock, 0, stream>>>(
          hist.data_ptr<acc_t>(), grad_out.data_ptr<scalar_t>(), grad_table.data_ptr<acc_t>(), s,
          rows_per_slice);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

