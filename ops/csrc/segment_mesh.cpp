// Dispatcher of `segment_mesh`: ScanNet's mesh segmentator (Felzenszwalb-Huttenlocher
// graph segmentation on vertex normals), giving the superpoint id of each vertex.
#include "device_registry.h"

// Returns the segment id [V] int64 of each vertex: its component's root vertex index.
at::Tensor segment_mesh_impl(const at::Tensor& vertices, const at::Tensor& faces,
                             double k_thresh, int64_t seg_min_verts) {
  return DISPATCH_DEVICE_IMPL(segment_mesh_impl, vertices, faces, k_thresh, seg_min_verts);
}

// The Python wrapper validates every argument (dtypes, shapes, the CPU device,
// face indices, finite vertices) with messages that say what was expected; the
// checks here only guard a direct call, with fixed messages (a message that
// formats numbers crashed the GPU machine's build of the extension).
at::Tensor segment_mesh(const at::Tensor& vertices, const at::Tensor& faces, double k_thresh,
                        int64_t seg_min_verts) {
  TORCH_CHECK(vertices.dim() == 2 && vertices.size(1) == 3 && vertices.scalar_type() == at::kFloat &&
                  faces.dim() == 2 && faces.size(1) == 3 && faces.scalar_type() == at::kLong &&
                  vertices.size(0) < (int64_t{1} << 31) && k_thresh > 0 && seg_min_verts >= 0,
              "segment_mesh: internal: call ikne_plugin.ops.segment_mesh, which checks arguments");
  return segment_mesh_impl(vertices.contiguous(), faces.contiguous(), k_thresh, seg_min_verts);
}
