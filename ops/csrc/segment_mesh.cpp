// Dispatcher of `segment_mesh`: ScanNet's mesh segmentator (Felzenszwalb-Huttenlocher
// graph segmentation on vertex normals), giving the superpoint id of each vertex.
#include "device_registry.h"

// Returns the segment id [V] int64 of each vertex: its component's root vertex index.
at::Tensor segment_mesh_impl(const at::Tensor& vertices, const at::Tensor& faces,
                             double k_thresh, int64_t seg_min_verts) {
  return DISPATCH_DEVICE_IMPL(segment_mesh_impl, vertices, faces, k_thresh, seg_min_verts);
}

at::Tensor segment_mesh(const at::Tensor& vertices, const at::Tensor& faces, double k_thresh,
                        int64_t seg_min_verts) {
  TORCH_CHECK(vertices.dim() == 2 && vertices.size(1) == 3,
              "segment_mesh: vertices must have shape [V, 3], got ", vertices.sizes());
  TORCH_CHECK(vertices.scalar_type() == at::kFloat,
              "segment_mesh: vertices must be float32, got ", vertices.scalar_type());
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3,
              "segment_mesh: faces must have shape [F, 3], got ", faces.sizes());
  TORCH_CHECK(faces.scalar_type() == at::kLong,
              "segment_mesh: faces must be int64, got ", faces.scalar_type());
  TORCH_CHECK(vertices.size(0) < (int64_t{1} << 31),
              "segment_mesh: at most 2^31 - 1 vertices, got ", vertices.size(0));
  TORCH_CHECK(k_thresh > 0, "segment_mesh: k_thresh must be > 0, got ", k_thresh);
  TORCH_CHECK(seg_min_verts >= 0, "segment_mesh: seg_min_verts must be >= 0, got ",
              seg_min_verts);
  return segment_mesh_impl(vertices.contiguous(), faces.contiguous(), k_thresh, seg_min_verts);
}
