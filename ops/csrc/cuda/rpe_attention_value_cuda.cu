// CUDA kernels of `rpe_attention_value`: the histogram of the attention over
// the bins with, fused, its product with the table (the op's output); the
// gather of the bins' gradient into the attention's, with the bins' gradient
// (grad_out times the table) made in it; and the table's gradient. The
// backward is two launches: with cuBLAS's two products and a sum instead, a
// forward and backward of the bare calls took an H100's host 70 us at tiny
// sizes, against 26 us now. A block serves one query row (b, i)
// at a time, up to kGroupHeads heads a pass, so the row's bins stay in shared
// memory (in global memory when they do not fit: any L works).
//   histogram: the block stages tiles of kTile superpoints (the heads'
//              attention and the three bins, coalesced, the next tile's loads
//              in flight while the current one is added), then each warp walks
//              its slice of the tile with its lanes over the (head, axis)
//              pairs, into the warp's own copy of the bins where they fit
//              (8 copies of 8 heads x 3 x 49 floats: 37.6 KB): a plain add per
//              superpoint, no branch, its weights and bins read four at a time
//              (128-bit shared loads). Where warps share a copy (or the bins are
//              in global memory) the lanes sum runs of equal bins in registers
//              and add them with atomics. GPU time a call, a ScanNet-size
//              decoder layer on an H200: lanes over superpoints adding into one
//              copy serialised on shared bins (nearby superpoints share bins,
//              and the end bins collect every superpoint beyond the range),
//              366 us; walking the row from global memory, 8 superpoints a
//              step, 131-141 us; a row a block with shared atomics (compare-and-
//              swap loops for floats), 94-97 us; plain adds of runs, 73 us;
//              branch-free plain adds, 59 us. Splitting rows into spans to fill
//              the GPU (partial histograms and products added with atomics) was
//              slower: 86 us at 2 spans a row, 125 us at 4. The copies are
//              summed into the row's histogram, written out if asked for, and
//              multiplied with the table: out[h, :] = hist[h] @ table[:, :, h, :],
//              so an inference call keeps no histogram. A rel_idx outside
//              [0, L) is skipped and sets the flag (pinned host memory) unless
//              it is null.
//   gather:    the row's bins are staged in shared memory (for the value
//              op's backward, made there from the row's grad_out and the
//              table); a thread per superpoint sums its three bins for every
//              head. It skips bins outside [0, L) and flags them if given a
//              flag (the value op's backward is not: its forward flagged them,
//              but the wrapper may raise only after the backward has been
//              queued).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <type_traits>

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMinBlocks = 4;      // per SM: a scene's 400 query rows run in one wave on 132 SMs
constexpr int kGroupHeads = 8;     // heads of one pass: 3 x 8 (head, axis) lanes of a warp
constexpr int kTile = kThreads;    // superpoints staged at a time
// Row stride of the staged tile (weights of a head, bins of an axis): rows start 16-byte
// aligned, and the rows that one 128-bit load of a warp reads start in different banks.
constexpr int kTileStride = kTile + 4;
constexpr int64_t kSharedBytes = 48 * 1024;  // default per-block limit, no opt-in needed

// Sizes, with rows = B * Nq query rows (b, i). The H rows (b, h, i) of query
// row (b, i) in [B, H, Nq, *] tensors are first_head_row + h * Nq.
struct Shape {
  int64_t rows, heads, queries, keys, num_bins;
  __device__ int64_t first_head_row(int64_t row) const {
    return (row / queries) * heads * queries + row % queries;
  }
};

// Shared bins of one pass: [3 * kGroupHeads] segments of L bins, each padded
// by one so that the segments of one superpoint's lanes start in different banks.
struct SharedBins {
  int64_t stride;  // L + 1
  __device__ int64_t at(int64_t segment, int64_t bin) const { return segment * stride + bin; }
};

// Four consecutive values of a shared array, 16-byte aligned for 4-byte types (one 128-bit
// load; other types, which take the atomic path in practice, load one by one).
template <typename T>
__device__ __forceinline__ void load4(const T* p, T (&v)[4]) {
  if constexpr (sizeof(T) == 4) {
    const int4 x = *reinterpret_cast<const int4*>(p);
    memcpy(v, &x, sizeof(x));
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = p[k];
  }
}

// Adds a warp slice's attention of one (head, axis) segment into its bins; bin
// `skip` (L: a bin outside [0, L), or a superpoint past the row's end, which
// weighs 0) adds nothing. kOwned: the lane alone adds into this segment, a
// shared one padded to L + 1 bins, so each superpoint is a plain add without a
// branch (bin L adds into the padding), four at a time: a slice ending inside
// a group of four (in the row's last tile) reads on into the staged entries
// past the row's end, which weigh 0 and carry bin L.
// Else atomics (shared float atomics are compare-and-swap loops): a run of
// superpoints in one bin is summed in registers and added once (nearby
// superpoints share bins, and the end bins hold long runs).
template <bool kOwned, typename acc_t>
__device__ void add_slice(const acc_t* __restrict__ weights, const int* __restrict__ bins_of_axis,
                          int count, acc_t* __restrict__ segment, int skip) {
  if constexpr (kOwned) {
#pragma unroll 2
    for (int k = 0; k < count; k += 4) {
      acc_t w[4];
      int bin[4];
      load4(weights + k, w);
      load4(bins_of_axis + k, bin);
#pragma unroll
      for (int u = 0; u < 4; ++u) segment[bin[u]] += w[u];
    }
  } else {
    int run_bin = skip;
    acc_t run_sum = 0;
#pragma unroll 4
    for (int k = 0; k < count; ++k) {
      const int bin = bins_of_axis[k];
      const acc_t w = weights[k];
      if (bin != run_bin) {
        if (run_bin != skip) gpuAtomicAdd(segment + run_bin, run_sum);
        run_bin = bin;
        run_sum = 0;
      }
      run_sum += w;
    }
    if (run_bin != skip) gpuAtomicAdd(segment + run_bin, run_sum);
  }
}

// One thread's superpoint j0 + threadIdx.x of a tile, held in registers from
// its load to its store into shared memory (so that a tile's loads are all in
// flight at once, while the previous tile is added): the attention of up to
// kGroupHeads heads and the three bins (L for a bin outside [0, L), which
// sets the flag; 0 weight and bin L past the row's last superpoint).
template <typename acc_t, typename index_t>
struct TileLoad {
  acc_t weight[kGroupHeads];
  index_t bin[3];  // as loaded: checked only in store, so that the loads stay in flight
  bool present;

  template <typename scalar_t>
  __device__ void load(const scalar_t* __restrict__ attn, const index_t* __restrict__ rel_row,
                       int64_t first, int64_t h0, int group, int64_t j0, const Shape& s) {
    const int64_t j = j0 + threadIdx.x;
    present = j < s.keys;
#pragma unroll
    for (int g = 0; g < kGroupHeads; ++g) {
      weight[g] = present && g < group
                      ? static_cast<acc_t>(attn[(first + (h0 + g) * s.queries) * s.keys + j])
                      : acc_t(0);
    }
#pragma unroll
    for (int a = 0; a < 3; ++a) bin[a] = present ? rel_row[3 * j + a] : index_t(-1);
  }

  __device__ void store(acc_t* tile_attn, int* tile_bins, int group, int64_t num_bins,
                        int* flag) const {
#pragma unroll
    for (int g = 0; g < kGroupHeads; ++g) {
      if (g < group) tile_attn[g * kTileStride + threadIdx.x] = weight[g];
    }
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      const bool valid = bin[a] >= 0 && bin[a] < num_bins;
      if (present && !valid && flag != nullptr) *flag = 1;
      tile_bins[a * kTileStride + threadIdx.x] = static_cast<int>(valid ? bin[a] : num_bins);
    }
  }
};

// hist (nullable) [B, H, Nq, 3L] = the histogram of attn; out (nullable)
// [B, H, Nq, D] = hist @ table_h. copies > 0: the block keeps `copies` copies
// of a pass's bins in shared memory, warp w adding into copy w % copies
// (kOwned: copies == kWarps, a copy per warp). copies == 0: the bins do not
// fit, and atomics go to hist (zeroed by the caller).
template <bool kOwned, typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    rpe_histogram_kernel(const scalar_t* __restrict__ attn, const index_t* __restrict__ rel_idx,
                         acc_t* __restrict__ hist, const scalar_t* __restrict__ table,
                         scalar_t* __restrict__ out, int64_t dim, Shape s, int copies,
                         int* __restrict__ flag) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  const SharedBins bins{s.num_bins + 1};
  const int64_t copy_size = 3 * kGroupHeads * bins.stride;
  acc_t* shared = reinterpret_cast<acc_t*>(shared_raw);        // [copies][copy_size]
  // (copy_size is a multiple of 24: the tile starts 16-byte aligned)
  acc_t* tile_attn = shared + copies * copy_size;               // [kGroupHeads][kTileStride]
  int* tile_bins = reinterpret_cast<int*>(tile_attn + kGroupHeads * kTileStride);  // [3][kTileStride]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  constexpr int kSlice = kTile / kWarps;
  acc_t* copy = copies > 0 ? shared + (warp % copies) * copy_size : nullptr;
  const int64_t hist_row = 3 * s.num_bins;
  for (int64_t row = blockIdx.x; row < s.rows; row += gridDim.x) {
    const int64_t first = s.first_head_row(row);
    const index_t* rel_row = rel_idx + row * s.keys * 3;
    for (int64_t h0 = 0; h0 < s.heads; h0 += kGroupHeads) {
      const int group = static_cast<int>(min(static_cast<int64_t>(kGroupHeads), s.heads - h0));
      for (int64_t k = threadIdx.x; k < copies * copy_size; k += blockDim.x) shared[k] = acc_t(0);
      // lane p < 3 * group adds segment p = (head h0 + p / 3, axis p % 3)
      const int p = lane, h = p / 3, a = p % 3;
      acc_t* target = nullptr;
      if (p < 3 * group) {
        target = copies > 0 ? copy + bins.at(p, 0)
                            : hist + (first + (h0 + h) * s.queries) * hist_row + a * s.num_bins;
      }
      // each thread stages one superpoint of a tile (its heads' attention and its three
      // bins), loading the next tile while the warps add the current one
      TileLoad<acc_t, index_t> next;
      next.load(attn, rel_row, first, h0, group, 0, s);
      for (int64_t j0 = 0; j0 < s.keys; j0 += kTile) {
        next.store(tile_attn, tile_bins, group, s.num_bins, flag);
        const int n = static_cast<int>(min(static_cast<int64_t>(kTile), s.keys - j0));
        __syncthreads();
        if (j0 + kTile < s.keys) next.load(attn, rel_row, first, h0, group, j0 + kTile, s);
        const int slice = warp * kSlice, count = min(kSlice, n - slice);
        if (target != nullptr && count > 0) {
          add_slice<kOwned>(tile_attn + h * kTileStride + slice, tile_bins + a * kTileStride + slice,
                            count, target, static_cast<int>(s.num_bins));
        }
        __syncthreads();
      }
      // the pass's histogram: copies summed into copy 0, then out = hist @ table_h
      const acc_t* row_hist = shared;  // [segment][L + 1] when copies > 0
      if (copies > 0) {  // (then the pass's bins fit in shared memory: int indices)
        const int num_bins = static_cast<int>(s.num_bins);
        for (int k = threadIdx.x; k < 3 * group * num_bins; k += blockDim.x) {
          const int segment = k / num_bins, bin = k - segment * num_bins;
          const int64_t at = bins.at(segment, bin);
          acc_t sum = shared[at];
          for (int c = 1; c < copies; ++c) sum += shared[c * copy_size + at];
          shared[at] = sum;
          if (hist != nullptr) {
            hist[(first + (h0 + segment / 3) * s.queries) * hist_row + (segment % 3) * num_bins + bin] = sum;
          }
        }
      }
      __syncthreads();
      if (out != nullptr) {
        // out[head, d] = sum over (axis, bin) of the bin's count times table[axis, bin, head, d]
        // (at ((axis L + bin) H + head) D + d): no division in the inner loops. A warp's
        // lanes share the head (dim is a multiple of 32 in the decoder), so skipping the
        // empty bins does not diverge.
        const int64_t bin_stride = s.heads * dim;
        for (int64_t q = threadIdx.x; q < group * dim; q += blockDim.x) {
          const int64_t g = q / dim, d = q % dim, head = h0 + g;
          acc_t sum = 0;
          for (int a = 0; a < 3; ++a) {
            const acc_t* counts = copies > 0 ? row_hist + bins.at(3 * g + a, 0)
                                             : hist + (first + head * s.queries) * hist_row + a * s.num_bins;
            const scalar_t* entries = table + a * s.num_bins * bin_stride + head * dim + d;
#pragma unroll 4
            for (int64_t l = 0; l < s.num_bins; ++l) {
              const acc_t count = counts[l];
              if (count != acc_t(0)) sum += count * static_cast<acc_t>(entries[l * bin_stride]);
            }
          }
          out[(first + head * s.queries) * dim + d] = static_cast<scalar_t>(sum);
        }
      }
      __syncthreads();
    }
  }
}

// Sums kCount values of each lane over the warp's lanes by a butterfly that halves the values
// a lane holds at each step (kCount - 1 + log2(32 / kCount) shuffles in all, against 5 a value
// lane by lane): lane l ends with, in sum[0], the total of value l / (32 / kCount). Template
// recursion keeps every index a constant, so that the values stay in registers.
template <int kCount, int kOffset, int kSize, typename acc_t>
__device__ __forceinline__ void fold_lanes(acc_t (&sum)[kSize], int lane) {
  if constexpr (kCount > 1) {
    const bool upper = (lane & kOffset) != 0;  // keeps the upper half, sends the lower
#pragma unroll
    for (int k = 0; k < kCount / 2; ++k) {
      const acc_t send = upper ? sum[k] : sum[k + kCount / 2];
      sum[k] = (upper ? sum[k + kCount / 2] : sum[k]) + __shfl_xor_sync(0xffffffffu, send, kOffset);
    }
    fold_lanes<kCount / 2, kOffset / 2>(sum, lane);
  } else if constexpr (kOffset > 0) {
    sum[0] += __shfl_xor_sync(0xffffffffu, sum[0], kOffset);
    fold_lanes<1, kOffset / 2>(sum, lane);
  }
}

// The value op's bins' gradient of query row (b, i), bins[h, a L + l] = grad_out[b, h, i, :] .
// table[a, l, h, :], into `bins` ([H, 3L] with row stride `head_stride`): a warp per chunk of
// kUnroll bins of a head at a time (their table rows in flight together), its lanes over D
// (coalesced reads of the table's rows; the head's grad_out row read once a chunk). 32-bit
// index arithmetic, a division a chunk: the GPU emulates 64-bit divisions in tens of
// instructions, more than a bin's products.
template <typename scalar_t, typename acc_t>
__device__ void project_row(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ table,
                            int dim, const Shape& s, int64_t first, acc_t* bins, int64_t head_stride) {
  // Bins a chunk. The gather kernel's GPU time at ScanNet size on an H100: 16 bins 33.5 us
  // (session 27); summed over the lanes bin by bin (80 shuffles a chunk, session 26), 4 bins
  // 52.1, 8 bins 42.7, 16 bins 39.0, 32 bins 95.1.
  constexpr int kUnroll = 16;
  static_assert(kUnroll <= 32 && (kUnroll & (kUnroll - 1)) == 0, "a power of two up to a warp");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row_bins = 3 * static_cast<int>(s.num_bins), heads = static_cast<int>(s.heads);
  const int chunks = (row_bins + kUnroll - 1) / kUnroll;  // a head's
  for (int c = warp; c < heads * chunks; c += kWarps) {
    const int h = c / chunks, k0 = (c - h * chunks) * kUnroll;
    const scalar_t* g = grad_out + (first + h * s.queries) * dim;
    acc_t sum[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) sum[u] = acc_t(0);
    for (int d = lane; d < dim; d += 32) {
      const acc_t gd = static_cast<acc_t>(g[d]);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (k0 + u < row_bins) sum[u] += gd * static_cast<acc_t>(table[((k0 + u) * heads + h) * dim + d]);
      }
    }
    fold_lanes<kUnroll, 16>(sum, lane);  // lane l ends with the sum of bin l / (32 / kUnroll)
    constexpr int kLanesPerBin = 32 / kUnroll;
    const int bin = k0 + lane / kLanesPerBin;
    if (lane % kLanesPerBin == 0 && bin < row_bins) bins[h * head_stride + bin] = sum[0];
  }
}

// grad_attn [B, H, Nq, Ns] from the bins of each query row: a block per row at a time, a
// thread per superpoint summing its three bins for every head. The bins are bin_grad's row
// (kProject false; staged in shared memory where they fit) or, for the value op's backward
// (kProject), the row's projection of grad_out on the table, made here (project_row) into
// shared memory, or into bin_grad as scratch where they do not fit.
template <bool kProject, typename scalar_t, typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
    rpe_gather_kernel(acc_t* __restrict__ bin_grad, const scalar_t* __restrict__ grad_out,
                      const scalar_t* __restrict__ table, int64_t dim,
                      const index_t* __restrict__ rel_idx, scalar_t* __restrict__ grad_attn,
                      Shape s, bool in_shared, int* flag) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  acc_t* shared = reinterpret_cast<acc_t*>(shared_raw);  // [H, 3L], as one row of bin_grad
  const int64_t row_bins = 3 * s.heads * s.num_bins;
  for (int64_t row = blockIdx.x; row < s.rows; row += gridDim.x) {
    const int64_t first = s.first_head_row(row);
    const index_t* rel_row = rel_idx + row * s.keys * 3;
    if constexpr (kProject) {
      if (in_shared) {
        project_row(grad_out, table, static_cast<int>(dim), s, first, shared, 3 * s.num_bins);
      } else {
        project_row(grad_out, table, static_cast<int>(dim), s, first,
                    bin_grad + first * 3 * s.num_bins, s.queries * 3 * s.num_bins);
      }
      __syncthreads();  // (also makes the block's global writes visible to the block)
    } else if (in_shared) {
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
    __syncthreads();  // before the next row's bins overwrite these
  }
}

constexpr int kTableBins = 16;  // bins of a table-gradient block
constexpr int kTableRows = 4;   // rows whose loads a table-gradient warp has in flight together

// grad_table[a, l, h, :] += sum over the query rows (b, i) of hist[b, h, i, a L + l] *
// grad_out[b, h, i, :]: a block per (head, kTableBins bins, 32 of D, span of rows: blockIdx.z
// of gridDim.z), its warps over a share of the span each, kTableRows rows at a time (lanes over D,
// each row's kTableBins hist values loaded by as many lanes and broadcast by shuffles), their
// partial sums added in shared memory, then into grad_table (zeroed by the caller) with one
// atomic add per span.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    rpe_table_grad_kernel(const acc_t* __restrict__ hist, const scalar_t* __restrict__ grad_out,
                          scalar_t* __restrict__ grad_table, Shape s, int64_t dim) {
  __shared__ acc_t partial[kWarps][kTableBins][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row_bins = 3 * s.num_bins, bin_tiles = (row_bins + kTableBins - 1) / kTableBins;
  const int64_t h = blockIdx.x / bin_tiles, k0 = (blockIdx.x % bin_tiles) * kTableBins;
  const int64_t d = blockIdx.y * 32 + lane;
  acc_t sum[kTableBins];
#pragma unroll
  for (int kk = 0; kk < kTableBins; ++kk) sum[kk] = acc_t(0);
  const int64_t span = (s.rows + gridDim.z - 1) / gridDim.z, row_begin = blockIdx.z * span;
  const int64_t row_end = min(s.rows, row_begin + span);
  for (int64_t row0 = row_begin + warp * kTableRows; row0 < row_end; row0 += kWarps * kTableRows) {
    acc_t g[kTableRows], mine[kTableRows];
#pragma unroll
    for (int u = 0; u < kTableRows; ++u) {
      g[u] = mine[u] = acc_t(0);
      if (row0 + u >= row_end) continue;
      const int row = static_cast<int>(row0) + u, queries = static_cast<int>(s.queries);
      const int b = row / queries;  // 32-bit: a 64-bit division a row costs more than its adds
      const int64_t head_row = (static_cast<int64_t>(b) * s.heads + h) * queries + (row - b * queries);
      if (d < dim) g[u] = static_cast<acc_t>(grad_out[head_row * dim + d]);
      if (lane < kTableBins && k0 + lane < row_bins) mine[u] = hist[head_row * row_bins + k0 + lane];
    }
#pragma unroll
    for (int u = 0; u < kTableRows; ++u) {
#pragma unroll
      for (int kk = 0; kk < kTableBins; ++kk) sum[kk] += __shfl_sync(0xffffffffu, mine[u], kk) * g[u];
    }
  }
#pragma unroll
  for (int kk = 0; kk < kTableBins; ++kk) partial[warp][kk][lane] = sum[kk];
  __syncthreads();
  for (int e = threadIdx.x; e < kTableBins * 32; e += kThreads) {
    const int kk = e / 32, dd = e % 32;
    const int64_t k = k0 + kk, out_d = blockIdx.y * 32 + dd;
    if (k >= row_bins || out_d >= dim) continue;
    acc_t total = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += partial[w][kk][dd];
    gpuAtomicAdd(grad_table + (k * s.heads + h) * dim + out_d, static_cast<scalar_t>(total));
  }
}

// The Shape of a [B, H, Nq, Ns] tensor (attn, grad_attn) with L = num_bins.
Shape shape_of(const at::Tensor& attn_like, int64_t num_bins) {
  return Shape{attn_like.size(0) * attn_like.size(2), attn_like.size(1), attn_like.size(2),
               attn_like.size(3), num_bins};
}

unsigned int row_grid(const Shape& s) {
  return static_cast<unsigned int>(std::min<int64_t>(s.rows, int64_t{1} << 30));
}

// Launches rpe_gather_kernel over grad_attn's query rows. kProject false: the bins are
// bin_grad's rows. kProject: they are made from grad_out and the table in shared memory or,
// where they do not fit, in a scratch tensor made here.
template <bool kProject>
void launch_gather(const at::Tensor& bin_grad, const at::Tensor& grad_out, const at::Tensor& table,
                   const at::Tensor& rel_idx, at::Tensor& grad_attn, int64_t num_bins, int* flag) {
  const at::cuda::CUDAGuard guard(grad_attn.device());
  const Shape s = shape_of(grad_attn, num_bins);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::ScalarType acc = at::toOpMathType(grad_attn.scalar_type());
  const int64_t shared_bytes = 3 * s.heads * num_bins * static_cast<int64_t>(at::elementSize(acc));
  const bool in_shared = shared_bytes <= kSharedBytes;
  at::Tensor bins = bin_grad;
  if (kProject && !in_shared) {
    bins = at::empty({grad_attn.size(0), s.heads, s.queries, 3 * num_bins},
                     grad_attn.options().dtype(acc));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_attn.scalar_type(),
                                  "rpe_attention_gather_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_gather_cuda", [&] {
      rpe_gather_kernel<kProject, scalar_t, acc_t, index_t>
          <<<row_grid(s), kThreads, in_shared ? shared_bytes : 0, stream>>>(
              bins.defined() ? const_cast<acc_t*>(bins.data_ptr<acc_t>()) : nullptr,
              kProject ? grad_out.data_ptr<scalar_t>() : nullptr,
              kProject ? table.data_ptr<scalar_t>() : nullptr, kProject ? table.size(3) : 0,
              rel_idx.data_ptr<index_t>(), grad_attn.data_ptr<scalar_t>(), s, in_shared, flag);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace

// All dims are >= 1 here: the wrapper sends empty inputs to the reference.
void rpe_attention_histogram_cuda(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                  at::Tensor& out, int* flag) {
  const at::cuda::CUDAGuard guard(attn.device());
  const Shape s = shape_of(attn, num_bins);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::ScalarType acc = at::toOpMathType(attn.scalar_type());
  const int64_t acc_bytes = at::elementSize(acc);
  const int64_t tile_bytes = (kGroupHeads * acc_bytes + 3 * sizeof(int)) * kTileStride;
  const int64_t copy_bytes = 3 * kGroupHeads * (num_bins + 1) * acc_bytes;
  const int copies = static_cast<int>(std::min<int64_t>(kWarps, (kSharedBytes - tile_bytes) / copy_bytes));
  at::Tensor bins = hist;  // the atomics' target when the bins do not fit in shared memory
  if (copies == 0) {
    if (!bins.defined()) bins = at::empty({s.rows / s.queries, s.heads, s.queries, 3 * num_bins}, attn.options().dtype(acc));
    bins.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, attn.scalar_type(),
                                  "rpe_attention_histogram_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_histogram_cuda", [&] {
      const auto launch = [&](auto owned) {
        rpe_histogram_kernel<decltype(owned)::value, scalar_t, acc_t, index_t>
            <<<row_grid(s), kThreads, copies * copy_bytes + tile_bytes, stream>>>(
                attn.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(),
                bins.defined() ? bins.data_ptr<acc_t>() : nullptr,
                out.defined() ? table.data_ptr<scalar_t>() : nullptr,
                out.defined() ? out.data_ptr<scalar_t>() : nullptr,
                out.defined() ? table.size(3) : 0, s, copies, flag);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (copies == kWarps) {
        launch(std::true_type{});
      } else {
        launch(std::false_type{});
      }
    });
  });
}

void rpe_attention_gather_cuda(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag) {
  launch_gather<false>(bin_grad, at::Tensor(), at::Tensor(), rel_idx, grad_attn,
                       bin_grad.size(3) / 3, flag);
}

// One kernel: each block projects its query row's grad_out on the table and gathers.
void rpe_attention_value_grad_attn_cuda(const at::Tensor& grad_out, const at::Tensor& table,
                                        const at::Tensor& rel_idx, at::Tensor& grad_attn) {
  launch_gather<true>(at::Tensor(), grad_out, table, rel_idx, grad_attn, table.size(1), nullptr);
}

void rpe_attention_value_grad_table_cuda(const at::Tensor& hist, const at::Tensor& grad_out,
                                         at::Tensor& grad_table) {
  const at::cuda::CUDAGuard guard(grad_table.device());
  const int64_t dim = grad_table.size(3);
  const Shape s{grad_out.size(0) * grad_out.size(2), grad_out.size(1), grad_out.size(2), 0,
                grad_table.size(1)};
  const int64_t bin_tiles = (3 * s.num_bins + kTableBins - 1) / kTableBins;
  // Spans of rows: a ScanNet-size backward's 72 (head, bin tile) blocks, each walking all 400
  // rows, took 17 us; 8 spans 9 (H100, session 27). One span adds each entry once into zero,
  // a store: bit-deterministic, and the half types' sums are rounded once.
  const bool one_span = at::isReducedFloatingType(grad_table.scalar_type()) ||
                        at::globalContext().deterministicAlgorithms();
  constexpr int64_t kSpans = 8, kPassRows = kWarps * kTableRows;  // (rows a block's pass takes)
  const int64_t spans = one_span ? 1 : std::min(kSpans, (s.rows + kPassRows - 1) / kPassRows);
  const dim3 grid(static_cast<unsigned int>(s.heads * bin_tiles), static_cast<unsigned int>((dim + 31) / 32),
                  static_cast<unsigned int>(spans));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(cudaMemsetAsync(grad_table.data_ptr(), 0, grad_table.nbytes(), stream));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_table.scalar_type(),
                                  "rpe_attention_value_grad_table_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    rpe_table_grad_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
        hist.data_ptr<acc_t>(), grad_out.data_ptr<scalar_t>(), grad_table.data_ptr<scalar_t>(), s, dim);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}
