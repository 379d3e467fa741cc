// Dispatcher of `voxel_pool`: mean or max of point features per voxel.
//   mean: aux = counts [M] int64; backward divides the gradient by the count.
//   max:  aux = argmax [M, C] int64 (smallest point index among ties, -1 for an
//         empty voxel); backward routes the gradient to that point.
// Empty voxels give 0.
#include "device_registry.h"

void voxel_pool_forward_impl(const at::Tensor& feats, const at::Tensor& p2v, at::Tensor& out,
                             at::Tensor& aux, bool use_max) {
  DISPATCH_DEVICE_IMPL(voxel_pool_forward_impl, feats, p2v, out, aux, use_max);
}

void voxel_pool_backward_impl(const at::Tensor& grad_out, const at::Tensor& p2v,
                              const at::Tensor& aux, at::Tensor& grad_feats, bool use_max) {
  DISPATCH_DEVICE_IMPL(voxel_pool_backward_impl, grad_out, p2v, aux, grad_feats, use_max);
}

namespace {

bool pool_mode_is_max(const std::string& mode) {
  TORCH_CHECK(mode == "mean" || mode == "max", "voxel_pool: mode must be 'mean' or 'max', got '",
              mode, "'");
  return mode == "max";
}

}  // namespace

// Returns {out [M, C], aux}; p2v values must lie in [0, num_voxels).
std::vector<at::Tensor> voxel_pool_forward(const at::Tensor& feats, const at::Tensor& p2v,
                                           int64_t num_voxels, const std::string& mode) {
  const bool use_max = pool_mode_is_max(mode);
  TORCH_CHECK(feats.dim() == 2, "voxel_pool: feats must be [N, C], got ", feats.sizes());
  TORCH_CHECK(p2v.dim() == 1 && p2v.size(0) == feats.size(0) && p2v.scalar_type() == at::kLong,
              "voxel_pool: p2v must be int64 [N] with N = ", feats.size(0));
  TORCH_CHECK(num_voxels >= 0, "voxel_pool: num_voxels must be >= 0");
  const int64_t channels = feats.size(1);
  // Uninitialised: each device implementation fills them.
  at::Tensor out = at::empty({num_voxels, channels}, feats.options());
  at::Tensor aux = use_max ? at::empty({num_voxels, channels}, p2v.options())
                           : at::empty({num_voxels}, p2v.options());
  voxel_pool_forward_impl(feats.contiguous(), p2v.contiguous(), out, aux, use_max);
  return {out, aux};
}

at::Tensor voxel_pool_backward(const at::Tensor& grad_out, const at::Tensor& p2v,
                               const at::Tensor& aux, const std::string& mode) {
  const bool use_max = pool_mode_is_max(mode);
  TORCH_CHECK(grad_out.dim() == 2, "voxel_pool: grad_out must be [M, C]");
  at::Tensor grad_feats = use_max ? at::zeros({p2v.size(0), grad_out.size(1)}, grad_out.options())
                                  : at::empty({p2v.size(0), grad_out.size(1)}, grad_out.options());
  voxel_pool_backward_impl(grad_out.contiguous(), p2v.contiguous(), aux.contiguous(), grad_feats,
                           use_max);
  return grad_feats;
}
