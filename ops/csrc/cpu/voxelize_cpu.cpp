// CPU `voxelize`: one sequential pass of open addressing (linear probing) over
// packed 64-bit keys, so voxel ids follow the order of first occurrence.
// Coordinates out of range set the returned flag (and nothing else is computed).
#include <ATen/Parallel.h>

#include <atomic>
#include <vector>

#include "device_registry.h"
#include "voxel_key.h"

namespace {

template <typename index_t>
std::vector<at::Tensor> voxelize_cpu_kernel(const at::Tensor& coords) {
  const int64_t n = coords.size(0);
  const index_t* c = coords.data_ptr<index_t>();
  at::Tensor p2v = at::empty({n}, coords.options().dtype(at::kLong));
  int64_t* p2v_data = p2v.data_ptr<int64_t>();

  std::vector<uint64_t> keys(n);
  std::atomic<bool> out_of_range{false};
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const index_t* p = c + 4 * i;
      if (!ikne::voxel_in_range(p[0], p[1], p[2], p[3])) out_of_range = true;
      keys[i] = ikne::pack_voxel_key(p[0], p[1], p[2], p[3]);
    }
  });
  at::Tensor flag = at::full({1}, out_of_range ? 1 : 0, coords.options().dtype(at::kInt));
  if (out_of_range) return {at::empty({0, 4}, coords.options().dtype(at::kInt)), p2v, flag};

  const int64_t capacity = ikne::voxel_table_capacity(n);
  const uint64_t mask = static_cast<uint64_t>(capacity - 1);
  std::vector<uint64_t> slot_key(capacity, ikne::kEmptyVoxelKey);
  std::vector<int64_t> slot_voxel(capacity);
  std::vector<int64_t> first_point;  // voxel id -> index of its first point
  for (int64_t i = 0; i < n; ++i) {
    uint64_t slot = ikne::hash_voxel_key(keys[i]) & mask;
    while (slot_key[slot] != ikne::kEmptyVoxelKey && slot_key[slot] != keys[i]) {
      slot = (slot + 1) & mask;
    }
    if (slot_key[slot] == ikne::kEmptyVoxelKey) {
      slot_key[slot] = keys[i];
      slot_voxel[slot] = static_cast<int64_t>(first_point.size());
      first_point.push_back(i);
    }
    p2v_data[i] = slot_voxel[slot];
  }

  const int64_t m = static_cast<int64_t>(first_point.size());
  at::Tensor voxel_coords = at::empty({m, 4}, coords.options().dtype(at::kInt));
  int32_t* out = voxel_coords.data_ptr<int32_t>();
  at::parallel_for(0, m, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      for (int k = 0; k < 4; ++k) out[4 * v + k] = static_cast<int32_t>(c[4 * first_point[v] + k]);
    }
  });
  return {voxel_coords, p2v, flag};
}

std::vector<at::Tensor> voxelize_cpu(const at::Tensor& coords) {
  std::vector<at::Tensor> result;
  AT_DISPATCH_INDEX_TYPES(coords.scalar_type(), "voxelize_cpu",
                          [&] { result = voxelize_cpu_kernel<index_t>(coords); });
  return result;
}

}  // namespace

std::vector<at::Tensor> voxelize_impl(const at::Tensor& coords);
REGISTER_DEVICE_IMPL(voxelize_impl, CPU, voxelize_cpu);
