// Dispatcher of `voxel_pool`: mean or max of point features per voxel.
//   mean: aux = counts [M] int64; backward divides the gradient by the count.
//   max:  aux = argmax [M, C] int64 (smallest point index among ties, -1 for an
//         empty voxel); backward routes the gradient to that point.
// Empty voxels give 0. Nothing here raises on user input: the Python wrapper
// validates dtypes, shapes, devices and the mode and sends empty inputs to the
// reference; a p2v outside [0, M) is skipped and sets *flag (host memory,
// pinned for CUDA), which the wrapper raises.
#include <torch/csrc/autograd/custom_function.h>

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

namespace {

// voxel_pool_forward with its gradient: a C++ autograd node, cheaper on the host than a
// Python torch.autograd.Function (the wrapper's eager calls that need a gradient).
struct VoxelPool : public torch::autograd::Function<VoxelPool> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& feats,
                            const at::Tensor& p2v, int64_t num_voxels, bool use_max,
                            const at::Tensor& flag) {
    std::vector<at::Tensor> out_aux = voxel_pool_forward(feats, p2v, num_voxels, use_max, flag);
    ctx->save_for_backward({p2v, out_aux[1]});
    ctx->saved_data["use_max"] = use_max;
    return out_aux[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    return {voxel_pool_backward(grad_out[0], saved[0], saved[1],
                                ctx->saved_data["use_max"].toBool()),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor voxel_pool_autograd(const at::Tensor& feats, const at::Tensor& p2v,
                               int64_t num_voxels, bool use_max, const at::Tensor& flag) {
  return VoxelPool::apply(feats, p2v, num_voxels, use_max, flag);
}
