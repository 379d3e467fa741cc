// Dispatcher of `rpe_attention_bias`, the logit bias of MAFT's contextual
// relative position encoding:
//   out[b,h,i,j] = sum_a bins[b,h,i,a*L + rel_idx[b,i,j,a]],
// bins being the query (or key) features projected on the RPE table. Its two
// directions are the sparse steps of `rpe_attention_value` with the roles
// swapped: the forward is that op's gather, the gradient of bins is its
// histogram of grad_out. Nothing here raises on user input (see
// rpe_attention_value.cpp); a rel_idx outside [0, L) sets *flag.
#include <ATen/OpMathType.h>
#include <torch/csrc/autograd/custom_function.h>

#include "device_registry.h"

void rpe_attention_histogram_impl(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                  at::Tensor& out, int* flag);
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag);

// bins [B, H, N, 3L], rel_idx [B, N, M, 3] -> out [B, H, N, M] of bins' dtype.
at::Tensor rpe_attention_bias_forward(const at::Tensor& bins, const at::Tensor& rel_idx,
                                      at::Tensor flag) {
  at::Tensor out = at::empty({bins.size(0), bins.size(1), bins.size(2), rel_idx.size(2)},
                             bins.options());
  rpe_attention_gather_impl(bins.to(at::toOpMathType(bins.scalar_type())).contiguous(),
                            rel_idx.contiguous(), out, flag.data_ptr<int>());
  return out;
}

// grad_out [B, H, N, M] -> grad_bins [B, H, N, 3 * num_bins] of grad_out's dtype.
at::Tensor rpe_attention_bias_backward(const at::Tensor& grad_out, const at::Tensor& rel_idx,
                                       int64_t num_bins) {
  at::Tensor grad_bins =
      at::empty({grad_out.size(0), grad_out.size(1), grad_out.size(2), 3 * num_bins},
                grad_out.options().dtype(at::toOpMathType(grad_out.scalar_type())));
  at::Tensor no_out;
  rpe_attention_histogram_impl(grad_out.contiguous(), rel_idx.contiguous(), num_bins, grad_bins,
                               at::Tensor(), no_out, nullptr);
  return grad_bins.to(grad_out.scalar_type());
}

namespace {

// rpe_attention_bias_forward with its gradient: a C++ autograd node, cheaper on the host than
// a Python torch.autograd.Function (the wrapper's eager calls that need a gradient).
struct RPEAttentionBias : public torch::autograd::Function<RPEAttentionBias> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& bins,
                            const at::Tensor& rel_idx, const at::Tensor& flag) {
    ctx->save_for_backward({rel_idx});
    ctx->saved_data["num_bins"] = bins.size(3) / 3;
    return rpe_attention_bias_forward(bins, rel_idx, flag);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    return {rpe_attention_bias_backward(grad_out[0], ctx->get_saved_variables()[0],
                                        ctx->saved_data["num_bins"].toInt()),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor rpe_attention_bias_autograd(const at::Tensor& bins, const at::Tensor& rel_idx,
                                       const at::Tensor& flag) {
  return RPEAttentionBias::apply(bins, rel_idx, flag);
}
