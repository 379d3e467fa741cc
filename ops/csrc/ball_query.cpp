// Dispatcher of `ball_query`: the first neighbours within a radius, in point order.
#include "device_registry.h"

void ball_query_impl(const at::Tensor& center, const at::Tensor& xyz, double radius,
                     at::Tensor& idx) {
  DISPATCH_DEVICE_IMPL(ball_query_impl, center, xyz, radius, idx);
}

// center [B, M, 3], xyz [B, N, 3] (same float dtype) -> idx [B, M, K] int64 (the Python
// wrapper checks the input).
at::Tensor ball_query(const at::Tensor& center, const at::Tensor& xyz, double radius,
                      int64_t num_neighbors) {
  TORCH_CHECK(center.dim() == 3 && center.size(2) == 3 && xyz.dim() == 3 && xyz.size(2) == 3 &&
                  center.size(0) == xyz.size(0) && center.scalar_type() == xyz.scalar_type(),
              "ball_query: center must be [B, M, 3] and xyz [B, N, 3] of one dtype");
  TORCH_CHECK(num_neighbors >= 1, "ball_query: num_neighbors must be >= 1");
  at::Tensor idx =
      at::empty({center.size(0), center.size(1), num_neighbors}, center.options().dtype(at::kLong));
  if (idx.numel() > 0) ball_query_impl(center.contiguous(), xyz.contiguous(), radius, idx);
  return idx;
}
