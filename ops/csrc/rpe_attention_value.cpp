// Dispatcher of `rpe_attention_value`, the value term of MAFT's contextual
// relative position encoding:
//   out[b,h,i,:] = sum_j attn[b,h,i,j] * sum_a table[a, rel_idx[b,i,j,a], h, :].
// It factors through a histogram of the attention over the L bins of each axis,
//   hist[b,h,i,a,l] = sum_j attn[b,h,i,j] * [rel_idx[b,i,j,a] == l],
// so that, with table_h = table[:, :, h, :] as [3L, D],
//   out        = hist @ table_h
//   grad_attn[b,h,i,j] = sum_a bin_grad[b,h,i,a,rel_idx[b,i,j,a]],  bin_grad = grad_out @ table_h^T
//   grad_table = sum_{b,i} hist^T grad_out.
// hist is kept in the op-math dtype (float for half inputs) and only when the
// table's gradient will be needed. Nothing here raises on user input: the
// Python wrapper validates dtypes, shapes and devices and sends empty inputs
// (any size 0) to the reference; a rel_idx outside [0, L) sets the returned
// flag instead, and the wrapper raises.
#include <ATen/OpMathType.h>

#include "device_registry.h"

// out [B, H, Nq, D] = the value term; hist [B, H, Nq, 3L] (written unless
// undefined). Returns a flag [1] int32 on the host, 1 if rel_idx leaves [0, L).
at::Tensor rpe_attention_forward_impl(const at::Tensor& attn, const at::Tensor& rel_idx,
                                      const at::Tensor& table, at::Tensor& out, at::Tensor& hist) {
  return DISPATCH_DEVICE_IMPL(rpe_attention_forward_impl, attn, rel_idx, table, out, hist);
}

// grad_attn [B, H, Nq, Ns] and grad_table [3, L, H, D] (op-math dtype, zero on
// entry, from hist); each is skipped when undefined.
void rpe_attention_backward_impl(const at::Tensor& grad_out, const at::Tensor& rel_idx,
                                 const at::Tensor& table, const at::Tensor& hist,
                                 at::Tensor& grad_attn, at::Tensor& grad_table) {
  DISPATCH_DEVICE_IMPL(rpe_attention_backward_impl, grad_out, rel_idx, table, hist, grad_attn,
                       grad_table);
}

// Returns {out [B, H, Nq, D], hist (undefined unless save_hist), flag [1] int32 (host)}.
std::vector<at::Tensor> rpe_attention_value_forward(const at::Tensor& attn,
                                                    const at::Tensor& rel_idx,
                                                    const at::Tensor& table, bool save_hist) {
  const int64_t batch = attn.size(0), heads = attn.size(1), queries = attn.size(2);
  const at::ScalarType acc = at::toOpMathType(attn.scalar_type());
  at::Tensor out = at::empty({batch, heads, queries, table.size(3)}, attn.options());
  at::Tensor hist = save_hist ? at::empty({batch, heads, queries, 3 * table.size(1)},
                                          attn.options().dtype(acc))
                              : at::Tensor();
  at::Tensor flag = rpe_attention_forward_impl(attn.contiguous(), rel_idx.contiguous(),
                                               table.contiguous(), out, hist);
  return {out, hist, flag};
}

// Returns {grad_attn (undefined unless attn_grad), grad_table (undefined if hist is None)}.
std::vector<at::Tensor> rpe_attention_value_backward(const at::Tensor& grad_out,
                                                     const at::Tensor& rel_idx,
                                                     const at::Tensor& table,
                                                     const std::optional<at::Tensor>& hist,
                                                     bool attn_grad) {
  const int64_t batch = grad_out.size(0), heads = grad_out.size(1), queries = grad_out.size(2);
  at::Tensor grad_attn =
      attn_grad ? at::empty({batch, heads, queries, rel_idx.size(2)}, grad_out.options())
                : at::Tensor();
  at::Tensor saved_hist = hist.has_value() ? hist->contiguous() : at::Tensor();
  at::Tensor grad_table =
      saved_hist.defined() ? at::zeros(table.sizes(), table.options().dtype(saved_hist.scalar_type()))
                           : at::Tensor();
  rpe_attention_backward_impl(grad_out.contiguous(), rel_idx.contiguous(), table.contiguous(),
                              saved_hist, grad_attn, grad_table);
  if (grad_table.defined()) grad_table = grad_table.to(table.scalar_type());
  return {grad_attn, grad_table};
}
