// CPU `rpe_attention_value` kernels: one task per query row (b, i), which turns
// its rel_idx row into bin offsets once and owns the H histogram / output /
// gradient rows (b, :, i), so neither kernel has write conflicts; each head is
// then one contiguous pass over its row.
#include <ATen/Parallel.h>

#include <atomic>
#include <vector>

#include "device_registry.h"

namespace {

// Layout of [B, H, Nq, *] tensors by query row (b, i): its H rows (b, :, i).
struct QueryRows {
  int64_t heads, queries, keys, num_bins;
  int64_t head_row(int64_t query_row, int64_t h) const {  // (b, h, i) from (b, i)
    return ((query_row / queries) * heads + h) * queries + query_row % queries;
  }
};

// Calls fn(row, offsets) for every query row in parallel, where offsets [Ns, 3]
// are the flat bins a * L + rel_idx[b, i, j, a]. A row with a bin outside
// [0, L) is skipped; returns false if any was.
template <typename index_t, typename RowFn>
bool for_each_query_row(const index_t* rel_idx, int64_t rows, const QueryRows& q,
                        const RowFn& fn) {
  std::atomic<bool> valid{true};
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> offsets(3 * q.keys);
    for (int64_t row = begin; row < end; ++row) {
      const index_t* rel_row = rel_idx + row * q.keys * 3;
      bool row_valid = true;
      for (int64_t k = 0; k < 3 * q.keys; ++k) {
        const int64_t bin = rel_row[k];
        row_valid = row_valid && bin >= 0 && bin < q.num_bins;
        offsets[k] = (k % 3) * q.num_bins + bin;
      }
      if (row_valid) {
        fn(row, offsets.data());
      } else {
        valid = false;
      }
    }
  });
  return valid;
}

// [B, H, Nq, Ns] attention-like tensor and [B, H, Nq, 3L] histogram-like one.
QueryRows query_rows(const at::Tensor& attn_like, const at::Tensor& hist_like) {
  return QueryRows{attn_like.size(1), attn_like.size(2), attn_like.size(3),
                   hist_like.size(3) / 3};
}

void rpe_attention_histogram_cpu(const at::Tensor& attn, const at::Tensor& rel_idx,
                                 int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                 at::Tensor& out, int* flag) {
  const QueryRows q{attn.size(1), attn.size(2), attn.size(3), num_bins};
  const int64_t row_bins = 3 * num_bins, dim = out.defined() ? table.size(3) : 0;
  if (hist.defined()) hist.zero_();  // rows with a bin outside [0, L) are skipped
  if (out.defined()) out.zero_();
  bool valid = true;
  AT_DISPATCH_FLOATING_TYPES(attn.scalar_type(), "rpe_attention_histogram_cpu", [&] {
    const scalar_t* a = attn.data_ptr<scalar_t>();
    scalar_t* hist_data = hist.defined() ? hist.data_ptr<scalar_t>() : nullptr;
    const scalar_t* t = out.defined() ? table.data_ptr<scalar_t>() : nullptr;
    scalar_t* out_data = out.defined() ? out.data_ptr<scalar_t>() : nullptr;
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_histogram_cpu", [&] {
      valid = for_each_query_row(rel_idx.data_ptr<index_t>(), attn.size(0) * q.queries, q,
                                 [&](int64_t row, const int64_t* offsets) {
        std::vector<scalar_t> scratch(hist_data == nullptr ? row_bins : 0);
        for (int64_t h = 0; h < q.heads; ++h) {
          const int64_t head_row = q.head_row(row, h);
          const scalar_t* a_row = a + head_row * q.keys;
          scalar_t* h_row = hist_data != nullptr ? hist_data + head_row * row_bins : scratch.data();
          if (hist_data == nullptr) std::fill(h_row, h_row + row_bins, scalar_t(0));  // (hist is zeroed)
          for (int64_t j = 0; j < q.keys; ++j) {
            const int64_t* o = offsets + 3 * j;
            h_row[o[0]] += a_row[j];
            h_row[o[1]] += a_row[j];
            h_row[o[2]] += a_row[j];
          }
          if (out_data == nullptr) continue;
          // out[h] = hist[h] @ table[:, :, h, :], table [3, L, H, D] read as [3L, H, D]
          scalar_t* o_row = out_data + head_row * dim;
          for (int64_t k = 0; k < row_bins; ++k) {
            const scalar_t count = h_row[k];
            if (count == scalar_t(0)) continue;
            const scalar_t* t_row = t + (k * q.heads + h) * dim;
            for (int64_t d = 0; d < dim; ++d) o_row[d] += count * t_row[d];
          }
        }
      });
    });
  });
  if (!valid && flag != nullptr) *flag = 1;
}

void rpe_attention_gather_cpu(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                              at::Tensor& grad_attn, int* flag) {
  const QueryRows q = query_rows(grad_attn, bin_grad);
  AT_DISPATCH_FLOATING_TYPES(grad_attn.scalar_type(), "rpe_attention_gather_cpu", [&] {
    const scalar_t* g = bin_grad.data_ptr<scalar_t>();
    scalar_t* grad = grad_attn.data_ptr<scalar_t>();
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_gather_cpu", [&] {
      const bool valid = for_each_query_row(rel_idx.data_ptr<index_t>(), grad_attn.size(0) * q.queries, q,
                                            [&](int64_t row, const int64_t* offsets) {
        for (int64_t h = 0; h < q.heads; ++h) {
          const int64_t head_row = q.head_row(row, h);
          const scalar_t* g_row = g + head_row * 3 * q.num_bins;
          scalar_t* out_row = grad + head_row * q.keys;
          for (int64_t j = 0; j < q.keys; ++j) {
            const int64_t* o = offsets + 3 * j;
            out_row[j] = g_row[o[0]] + g_row[o[1]] + g_row[o[2]];
          }
        }
      });
      if (!valid && flag != nullptr) *flag = 1;
    });
  });
}

// The value op's gradients: ATen's matmuls around the gather (their dtype is attn's).
// table [3, L, H, D] as per-head matrices [H, 3L, D]: a strided view, no copy.
at::Tensor table_per_head(const at::Tensor& table) {
  return table.view({-1, table.size(2), table.size(3)}).permute({1, 0, 2});
}

void rpe_attention_value_grad_attn_cpu(const at::Tensor& grad_out, const at::Tensor& table,
                                       const at::Tensor& rel_idx, at::Tensor& grad_attn) {
  const at::Tensor bin_grad = at::matmul(grad_out, table_per_head(table).transpose(1, 2)).contiguous();
  rpe_attention_gather_cpu(bin_grad, rel_idx, grad_attn, nullptr);
}

// Per scene and head hist^T grad_out [B, H, 3L, D] (one batched matmul), summed over the
// scenes straight into the table's layout.
void rpe_attention_value_grad_table_cpu(const at::Tensor& hist, const at::Tensor& grad_out,
                                        at::Tensor& grad_table) {
  at::Tensor per_head = table_per_head(grad_table);
  at::sum_out(per_head, at::matmul(hist.transpose(2, 3), grad_out), {0});
}

}  // namespace

void rpe_attention_histogram_impl(const at::Tensor& attn, const at::Tensor& rel_idx,
                                  int64_t num_bins, at::Tensor& hist, const at::Tensor& table,
                                  at::Tensor& out, int* flag);
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn, int* flag);
REGISTER_DEVICE_IMPL(rpe_attention_histogram_impl, CPU, rpe_attention_histogram_cpu);
void rpe_attention_value_grad_attn_impl(const at::Tensor& grad_out, const at::Tensor& table,
                                        const at::Tensor& rel_idx, at::Tensor& grad_attn);
void rpe_attention_value_grad_table_impl(const at::Tensor& hist, const at::Tensor& grad_out,
                                         at::Tensor& grad_table);
REGISTER_DEVICE_IMPL(rpe_attention_gather_impl, CPU, rpe_attention_gather_cpu);
REGISTER_DEVICE_IMPL(rpe_attention_value_grad_attn_impl, CPU, rpe_attention_value_grad_attn_cpu);
REGISTER_DEVICE_IMPL(rpe_attention_value_grad_table_impl, CPU, rpe_attention_value_grad_table_cpu);
