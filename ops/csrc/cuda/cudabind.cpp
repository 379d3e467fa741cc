// Registers the CUDA kernels (defined in cuda/*.cu) as the CUDA
// implementations of the op dispatchers; compiled only in CUDA builds.
#include "device_registry.h"

// voxelize
std::vector<at::Tensor> voxelize_impl(const at::Tensor& coords);
std::vector<at::Tensor> voxelize_cuda(const at::Tensor& coords);
REGISTER_DEVICE_IMPL(voxelize_impl, CUDA, voxelize_cuda);

// voxel_pool
std::vector<at::Tensor> voxel_pool_forward_impl(const at::Tensor& feats, const at::Tensor& p2v,
                                                int64_t num_voxels, bool use_max, int* flag);
at::Tensor voxel_pool_backward_impl(const at::Tensor& grad_out, const at::Tensor& p2v,
                                    const at::Tensor& aux, bool use_max);
std::vector<at::Tensor> voxel_pool_forward_cuda(const at::Tensor& feats, const at::Tensor& p2v,
                                                int64_t num_voxels, bool use_max, int* flag);
at::Tensor voxel_pool_backward_cuda(const at::Tensor& grad_out, const at::Tensor& p2v,
                                    const at::Tensor& aux, bool use_max);
REGISTER_DEVICE_IMPL(voxel_pool_forward_impl, CUDA, voxel_pool_forward_cuda);
REGISTER_DEVICE_IMPL(voxel_pool_backward_impl, CUDA, voxel_pool_backward_cuda);

// rpe_attention_value
void rpe_attention_histogram_impl(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                  at::Tensor& out, int* flag);
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag);
void rpe_attention_histogram_cuda(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                  at::Tensor& out, int* flag);
void rpe_attention_gather_cuda(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag);
REGISTER_DEVICE_IMPL(rpe_attention_histogram_impl, CUDA, rpe_attention_histogram_cuda);
void rpe_attention_value_grad_attn_impl(const at::Tensor& grad_out, const at::Tensor& table,
                                        const at::Tensor& rel_idx, at::Tensor& grad_attn);
void rpe_attention_value_grad_table_impl(const at::Tensor& hist, const at::Tensor& grad_out,
                                         at::Tensor& grad_table);
void rpe_attention_value_grad_attn_cuda(const at::Tensor& grad_out, const at::Tensor& table,
                                        const at::Tensor& rel_idx, at::Tensor& grad_attn);
void rpe_attention_value_grad_table_cuda(const at::Tensor& hist, const at::Tensor& grad_out,
                                         at::Tensor& grad_table);
REGISTER_DEVICE_IMPL(rpe_attention_gather_impl, CUDA, rpe_attention_gather_cuda);
REGISTER_DEVICE_IMPL(rpe_attention_value_grad_attn_impl, CUDA, rpe_attention_value_grad_attn_cuda);
REGISTER_DEVICE_IMPL(rpe_attention_value_grad_table_impl, CUDA, rpe_attention_value_grad_table_cuda);

// furthest_point_sample
void furthest_point_sample_impl(const at::Tensor& xyz, at::Tensor& idx);
void furthest_point_sample_cuda(const at::Tensor& xyz, at::Tensor& idx);
REGISTER_DEVICE_IMPL(furthest_point_sample_impl, CUDA, furthest_point_sample_cuda);

// ball_query
void ball_query_impl(const at::Tensor& center, const at::Tensor& xyz, double radius,
                     at::Tensor& idx);
void ball_query_cuda(const at::Tensor& center, const at::Tensor& xyz, double radius,
                     at::Tensor& idx);
REGISTER_DEVICE_IMPL(ball_query_impl, CUDA, ball_query_cuda);
