// Dispatcher of `furthest_point_sample`: iterative farthest point sampling per batch.
// Nothing here raises on user input: the Python wrapper validates dtype, shape and num.
#include "device_registry.h"

void furthest_point_sample_impl(const at::Tensor& xyz, at::Tensor& idx) {
  DISPATCH_DEVICE_IMPL(furthest_point_sample_impl, xyz, idx);
}

// xyz [B, N, 3] float32/float64, 0 <= num <= N -> idx [B, num] int64.
at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t num) {
  at::Tensor idx = at::empty({xyz.size(0), num}, xyz.options().dtype(at::kLong));
  if (idx.numel() > 0) furthest_point_sample_impl(xyz.contiguous(), idx);
  return idx;
}
