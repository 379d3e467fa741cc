// CPU `furthest_point_sample`: one sequential pass per sample over the points of a batch,
// batches in parallel. The first sample is point 0; each next one is the point farthest
// from those chosen so far (smallest index among ties). Squared distances round as
// dx*dx + dy*dy then + dz*dz: the build targets plain x86-64, which has no fused multiply-add.
#include <ATen/Parallel.h>

#include <limits>
#include <vector>

#include "device_registry.h"

namespace {

template <typename scalar_t>
void fps_cpu_kernel(const at::Tensor& xyz, at::Tensor& idx) {
  const int64_t batches = xyz.size(0), n = xyz.size(1), num = idx.size(1);
  const scalar_t* points = xyz.data_ptr<scalar_t>();
  int64_t* out = idx.data_ptr<int64_t>();
  at::parallel_for(0, batches, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> dist(n);
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* p = points + b * n * 3;
      int64_t* o = out + b * num;
      std::fill(dist.begin(), dist.end(), std::numeric_limits<scalar_t>::infinity());
      int64_t last = 0;
      o[0] = 0;
      for (int64_t s = 1; s < num; ++s) {
        const scalar_t x0 = p[3 * last], y0 = p[3 * last + 1], z0 = p[3 * last + 2];
        int64_t best = 0;
        scalar_t best_dist = -1;
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t dx = p[3 * j] - x0, dy = p[3 * j + 1] - y0, dz = p[3 * j + 2] - z0;
          const scalar_t d = dx * dx + dy * dy + dz * dz;
          if (d < dist[j]) dist[j] = d;
          if (dist[j] > best_dist) {
            best_dist = dist[j];
            best = j;
          }
        }
        o[s] = last = best;
      }
    }
  });
}

void furthest_point_sample_cpu(const at::Tensor& xyz, at::Tensor& idx) {
  AT_DISPATCH_FLOATING_TYPES(xyz.scalar_type(), "furthest_point_sample_cpu",
                             [&] { fps_cpu_kernel<scalar_t>(xyz, idx); });
}

}  // namespace

void furthest_point_sample_impl(const at::Tensor& xyz, at::Tensor& idx);
REGISTER_DEVICE_IMPL(furthest_point_sample_impl, CPU, furthest_point_sample_cpu);
