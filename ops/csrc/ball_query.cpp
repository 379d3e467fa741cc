// Dispatcher of `ball_query`: the first neighbours within a radius, in point order.
// Nothing here raises on user input: the Python wrapper validates dtypes, shapes, devices,
// the radius and the neighbour count.
#include "device_registry.h"

void ball_query_impl(const at::Tensor& center, const at::Tensor& xyz, double radius,
                     at::Tensor& idx) {
  DISPATCH_DEVICE_IMPL(ball_query_impl, center, xyz, radius, idx);
}

// center [B, M, 3], xyz [B, N, 3] (one float dtype), num_neighbors >= 1 -> idx [B, M, K] int64.
at::Tensor ball_query(const at::Tensor& center, const at::Tensor& xyz, double radius,
                      int64_t num_neighbors) {
  at::Tensor idx =
      at::empty({center.size(0), center.size(1), num_neighbors}, center.options().dtype(at::kLong));
  if (idx.numel() > 0) ball_query_impl(center.contiguous(), xyz.contiguous(), radius, idx);
  return idx;
}
