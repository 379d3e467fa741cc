// CPU `voxel_pool`: points are grouped by voxel (a stable counting sort), then
// voxels are reduced in parallel, each by one thread, in ascending point order.
#include <ATen/Parallel.h>

#include <vector>

#include "device_registry.h"

namespace {

// Points of voxel v are order[start[v] .. start[v + 1]), ascending; valid is
// false (and the rest unset) if a p2v value lies outside [0, M).
struct PointsByVoxel {
  bool valid = true;
  std::vector<int64_t> start;
  std::vector<int64_t> order;
};

PointsByVoxel group_points_by_voxel(const int64_t* p2v, int64_t n, int64_t m) {
  PointsByVoxel groups{true, std::vector<int64_t>(m + 1, 0), std::vector<int64_t>(n)};
  for (int64_t i = 0; i < n; ++i) {
    if (p2v[i] < 0 || p2v[i] >= m) {
      groups.valid = false;
      return groups;
    }
    ++groups.start[p2v[i] + 1];
  }
  for (int64_t v = 0; v < m; ++v) groups.start[v + 1] += groups.start[v];
  std::vector<int64_t> cursor(groups.start.begin(), groups.start.end() - 1);
  for (int64_t i = 0; i < n; ++i) groups.order[cursor[p2v[i]]++] = i;
  return groups;
}

template <typename scalar_t>
void pool_mean(const scalar_t* feats, const PointsByVoxel& groups, int64_t m, int64_t channels,
               scalar_t* out, int64_t* counts) {
  at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      const int64_t first = groups.start[v], last = groups.start[v + 1];
      counts[v] = last - first;
      if (first == last) continue;
      scalar_t* row = out + v * channels;
      for (int64_t k = first; k < last; ++k) {
        const scalar_t* point = feats + groups.order[k] * channels;
        for (int64_t c = 0; c < channels; ++c) row[c] += point[c];
      }
      for (int64_t c = 0; c < channels; ++c) row[c] /= static_cast<scalar_t>(last - first);
    }
  });
}

template <typename scalar_t>
void pool_max(const scalar_t* feats, const PointsByVoxel& groups, int64_t m, int64_t channels,
              scalar_t* out, int64_t* argmax) {
  at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      const int64_t first = groups.start[v], last = groups.start[v + 1];
      if (first == last) continue;
      scalar_t* row = out + v * channels;
      int64_t* arg = argmax + v * channels;
      const int64_t i0 = groups.order[first];
      for (int64_t c = 0; c < channels; ++c) {
        row[c] = feats[i0 * channels + c];
        arg[c] = i0;
      }
      for (int64_t k = first + 1; k < last; ++k) {  // strict '>' keeps the smallest index
        const int64_t i = groups.order[k];
        for (int64_t c = 0; c < channels; ++c) {
          if (feats[i * channels + c] > row[c]) {
            row[c] = feats[i * channels + c];
            arg[c] = i;
          }
        }
      }
    }
  });
}

std::vector<at::Tensor> voxel_pool_forward_cpu(const at::Tensor& feats, const at::Tensor& p2v,
                                               int64_t m, bool use_max, int* flag) {
  const int64_t n = feats.size(0), channels = feats.size(1);
  at::Tensor out = at::zeros({m, channels}, feats.options());
  at::Tensor aux = use_max ? at::full({m, channels}, -1, p2v.options())
                           : at::empty({m}, p2v.options());
  const PointsByVoxel groups = group_points_by_voxel(p2v.data_ptr<int64_t>(), n, m);
  if (!groups.valid) {
    *flag = 1;
    return {out, aux};
  }
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "voxel_pool_forward_cpu", [&] {
    if (use_max) {
      pool_max(feats.data_ptr<scalar_t>(), groups, m, channels, out.data_ptr<scalar_t>(),
               aux.data_ptr<int64_t>());
    } else {
      pool_mean(feats.data_ptr<scalar_t>(), groups, m, channels, out.data_ptr<scalar_t>(),
                aux.data_ptr<int64_t>());
    }
  });
  return {out, aux};
}

at::Tensor voxel_pool_backward_cpu(const at::Tensor& grad_out, const at::Tensor& p2v,
                                   const at::Tensor& aux, bool use_max) {
  const int64_t n = p2v.size(0), channels = grad_out.size(1), m = grad_out.size(0);
  at::Tensor grad_feats = use_max ? at::zeros({n, channels}, grad_out.options())
                                  : at::empty({n, channels}, grad_out.options());
  const int64_t* p2v_data = p2v.data_ptr<int64_t>();
  const int64_t* aux_data = aux.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "voxel_pool_backward_cpu", [&] {
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    scalar_t* gf = grad_feats.data_ptr<scalar_t>();
    if (use_max) {  // each point is the argmax of at most one voxel: no write conflicts
      at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
        for (int64_t idx = begin * channels; idx < end * channels; ++idx) {
          const int64_t i = aux_data[idx];
          if (i >= 0) gf[i * channels + idx % channels] = g[idx];
        }
      });
    } else {
      at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t v = p2v_data[i];
          const scalar_t count = static_cast<scalar_t>(aux_data[v]);
          for (int64_t c = 0; c < channels; ++c) gf[i * channels + c] = g[v * channels + c] / count;
        }
      });
    }
  });
  return grad_feats;
}

}  // namespace

std::vector<at::Tensor> voxel_pool_forward_impl(const at::Tensor& feats, const at::Tensor& p2v,
                                                int64_t num_voxels, bool use_max, int* flag);
at::Tensor voxel_pool_backward_impl(const at::Tensor& grad_out, const at::Tensor& p2v,
                                    const at::Tensor& aux, bool use_max);
REGISTER_DEVICE_IMPL(voxel_pool_forward_impl, CPU, voxel_pool_forward_cpu);
REGISTER_DEVICE_IMPL(voxel_pool_backward_impl, CPU, voxel_pool_backward_cpu);
