// Dispatcher of `rpe_attention_value`, the value term of MAFT's contextual
// relative position encoding:
//   out[b,h,i,:] = sum_j attn[b,h,i,j] * sum_a table[a, rel_idx[b,i,j,a], h, :].
// It factors through a histogram of the attention over the L bins of each axis,
//   hist[b,h,i,a,l] = sum_j attn[b,h,i,j] * [rel_idx[b,i,j,a] == l],
// so the device kernels are two primitives over the Ns superpoints (the
// histogram, and its adjoint, a gather of per-bin values) and the rest is
// small dense algebra on [3L]-long rows, done here with ATen on any device:
//   out        = hist @ table_h                       (table_h[h] = table[:, :, h, :] as [3L, D])
//   bin_grad   = grad_out @ table_h^T,  grad_attn[b,h,i,j] = sum_a bin_grad[b,h,i,a,rel_idx[b,i,j,a]]
//   grad_table = sum_{b,i} hist^T grad_out.
// hist and bin_grad are kept in the op-math dtype (float for half inputs).
#include <ATen/OpMathType.h>

#include "device_registry.h"

// hist [B, H, Nq, 3L] (zero-filled) += the attention histogram; raises
// ValueError if rel_idx leaves [0, L).
void rpe_attention_hist_impl(const at::Tensor& attn, const at::Tensor& rel_idx, at::Tensor& hist) {
  DISPATCH_DEVICE_IMPL(rpe_attention_hist_impl, attn, rel_idx, hist);
}

// grad_attn [B, H, Nq, Ns] = sum over axes of bin_grad [B, H, Nq, 3L] at rel_idx.
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn) {
  DISPATCH_DEVICE_IMPL(rpe_attention_gather_impl, bin_grad, rel_idx, grad_attn);
}

namespace {

// table [3, L, H, D] as per-head matrices [H, 3L, D] in `dtype`.
at::Tensor table_per_head(const at::Tensor& table, at::ScalarType dtype) {
  return table.to(dtype).permute({2, 0, 1, 3}).reshape({table.size(2), -1, table.size(3)});
}

void check_rel_idx(const at::Tensor& rel_idx, int64_t batch, int64_t num_queries) {
  TORCH_CHECK(rel_idx.dim() == 4 && rel_idx.size(0) == batch && rel_idx.size(1) == num_queries &&
                  rel_idx.size(3) == 3,
              "rpe_attention_value: rel_idx must be [", batch, ", ", num_queries, ", Ns, 3], got ",
              rel_idx.sizes());
  TORCH_CHECK(rel_idx.scalar_type() == at::kInt || rel_idx.scalar_type() == at::kLong,
              "rpe_attention_value: rel_idx must be int32 or int64");
}

}  // namespace

// Returns {out [B, H, Nq, D], hist [B, H, Nq, 3L]} (hist is saved for backward).
std::vector<at::Tensor> rpe_attention_value_forward(const at::Tensor& attn,
                                                    const at::Tensor& rel_idx,
                                                    const at::Tensor& table) {
  TORCH_CHECK(attn.dim() == 4, "rpe_attention_value: attn must be [B, H, Nq, Ns]");
  TORCH_CHECK(table.dim() == 4 && table.size(0) == 3 && table.size(2) == attn.size(1),
              "rpe_attention_value: table must be [3, L, H, D] with H = ", attn.size(1));
  TORCH_CHECK(table.scalar_type() == attn.scalar_type(),
              "rpe_attention_value: attn and table must have one dtype");
  check_rel_idx(rel_idx, attn.size(0), attn.size(2));
  TORCH_CHECK(rel_idx.size(2) == attn.size(3), "rpe_attention_value: rel_idx must have Ns = ",
              attn.size(3));
  const at::ScalarType acc = at::toOpMathType(attn.scalar_type());
  at::Tensor hist = at::zeros({attn.size(0), attn.size(1), attn.size(2), 3 * table.size(1)},
                              attn.options().dtype(acc));
  rpe_attention_hist_impl(attn.contiguous(), rel_idx.contiguous(), hist);
  at::Tensor out = at::matmul(hist, table_per_head(table, acc)).to(attn.scalar_type());
  return {out, hist};
}

// Returns {grad_attn [B, H, Nq, Ns], grad_table [3, L, H, D]}.
std::vector<at::Tensor> rpe_attention_value_backward(const at::Tensor& grad_out,
                                                     const at::Tensor& rel_idx,
                                                     const at::Tensor& table,
                                                     const at::Tensor& hist) {
  TORCH_CHECK(grad_out.dim() == 4 && table.dim() == 4 && hist.dim() == 4 &&
                  hist.size(3) == 3 * table.size(1) && grad_out.size(3) == table.size(3),
              "rpe_attention_value: backward got inconsistent shapes");
  check_rel_idx(rel_idx, grad_out.size(0), grad_out.size(2));
  const at::ScalarType acc = hist.scalar_type();
  const at::Tensor grad_acc = grad_out.to(acc);
  const at::Tensor bin_grad =
      at::matmul(grad_acc, table_per_head(table, acc).transpose(1, 2)).contiguous();
  at::Tensor grad_attn = at::empty(
      {grad_out.size(0), grad_out.size(1), grad_out.size(2), rel_idx.size(2)}, grad_out.options());
  rpe_attention_gather_impl(bin_grad, rel_idx.contiguous(), grad_attn);
  // sum over b of hist[b]^T grad_out[b] per head: [H, 3L, D] -> [3, L, H, D]
  at::Tensor grad_table = at::matmul(hist.transpose(2, 3), grad_acc)
                              .sum(0)
                              .view({table.size(2), 3, table.size(1), table.size(3)})
                              .permute({1, 2, 0, 3})
                              .to(table.scalar_type())
                              .contiguous();
  return {grad_attn, grad_table};
}
