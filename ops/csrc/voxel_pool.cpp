// Dispatcher of `voxel_pool`: mean or max of point features per voxel.
//   mean: aux = counts [M] int64; backward divides the gradient by the count.
//   max:  aux = argmax [M, C] int64 (smallest point index among ties, -1 for an
//         empty voxel); backward routes the gradient to that point.
// Empty voxels give 0. Nothing here raises on user input: the Python wrapper
// validates dtypes, shapes, devices and the mode and sends empty inputs to the
// reference; a p2v outside [0, M) is skipped and sets *flag (host memory,
// pinned for CUDA), which the wrapper raises.
#include "device_registry.h"

// Returns {out [M, C], aux}; sets *flag = 1 if p2v leaves [0, M).
std::vector<at::Tensor> voxel_pool_forward_impl(const at::Tensor& feats, const at::Tensor& p2v,
                                                int64_t num_voxels, bool use_max, int* flag) {
  return DISPATCH_DEVICE_IMPL(voxel_pool_forward_impl, feats, p2v, num_voxels, use_max, flag);
}

// Returns grad_feats [N, C].
at::Tensor voxel_pool_backward_impl(const at::Tensor& grad_out, const at::Tensor& p2v,
                                    const at::Tensor& aux, bool use_max) {
  return DISPATCH_DEVICE_IMPL(voxel_pool_backward_impl, grad_out, p2v, aux, use_max);
}

std::vector<at::Tensor> voxel_pool_forward(const at::Tensor& feats, const at::Tensor& p2v,
                                           int64_t num_voxels, bool use_max, at::Tensor flag) {
  return voxel_pool_forward_impl(feats.contiguous(), p2v.contiguous(), num_voxels, use_max,
                                 flag.data_ptr<int>());
}

at::Tensor voxel_pool_backward(const at::Tensor& grad_out, const at::Tensor& p2v,
                               const at::Tensor& aux, bool use_max) {
  return voxel_pool_backward_impl(grad_out.contiguous(), p2v.contiguous(), aux.contiguous(),
                                  use_max);
}
