// CUDA `voxelize`: an atomicCAS open-addressing hash table on the packed keys.
// Each slot also keeps the smallest index of its points (atomicMin); a prefix
// sum over "is the first point of its voxel" then numbers voxels in order of
// first occurrence, so the result is deterministic and equals the CPU one.
// Coordinates out of range set the returned flag (a CPU tensor: the voxel count
// is read back anyway), and no voxels are written.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "cuda_launch.cuh"
#include "voxel_key.h"

namespace {

template <typename index_t>
__global__ void insert_points_kernel(const index_t* __restrict__ coords, int64_t n,
                                     unsigned long long* slot_key, long long* slot_first,
                                     int64_t* point_slot, uint64_t mask, int64_t* out_of_range) {
  IKNE_CUDA_LOOP(i, n) {
    const index_t* p = coords + 4 * i;
    if (!ikne::voxel_in_range(p[0], p[1], p[2], p[3])) *out_of_range = 1;  // reported after
    const unsigned long long key = ikne::pack_voxel_key(p[0], p[1], p[2], p[3]);
    uint64_t slot = ikne::hash_voxel_key(key) & mask;
    while (true) {
      const unsigned long long prev = atomicCAS(slot_key + slot, ikne::kEmptyVoxelKey, key);
      if (prev == ikne::kEmptyVoxelKey || prev == key) break;
      slot = (slot + 1) & mask;
    }
    atomicMin(slot_first + slot, static_cast<long long>(i));
    point_slot[i] = static_cast<int64_t>(slot);
  }
}

__global__ void mark_first_points_kernel(const long long* slot_first, const int64_t* point_slot,
                                         int64_t n, int64_t* is_first) {
  IKNE_CUDA_LOOP(i, n) { is_first[i] = slot_first[point_slot[i]] == i; }
}

// first_rank[i] = number of first points among 0..i (inclusive prefix sum).
template <typename index_t>
__global__ void write_voxels_kernel(const index_t* __restrict__ coords,
                                    const long long* slot_first, const int64_t* point_slot,
                                    const int64_t* first_rank, int64_t n, int32_t* voxel_coords,
                                    int64_t* p2v) {
  IKNE_CUDA_LOOP(i, n) {
    const int64_t first = slot_first[point_slot[i]];
    const int64_t voxel = first_rank[first] - 1;
    p2v[i] = voxel;
    if (first == i) {
      for (int k = 0; k < 4; ++k) voxel_coords[4 * voxel + k] = static_cast<int32_t>(coords[4 * i + k]);
    }
  }
}

}  // namespace

std::vector<at::Tensor> voxelize_cuda(const at::Tensor& coords) {
  const at::cuda::CUDAGuard guard(coords.device());
  const int64_t n = coords.size(0);
  const auto long_options = coords.options().dtype(at::kLong);
  at::Tensor p2v = at::empty({n}, long_options);
  if (n == 0) {
    return {at::empty({0, 4}, coords.options().dtype(at::kInt)), p2v, at::zeros({1}, at::kLong)};
  }

  const int64_t capacity = ikne::voxel_table_capacity(n);
  at::Tensor slot_key = at::full({capacity}, -1, long_options);  // all ones: kEmptyVoxelKey
  at::Tensor slot_first = at::full({capacity}, std::numeric_limits<int64_t>::max(), long_options);
  at::Tensor point_slot = at::empty({n}, long_options);
  at::Tensor is_first = at::empty({n}, long_options);
  at::Tensor out_of_range = at::zeros({1}, long_options);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const unsigned int grid = ikne::grid_size(n);
  auto* keys = reinterpret_cast<unsigned long long*>(slot_key.data_ptr<int64_t>());
  auto* firsts = reinterpret_cast<long long*>(slot_first.data_ptr<int64_t>());

  at::Tensor voxel_coords, flag;
  AT_DISPATCH_INDEX_TYPES(coords.scalar_type(), "voxelize_cuda", [&] {
    const index_t* c = coords.data_ptr<index_t>();
    insert_points_kernel<<<grid, ikne::kThreadsPerBlock, 0, stream>>>(
        c, n, keys, firsts, point_slot.data_ptr<int64_t>(), static_cast<uint64_t>(capacity - 1),
        out_of_range.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    mark_first_points_kernel<<<grid, ikne::kThreadsPerBlock, 0, stream>>>(
        firsts, point_slot.data_ptr<int64_t>(), n, is_first.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor first_rank = at::cumsum(is_first, 0);
    // One device-to-host copy: the voxel count and the range flag.
    const at::Tensor count_and_flag = at::cat({first_rank.slice(0, n - 1), out_of_range}).cpu();
    flag = count_and_flag.narrow(0, 1, 1);
    const int64_t* host = count_and_flag.data_ptr<int64_t>();
    voxel_coords = at::empty({host[1] == 0 ? host[0] : 0, 4}, coords.options().dtype(at::kInt));
    if (host[1] != 0) return;
    write_voxels_kernel<<<grid, ikne::kThreadsPerBlock, 0, stream>>>(
        c, firsts, point_slot.data_ptr<int64_t>(), first_rank.data_ptr<int64_t>(), n,
        voxel_coords.data_ptr<int32_t>(), p2v.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {voxel_coords, p2v, flag};
}
