// CPU primitives of `rpe_attention_value`: one task per query row (b, i),
// which turns its rel_idx row into bin offsets once and owns the H histogram /
// gradient rows (b, :, i), so neither direction has write conflicts; each head
// is then one contiguous pass over its attention row.
#include <ATen/Parallel.h>

#include <atomic>
#include <vector>

#include "device_registry.h"

namespace {

// Layout of one query row (b, i): its H attention rows attn[b, :, i, :] and its
// rel_idx row rel_idx[b, i] (read once for all heads).
struct QueryRows {
  int64_t heads, queries, keys, num_bins;
  int64_t head_row(int64_t query_row, int64_t h) const {  // (b, h, i) from (b, i)
    return ((query_row / queries) * heads + h) * queries + query_row % queries;
  }
};

// Flat bin offsets a * L + rel_idx[j, a] of one rel_idx row, [Ns, 3]; false if
// a bin lies outside [0, L).
template <typename index_t>
bool row_bin_offsets(const index_t* rel_row, const QueryRows& q, std::vector<int64_t>& offsets) {
  offsets.resize(3 * q.keys);
  bool valid = true;
  for (int64_t j = 0; j < q.keys; ++j) {
    for (int64_t axis = 0; axis < 3; ++axis) {
      const int64_t bin = rel_row[3 * j + axis];
      valid = valid && bin >= 0 && bin < q.num_bins;
      offsets[3 * j + axis] = axis * q.num_bins + bin;
    }
  }
  return valid;
}

template <typename scalar_t, typename index_t>
void hist_kernel(const scalar_t* attn, const index_t* rel_idx, scalar_t* hist, int64_t rows,
                 QueryRows q) {
  std::atomic<bool> out_of_range{false};
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> offsets;
    for (int64_t row = begin; row < end; ++row) {
      if (!row_bin_offsets(rel_idx + row * q.keys * 3, q, offsets)) {
        out_of_range = true;
        return;
      }
      for (int64_t h = 0; h < q.heads; ++h) {  // contiguous passes over each head's row
        const int64_t head_row = q.head_row(row, h);
        const scalar_t* a_row = attn + head_row * q.keys;
        scalar_t* h_row = hist + head_row * 3 * q.num_bins;
        for (int64_t j = 0; j < q.keys; ++j) {
          const int64_t* o = offsets.data() + 3 * j;
          h_row[o[0]] += a_row[j];
          h_row[o[1]] += a_row[j];
          h_row[o[2]] += a_row[j];
        }
      }
    }
  });
  TORCH_CHECK_VALUE(!out_of_range, "rpe_attention_value: rel_idx must lie in [0, ", q.num_bins, ")");
}

template <typename scalar_t, typename index_t>
void gather_kernel(const scalar_t* bin_grad, const index_t* rel_idx, scalar_t* grad_attn,
                   int64_t rows, QueryRows q) {
  std::atomic<bool> out_of_range{false};
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> offsets;
    for (int64_t row = begin; row < end; ++row) {
      if (!row_bin_offsets(rel_idx + row * q.keys * 3, q, offsets)) {
        out_of_range = true;
        return;
      }
      for (int64_t h = 0; h < q.heads; ++h) {
        const int64_t head_row = q.head_row(row, h);
        const scalar_t* g_row = bin_grad + head_row * 3 * q.num_bins;
        scalar_t* out_row = grad_attn + head_row * q.keys;
        for (int64_t j = 0; j < q.keys; ++j) {
          const int64_t* o = offsets.data() + 3 * j;
          out_row[j] = g_row[o[0]] + g_row[o[1]] + g_row[o[2]];
        }
      }
    }
  });
  TORCH_CHECK_VALUE(!out_of_range, "rpe_attention_value: rel_idx must lie in [0, ", q.num_bins, ")");
}

void rpe_attention_hist_cpu(const at::Tensor& attn, const at::Tensor& rel_idx, at::Tensor& hist) {
  const QueryRows q{attn.size(1), attn.size(2), attn.size(3), hist.size(3) / 3};
  const int64_t rows = attn.size(0) * attn.size(2);
  AT_DISPATCH_FLOATING_TYPES(attn.scalar_type(), "rpe_attention_hist_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_hist_cpu", [&] {
      hist_kernel(attn.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(),
                  hist.data_ptr<scalar_t>(), rows, q);
    });
  });
}

void rpe_attention_gather_cpu(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                              at::Tensor& grad_attn) {
  const QueryRows q{grad_attn.size(1), grad_attn.size(2), grad_attn.size(3), bin_grad.size(3) / 3};
  const int64_t rows = grad_attn.size(0) * grad_attn.size(2);
  AT_DISPATCH_FLOATING_TYPES(grad_attn.scalar_type(), "rpe_attention_gather_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(rel_idx.scalar_type(), "rpe_attention_gather_cpu", [&] {
      gather_kernel(bin_grad.data_ptr<scalar_t>(), rel_idx.data_ptr<index_t>(),
                    grad_attn.data_ptr<scalar_t>(), rows, q);
    });
  });
}

}  // namespace

void rpe_attention_hist_impl(const at::Tensor& attn, const at::Tensor& rel_idx, at::Tensor& hist);
void rpe_attention_gather_impl(const at::Tensor& bin_grad, const at::Tensor& rel_idx,
                               at::Tensor& grad_attn);
REGISTER_DEVICE_IMPL(rpe_attention_hist_impl, CPU, rpe_attention_hist_cpu);
REGISTER_DEVICE_IMPL(rpe_attention_gather_impl, CPU, rpe_attention_gather_cpu);
