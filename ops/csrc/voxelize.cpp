// Dispatcher of `voxelize`: unique voxels of integer (batch, x, y, z) coordinates.
// Nothing here raises on user input: the Python wrapper checks dtype and shape,
// and coordinates out of range set the returned flag instead.
#include "device_registry.h"

// Returns {voxel_coords [M, 4] int32 in order of first occurrence, p2v [N] int64,
// flag [1] on the host (non-zero if a coordinate is out of range)}.
std::vector<at::Tensor> voxelize_impl(const at::Tensor& coords) {
  return DISPATCH_DEVICE_IMPL(voxelize_impl, coords);
}

std::vector<at::Tensor> voxelize(const at::Tensor& coords) {
  return voxelize_impl(coords.contiguous());
}
