// Python bindings of ikne_plugin._ext: one entry point per op direction. Each
// is defined in ops/csrc/<op>.cpp and dispatches to the CPU or CUDA kernel.
#include <torch/extension.h>

std::vector<at::Tensor> voxelize(const at::Tensor& coords);

std::vector<at::Tensor> voxel_pool_forward(const at::Tensor& feats, const at::Tensor& p2v,
                                           int64_t num_voxels, bool use_max, at::Tensor flag);
at::Tensor voxel_pool_backward(const at::Tensor& grad_out, const at::Tensor& p2v,
                               const at::Tensor& aux, bool use_max);
at::Tensor voxel_pool_autograd(const at::Tensor& feats, const at::Tensor& p2v,
                               int64_t num_voxels, bool use_max, const at::Tensor& flag);

std::vector<at::Tensor> rpe_attention_value_forward(const at::Tensor& attn,
                                                    const at::Tensor& rel_idx,
                                                    const at::Tensor& table, bool save_hist,
                                                    at::Tensor flag);
std::vector<at::Tensor> rpe_attention_value_backward(const at::Tensor& grad_out,
                                                     const at::Tensor& rel_idx,
                                                     const at::Tensor& table,
                                                     const std::optional<at::Tensor>& hist,
                                                     bool attn_grad);
at::Tensor rpe_attention_value_autograd(const at::Tensor& attn, const at::Tensor& rel_idx,
                                        const at::Tensor& table, bool save_hist,
                                        const at::Tensor& flag);

at::Tensor rpe_attention_bias_forward(const at::Tensor& bins, const at::Tensor& rel_idx,
                                      at::Tensor flag);
at::Tensor rpe_attention_bias_backward(const at::Tensor& grad_out, const at::Tensor& rel_idx,
                                       int64_t num_bins);
at::Tensor rpe_attention_bias_autograd(const at::Tensor& bins, const at::Tensor& rel_idx,
                                       const at::Tensor& flag);

// ---- segment_mesh: declaration (added by the segment_mesh owner) ----
at::Tensor segment_mesh(const at::Tensor& vertices, const at::Tensor& faces, double k_thresh,
                        int64_t seg_min_verts);
// ---- end segment_mesh declaration ----

// ---- furthest_point_sample, ball_query: declarations (kernel head) ----
at::Tensor furthest_point_sample(const at::Tensor& xyz, int64_t num);
at::Tensor ball_query(const at::Tensor& center, const at::Tensor& xyz, double radius,
                      int64_t num_neighbors);
// ---- end furthest_point_sample, ball_query declarations ----

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("voxelize", &voxelize, "unique voxels of (batch, x, y, z) coords", py::arg("coords"));
  m.def("voxel_pool_forward", &voxel_pool_forward, "mean/max pooling of point features",
        py::arg("feats"), py::arg("p2v"), py::arg("num_voxels"), py::arg("use_max"),
        py::arg("flag"));
  m.def("voxel_pool_backward", &voxel_pool_backward, "gradient of voxel_pool_forward",
        py::arg("grad_out"), py::arg("p2v"), py::arg("aux"), py::arg("use_max"));
  m.def("voxel_pool_autograd", &voxel_pool_autograd,
        "voxel_pool_forward's output, differentiable through a C++ autograd node",
        py::arg("feats"), py::arg("p2v"), py::arg("num_voxels"), py::arg("use_max"),
        py::arg("flag"));
  m.def("rpe_attention_value_forward", &rpe_attention_value_forward,
        "value term of contextual relative position encoding", py::arg("attn"),
        py::arg("rel_idx"), py::arg("table"), py::arg("save_hist"), py::arg("flag"));
  m.def("rpe_attention_value_backward", &rpe_attention_value_backward,
        "gradient of rpe_attention_value_forward", py::arg("grad_out"), py::arg("rel_idx"),
        py::arg("table"), py::arg("hist"), py::arg("attn_grad"));
  m.def("rpe_attention_value_autograd", &rpe_attention_value_autograd,
        "rpe_attention_value_forward's output, differentiable through a C++ autograd node",
        py::arg("attn"), py::arg("rel_idx"), py::arg("table"), py::arg("save_hist"),
        py::arg("flag"));
  m.def("rpe_attention_bias_forward", &rpe_attention_bias_forward,
        "logit bias of contextual relative position encoding", py::arg("bins"),
        py::arg("rel_idx"), py::arg("flag"));
  m.def("rpe_attention_bias_backward", &rpe_attention_bias_backward,
        "gradient of rpe_attention_bias_forward", py::arg("grad_out"), py::arg("rel_idx"),
        py::arg("num_bins"));
  m.def("rpe_attention_bias_autograd", &rpe_attention_bias_autograd,
        "rpe_attention_bias_forward's output, differentiable through a C++ autograd node",
        py::arg("bins"), py::arg("rel_idx"), py::arg("flag"));
  // ---- segment_mesh: m.def (added by the segment_mesh owner) ----
  m.def("segment_mesh", &segment_mesh, "ScanNet mesh segmentator: superpoint id per vertex",
        py::arg("vertices"), py::arg("faces"), py::arg("k_thresh"), py::arg("seg_min_verts"));
  // ---- end segment_mesh m.def ----
  // ---- furthest_point_sample, ball_query: m.def (kernel head) ----
  m.def("furthest_point_sample", &furthest_point_sample,
        "indices of num farthest point samples per batch", py::arg("xyz"), py::arg("num"));
  m.def("ball_query", &ball_query, "first num_neighbors points within radius of each centre",
        py::arg("center"), py::arg("xyz"), py::arg("radius"), py::arg("num_neighbors"));
  // ---- end furthest_point_sample, ball_query m.def ----
}
