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
// The device kernels do the histogram with the product and the gather into
// grad_attn; the backward's dense products are ATen matmuls here. hist
// is in the op-math dtype (float for half inputs). Nothing here raises on user
// input: the Python wrapper validates dtypes, shapes and devices and sends
// empty inputs (any size 0) to the reference; a rel_idx outside [0, L) is
// skipped and sets *flag (host memory, pinned for CUDA), which the wrapper raises.
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
// sets *flag unless flag is null (here rel_idx was checked by the forward).
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag) {
  DISPATCH_DEVICE_IMPL(rpe_attention_gather_impl, bin_grad, rel_idx, grad_attn, flag);
}

namespace {

// table [3, L, H, D] as per-head matrices [H, 3L, D] in `dtype` (a view when
// table has that dtype and is contiguous).
at::Tensor table_per_head(const at::Tensor& table, at::ScalarType dtype) {
  return table.to(dtype).permute({2, 0, 1, 3}).reshape({table.size(2), -1, table.size(3)});
}

}  // namespace

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
  const at::ScalarType acc = at::toOpMathType(grad_out.scalar_type());
  const at::Tensor grad = grad_out.to(acc);
  at::Tensor grad_attn, grad_table;
  if (attn_grad) {
    const at::Tensor bin_grad =
        at::matmul(grad, table_per_head(table, acc).transpose(1, 2)).contiguous();
    grad_attn = at::empty({grad_out.size(0), grad_out.size(1), grad_out.size(2), rel_idx.size(2)},
                          grad_out.options());
    rpe_attention_gather_impl(bin_grad, rel_idx.contiguous(), grad_attn, nullptr);
  }
  if (hist.has_value()) {
    // per scene and head hist^T grad_out [B, H, 3L, D] (one batched matmul of the tensors as
    // they are), summed over the scenes straight into the table's layout [3, L, H, D]
    const int64_t heads = table.size(2), num_bins = table.size(1), dim = table.size(3);
    grad_table = at::empty(table.sizes(), table.options());
    at::Tensor per_head = grad_table.view({3 * num_bins, heads, dim}).permute({1, 0, 2});
    at::sum_out(per_head, at::matmul(hist->transpose(2, 3), grad), {0});
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
