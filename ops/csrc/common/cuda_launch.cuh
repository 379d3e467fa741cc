// Launch geometry shared by the CUDA kernels: grid-stride loops with 64-bit
// indices, so any element count works with a bounded grid. Row-wise kernels
// over [rows, C]: threads x walk the channels of a row, threads y (and the
// grid) walk the rows, so no element index is divided.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace ikne {

constexpr int kThreadsPerBlock = 256;

inline unsigned int grid_size(int64_t n) {
  const int64_t blocks = (n + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

// Row-wise kernels over [rows, C]: threads x over a row's channels (a power of
// two, up to 32, at least lanes_needed), threads y and the grid over the rows.
inline dim3 row_block(int64_t lanes_needed) {
  int lanes = 1;
  while (lanes < lanes_needed && lanes < 32) lanes *= 2;
  return dim3(lanes, kThreadsPerBlock / lanes);
}

inline unsigned int row_grid_size(int64_t rows, const dim3& block) {
  const int64_t blocks = (rows + block.y - 1) / block.y;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 20)));
}

}  // namespace ikne

// for (int64_t i = ...; i < n; i += stride) over the whole grid.
#define IKNE_CUDA_LOOP(i, n)                                                       \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;    \
       i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Rows over threads y and the grid; use with a loop over c = threadIdx.x, c += 32.
#define IKNE_CUDA_ROW_LOOP(row, rows)                                                \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;    \
       row < (rows); row += static_cast<int64_t>(blockDim.y) * gridDim.x)
