// Registers the CUDA kernels (defined in cuda/*.cu) as the CUDA
// implementations of the op dispatchers; compiled only in CUDA builds.
#include "device_registry.h"

// voxelize
std::vector<at::Tensor> voxelize_impl(const at::Tensor& coords);
std::vector<at::Tensor> voxelize_cuda(const at::Tensor& coords);
REGISTER_DEVICE_IMPL(voxelize_impl, CUDA, voxelize_cuda);

// voxel_pool
void voxel_pool_forward_impl(const at::Tensor& feats, const at::Tensor& p2v, at::Tensor& out,
                             at::Tensor& aux, bool use_max);
void voxel_pool_backward_impl(const at::Tensor& grad_out, const at::Tensor& p2v,
                              const at::Tensor& aux, at::Tensor& grad_feats, bool use_max);
void voxel_pool_forward_cuda(const at::Tensor& feats, const at::Tensor& p2v, at::Tensor& out,
                             at::Tensor& aux, bool use_max);
void voxel_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& p2v,
                              const at::Tensor& aux, at::Tensor& grad_feats, bool use_max);
REGISTER_DEVICE_IMPL(voxel_pool_forward_impl, CUDA, voxel_pool_forward_cuda);
REGISTER_DEVICE_IMPL(voxel_pool_backward_impl, CUDA, voxel_pool_backward_cuda);

// rpe_attention_value
void rpe_attention_hist_impl(const at::Tensor& attn, const at::Tensor& rel_idx, at::Tensor& hist);
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn);
void rpe_attention_hist_cuda(const at::Tensor& attn, const at::Tensor& rel_idx, at::Tensor& hist);
void rpe_attention_gather_cuda(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn);
REGISTER_DEVICE_IMPL(rpe_attention_hist_impl, CUDA, rpe_attention_hist_cuda);
REGISTER_DEVICE_IMPL(rpe_attention_gather_impl, CUDA, rpe_attention_gather_cuda);
