// Dispatcher of `voxelize`: unique voxels of integer (batch, x, y, z) coordinates.
#include "device_registry.h"

// Returns {voxel_coords [M, 4] int32 in order of first occurrence, p2v [N] int64}.
std::vector<at::Tensor> voxelize_impl(const at::Tensor& coords) {
  return DISPATCH_DEVICE_IMPL(voxelize_impl, coords);
}

std::vector<at::Tensor> voxelize(const at::Tensor& coords) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4,
              "voxelize: coords must have shape [N, 4], got ", coords.sizes());
  TORCH_CHECK(coords.scalar_type() == at::kInt || coords.scalar_type() == at::kLong,
              "voxelize: coords must be int32 or int64, got ", coords.scalar_type());
  return voxelize_impl(coords.contiguous());
}
