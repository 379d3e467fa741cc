// CPU `ball_query`: for each centre, scan the points in order and keep the first K whose
// squared distance (dx*dx + dy*dy then + dz*dz) is below radius^2 (rounded to the
// points' dtype); unfilled slots repeat the first neighbour, a centre without any
// neighbour gets -1 throughout. Centres in parallel.
#include <ATen/Parallel.h>

#include "device_registry.h"

namespace {

template <typename scalar_t>
void ball_query_cpu_kernel(const at::Tensor& center, const at::Tensor& xyz, double radius,
                           at::Tensor& idx) {
  const int64_t batches = center.size(0), m = center.size(1), n = xyz.size(1), k = idx.size(2);
  const scalar_t r2 = static_cast<scalar_t>(radius * radius);
  const scalar_t* centers = center.data_ptr<scalar_t>();
  const scalar_t* points = xyz.data_ptr<scalar_t>();
  int64_t* out = idx.data_ptr<int64_t>();
  at::parallel_for(0, batches * m, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const scalar_t* c = centers + 3 * row;
      const scalar_t* p = points + (row / m) * n * 3;
      int64_t* o = out + row * k;
      int64_t found = 0;
      for (int64_t j = 0; j < n && found < k; ++j) {
        const scalar_t dx = p[3 * j] - c[0], dy = p[3 * j + 1] - c[1], dz = p[3 * j + 2] - c[2];
        if (dx * dx + dy * dy + dz * dz < r2) o[found++] = j;
      }
      const int64_t fill = found > 0 ? o[0] : -1;
      for (int64_t s = found; s < k; ++s) o[s] = fill;
    }
  });
}

void ball_query_cpu(const at::Tensor& center, const at::Tensor& xyz, double radius,
                    at::Tensor& idx) {
  AT_DISPATCH_FLOATING_TYPES(center.scalar_type(), "ball_query_cpu",
                             [&] { ball_query_cpu_kernel<scalar_t>(center, xyz, radius, idx); });
}

}  // namespace

void ball_query_impl(const at::Tensor& center, const at::Tensor& xyz, double radius,
                     at::Tensor& idx);
REGISTER_DEVICE_IMPL(ball_query_impl, CPU, ball_query_cpu);
