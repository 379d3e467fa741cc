// CUDA kernels of `rpe_attention_value`: the histogram of the attention over
// the bins, and the gather of the bins' gradient into the attention's (the
// dense products are matmuls in the dispatcher). A block serves one query row
// (b, i) for all H heads, with the row's [H, 3, L] bins in shared memory (in
// global memory when they do not fit: any L works).
//   histogram: each warp walks a contiguous run of the row's superpoints, 8
//              a step, its lanes over the (head, axis) pairs, each summing runs
//              of equal bins in registers, into its own copy of the bins where
//              they fit (8 copies of 8 heads x 3 x 49 floats: 37.6 KB). Lanes
//              over superpoints adding into one copy serialised on shared bins:
//              nearby superpoints share bins, and the end bins collect every
//              superpoint beyond the range (366 us a decoder layer of a
//              ScanNet-size scene on an H200, 144 us with one copy). A rel_idx
//              outside [0, L) is skipped and sets the flag (pinned host memory)
//              unless it is null.
//   gather:    the row's bins are staged in shared memory; a thread per
//              superpoint sums its three bins for every head. It skips bins
//              outside [0, L) and flags them if given a flag (the value op's
//              backward is not: its forward flagged them, but the wrapper may
//              raise only after the backward has been queued).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kSharedBytes = 48 * 1024;  // default per-block limit, no opt-in needed

// Sizes, with rows = B * Nq query rows (b, i). The H rows (b, h, i) of query
// row (b, i) in [B, H, Nq, *] tensors are first_head_row + h * Nq.
struct Shape {
  int64_t rows, heads, queries, keys, num_bins;
  __device__ int64_t first_head_row(int64_t row) const {
    return (row / queries) * heads * queries + row % queries;
  }
};

// Shared bins of one row: [H * 3] segments of L bins, each padded by one so that
// the segments of one superpoint's lanes start in different banks.
struct SharedBins {
  int64_t stride;  // L + 1
  __device__ int64_t at(int64_t segment, int64_t bin) const { return segment * stride + bin; }
};

// Adds the attention of superpoints [begin, end) of one (head, axis) segment
// into its bins (shared or global), kBatch superpoints' loads before their
// adds (the loads of a step would otherwise wait for the last step's add). A
// run of superpoints in one bin is summed in registers and added once: nearby
// superpoints share bins, and the end bins hold long runs.
template <int kBatch, typename scalar_t, typename acc_t, typename index_t>
__device__ void add_segment(const scalar_t* __restrict__ a_row, const index_t* __restrict__ rel_axis,
                            int64_t begin, int64_t end, int64_t num_bins, acc_t* bins, int* flag) {
  bool in_run = false;
  int64_t run_bin = 0;
  acc_t run_sum = 0;
  for (int64_t j0 = begin; j0 < end; j0 += kBatch) {
    int64_t bin[kBatch];
    acc_t w[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const bool in = j0 + u < end;
      bin[u] = in ? static_cast<int64_t>(rel_axis[3 * (j0 + u)]) : 0;
      w[u] = in ? static_cast<acc_t>(a_row[j0 + u]) : acc_t(0);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (j0 + u >= end) break;
      if (in_run && bin[u] == run_bin) {
        run_sum += w[u];
        continue;
      }
      if (in_run) gpuAtomicAdd(bins + run_bin, run_sum);
      in_run = bin[u] >= 0 && bin[u] < num_bins;
      if (!in_run && flag != nullptr) *flag = 1;
      run_bin = bin[u];
      run_sum = w[u];
    }
  }
  if (in_run) gpuAtomicAdd(bins + run_bin, run_sum);
}

// copies > 0: the block keeps `copies` copies of the row's bins in shared
// memory, warp w adding into copy w % copies (with kWarps copies no two warps
// share a bin); copies == 0: the bins do not fit, and atomics go to hist.
template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    rpe_histogram_kernel(const scalar_t* __restrict__ attn, const index_t* __restrict__ rel_idx,
                         acc_t* __restrict__ hist, Shape s, int copies, int* __restrict__ flag) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_raw[];
  acc_t* shared = reinterpret_cast<acc_t*>(shared_raw);
  const SharedBins bins{s.num_bins + 1};
  const int64_t segments = 3 * s.heads, row_bins = segments * s.num_bins;
  const int64_t copy_size = segments * bins.stride;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t per_warp = (s.keys + kWarps - 1) / kWarps;
  const int64_t begin = warp * per_warp, end = min(s.keys, begin + per_warp);
  acc_t* copy = copies > 0 ? shared + (warp % copies) * copy_size : nullptr;
  for (int64_t row = blockIdx.x; row < s.rows; row += gridDim.x) {
    const int64_t first = s.first_head_row(row);
    const index_t* rel_row = rel_idx + row * s.keys * 3;
    if (copies > 0) {
      for (int64_t k = threadIdx.x; k < copies * copy_size; k += blockDim.x) shared[k] = acc_t(0);
      __syncthreads();
    }
    for (int64_t p = lane; p < segments; p += 32) {  // segment p = (head p / 3, axis p % 3)
      const int64_t h = p / 3, a = p % 3;
      acc_t* target = copies > 0 ? copy + bins.at(p, 0)
                                 : hist + (first + h * s.queries) * 3 * s.num_bins + a * s.num_bins;
      add_segment<8>(attn + (first + h * s.queries) * s.keys, rel_row + a, begin, end, s.num_bins,
                     target, flag);
    }
    if (copies > 0) {
      __syncthreads();
      for (int64_t k = threadIdx.x; k < row_bins; k += blockDim.x) {
        const int64_t h = k / (3 * s.num_bins), r = k % (3 * s.num_bins);
        const int64_t at = bins.at(k / s.num_bins, k % s.num_bins);
        acc_t sum = 0;
        for (int c = 0; c < copies; ++c) sum += shared[c * copy_size + at];
        hist[(first + h * s.queries) * 3 * s.num_bins + r] = sum;
      }
      __syncthreads();
    }
  }
}

template <typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    rpe_gather_kernel(const acc_t* __restrict__ bin_grad, const index_t* __restrict__ rel_idx,
                      scalar_t* __restrict__ grad_attn, Shape s, bool in_shared, int* flag) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_raw[];
  acc_t* shared = reinterpret_cast<acc_t*>(shared_raw);  // [H, 3L], as one row of bin_grad
  const int64_t row_bins = 3 * s.heads * s.num_bins;
  for (int64_t row = blockIdx.x; row < s.rows; row += gridDim.x) {
    const int64_t first = s.first_head_row(row);
    const index_t* rel_row = rel_idx + row * s.keys * 3;
    if (in_shared) {
      for (int64_t k = threadIdx.x; k < row_bins; k += blockDim.x) {
        const int64_t h = k / (3 * s.num_bins), r = k % (3 * s.num_bins);
        shared[k] = bin_grad[(first + h * s.queries) * 3 * s.num_bins + r];
      }
      __syncthreads();
    }
    for (int64_t j = threadIdx.x; j < s.keys; j += blockDim.x) {
      int64_t bin[3];
      bool valid[3];
#pragma unroll
      for (int a = 0; a < 3; ++a) {  // a bin outside [0, L) adds nothing
        const int64_t l = static_cast<int64_t>(rel_row[3 * j + a]);
        valid[a] = l >= 0 && l < s.num_bins;
        if (!valid[a] && flag != nullptr) *flag = 1;
        bin[a] = a * s.num_bins + (valid[a] ? l : 0);
      }
      for (int64_t h = 0; h < s.heads; ++h) {
        const acc_t* g = in_shared ? shared + h * 3 * s.num_bins
                                   : bin_grad + (first + h * s.queries) * 3 * s.num_bins;
        acc_t sum = 0;
#pragma unroll
        for (int a = 0; a < 3; ++a) sum += valid[a] ? g[bin[a]] : acc_t(0);
        grad_attn[(first + h * s.queries) * s.keys + j] = static_cast<scalar_t>(sum);
      }
    }
    if (in_shared) __syncthreads();
  }
}

Shape shape_of(const at::Tensor& attn_like, const at::Tensor& hist_like) {
  return Shape{attn_like.size(0) * attn_like.size(2), attn_like.size(1), attn_like.size(2),
               attn_like.size(3), hist_like.size(3) / 3};
}

unsigned int row_grid(const Shape& s) {
  return static_cast<unsigned int>(std::min<int64_t>(s.rows, int64_t{1} << 30));
}

}  // namespace

// All dims are >= 1 here: the wrapper sends empty inputs to the reference.
void rpe_attention_histogram_cuda(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  at::Tensor& hist, int* flag) {
  const at::cuda::CUDAGuard guard(attn.device());
  const Shape s = shape_of(attn, hist);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t copy_bytes = 3 * s.heads * (s.num_bins + 1) * static_cast<int64_t>(hist.element_size());
  const int copies = static_cast<int>(std::min<int64_t>(kWarps, kSharedBytes / copy_bytes));
  if (copies == 0) hist.zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attn.scalar_type(),
                                  "rpe_attention_histogram_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_histogram_cuda", [&] {
      rpe_histogram_kernel<scalar_t, acc_t, index_t><<<row_grid(s), kThreads, copies * copy_bytes, stream>>>(
          attn.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(), hist.data_ptr<acc_t>(), s, copies,
          flag);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void rpe_attention_gather_cuda(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag) {
  const at::cuda::CUDAGuard guard(grad_attn.device());
  const Shape s = shape_of(grad_attn, bin_grad);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t shared_bytes = 3 * s.heads * s.num_bins * static_cast<int64_t>(bin_grad.element_size());
  const bool in_shared = shared_bytes <= kSharedBytes;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_attn.scalar_type(),
                                  "rpe_attention_gather_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_gather_cuda", [&] {
      rpe_gather_kernel<scalar_t, acc_t, index_t>
          <<<row_grid(s), kThreads, in_shared ? shared_bytes : 0, stream>>>(
              bin_grad.data_ptr<acc_t>(), rel_idx.data_ptr<index_t>(),
              grad_attn.data_ptr<scalar_t>(), s, in_shared, flag);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}
