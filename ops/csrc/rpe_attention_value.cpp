// Dispatcher of `rpe_attention_value`, the value term of MAFT's contextual
// relative position encoding:
//   out[b,h,i,:] = sum_j attn[b,h,i,j] * sum_a table[a, rel_idx[b,i,j,a], h, :].
// It factors through a histogram of the attention over the L bins of each axis,
//   hist[b,h,i,a,l] = sum_j attn[b,h,i,j] * [rel_idx[b,i,j,a] == l],
// so that, with table_h = table[:, :, h, :] as [3L, D],
//   out        = hist @ table_h (fused with the histogram: a call without
//                gradients keeps no histogram)
//   grad_attn[b,h,i,j] = sum_a bin_grad[b,h,i,a,rel_idx[b,i,j,a]],  bin_grad = grad_out @ table_h^T
//   grad_table = sum_{b,i} hist^T grad_out.
// Each step is one device implementation: on CUDA one kernel each (the gradients' products
// made inside them, so that a backward launches two kernels; cuBLAS's products cost the
// host more than their GPU time at these sizes), on the CPU ATen's matmuls around the sparse
// kernels. hist is in the op-math dtype (float for half inputs). Nothing here raises on user
// input: the Python wrapper validates dtypes, shapes and devices and sends empty inputs (any
// size 0) to the reference; a rel_idx outside [0, L) is skipped and sets *flag (host memory,
// pinned for CUDA), which the wrapper raises.
#include <ATen/OpMathType.h>
#include <torch/csrc/autograd/custom_function.h>

#include "device_registry.h"

// The histogram of attn [B, H, Nq, Ns] over the L bins of each axis into hist
// [B, H, Nq, 3L] (op-math dtype) unless it is undefined, and its product with
// table [3, L, H, D] into out [B, H, Nq, D] (attn's dtype) unless out is
// undefined; any content on entry. A bin outside [0, L) is skipped and sets
// *flag unless flag is null.
void rpe_attention_histogram_impl(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                  at::Tensor& out, int* flag) {
  DISPATCH_DEVICE_IMPL(rpe_attention_histogram_impl, attn, rel_idx, num_bins, hist, table, out,
                       flag);
}

// grad_attn [B, H, Nq, Ns] = bin_grad [B, H, Nq, 3L] (op-math dtype) gathered at
// rel_idx's bins, summed over the axes; a bin outside [0, L) adds nothing and
// sets *flag unless flag is null (the bias op's forward).
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag) {
  DISPATCH_DEVICE_IMPL(rpe_attention_gather_impl, bin_grad, rel_idx, grad_attn, flag);
}

// The value op's grad_attn [B, H, Nq, Ns]: the gather of bin_grad = grad_out [B, H, Nq, D]
// @ table_h^T (table [3, L, H, D]; both of grad_attn's dtype). rel_idx was checked by the
// forward: a bin outside [0, L) adds nothing.
void rpe_attention_value_grad_attn_impl(const at::Tensor& grad_out, const at::Tensor& table,
                                        const at::Tensor& rel_idx, at::Tensor& grad_attn) {
  DISPATCH_DEVICE_IMPL(rpe_attention_value_grad_attn_impl, grad_out, table, rel_idx, grad_attn);
}

// The value op's grad_table [3, L, H, D] = sum over (b, i) of hist[b, h, i]^T grad_out[b, h, i]
// (hist [B, H, Nq, 3L] in the op-math dtype, grad_out [B, H, Nq, D] of grad_table's dtype).
void rpe_attention_value_grad_table_impl(const at::Tensor& hist, const at::Tensor& grad_out,
                                         at::Tensor& grad_table) {
  DISPATCH_DEVICE_IMPL(rpe_attention_value_grad_table_impl, hist, grad_out, grad_table);
}

// Returns {out [B, H, Nq, D], hist (undefined unless save_hist)}.
std::vector<at::Tensor> rpe_attention_value_forward(const at::Tensor& attn,
                                                    const at::Tensor& rel_idx,
                                                    const at::Tensor& table, bool save_hist,
                                                    at::Tensor flag) {
  at::Tensor hist;
  if (save_hist) {
    hist = at::empty({attn.size(0), attn.size(1), attn.size(2), 3 * table.size(1)},
                     attn.options().dtype(at::toOpMathType(attn.scalar_type())));
  }
  at::Tensor out = at::empty({attn.size(0), attn.size(1), attn.size(2), table.size(3)},
                             attn.options());
  rpe_attention_histogram_impl(attn.contiguous(), rel_idx.contiguous(), table.size(1), hist,
                               table.contiguous(), out, flag.data_ptr<int>());
  return {out, hist};
}

// Returns {grad_attn (undefined unless attn_grad), grad_table (undefined if hist is None)}.
std::vector<at::Tensor> rpe_attention_value_backward(const at::Tensor& grad_out,
                                                     const at::Tensor& rel_idx,
                                                     const at::Tensor& table,
                                                     const std::optional<at::Tensor>& hist,
                                                     bool attn_grad) {
  const at::Tensor grad = grad_out.contiguous();
  at::Tensor grad_attn, grad_table;
  if (attn_grad) {
    grad_attn = at::empty({grad.size(0), grad.size(1), grad.size(2), rel_idx.size(2)},
                          grad.options());
    rpe_attention_value_grad_attn_impl(grad, table.contiguous(), rel_idx.contiguous(), grad_attn);
  }
  if (hist.has_value()) {
    grad_table = at::empty(table.sizes(), table.options());
    rpe_attention_value_grad_table_impl(hist->contiguous(), grad, grad_table);
  }
  return {grad_attn, grad_table};
}

namespace {

// rpe_attention_value_forward with its gradients: a C++ autograd node, cheaper on the host
// than a Python torch.autograd.Function (the wrapper's eager calls that need a gradient). The
// histogram, saved only with save_hist, serves the table's gradient.
struct RPEAttentionValue : public torch::autograd::Function<RPEAttentionValue> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& attn,
                            const at::Tensor& rel_idx, const at::Tensor& table, bool save_hist,
                            const at::Tensor& flag) {
    std::vector<at::Tensor> out_hist =
        rpe_attention_value_forward(attn, rel_idx, table, save_hist, flag);
    ctx->save_for_backward({rel_idx, table, out_hist[1]});
    return out_hist[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor& hist = saved[2];
    std::vector<at::Tensor> grads = rpe_attention_value_backward(
        grad_out[0].contiguous(), saved[0], saved[1],
        hist.defined() ? std::optional<at::Tensor>(hist) : std::nullopt,
        ctx->needs_input_grad(0));
    return {grads[0], at::Tensor(), grads[1], at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor rpe_attention_value_autograd(const at::Tensor& attn, const at::Tensor& rel_idx,
                                        const at::Tensor& table, bool save_hist,
                                        const at::Tensor& flag) {
  return RPEAttentionValue::apply(attn, rel_idx, table, save_hist, flag);
}
