// Dispatcher of `furthest_point_sample`: iterative farthest point sampling per batch.
#include "device_registry.h"

void furthest_point_sample_impl(const at::Tensor& xyz, at::Tensor& idx) {
  DISPATCH_DEVICE_IMPL(furthest_point_sample_impl, xyz, idx);
}

// xyz [B, N, 3] float32/float64 -> idx [B, num] int64 (the Python wrapper checks the input).
at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t num) {
  TORCH_CHECK(xyz.dim() == 3 && xyz.size(2) == 3, "furthest_point_sample: xyz must be [B, N, 3]");
  TORCH_CHECK(num >= 0 && (num == 0 || num <= xyz.size(1)),
              "furthest_point_sample: need 0 <= num <= N");
  at::Tensor idx = at::empty({xyz.size(0), num}, xyz.options().dtype(at::kLong));
  if (num > 0 && xyz.size(0) > 0) furthest_point_sample_impl(xyz.contiguous(), idx);
  return idx;
}
