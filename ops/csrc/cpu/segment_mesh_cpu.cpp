// CPU `segment_mesh`: the algorithm of ScanNet's Segmentator/segmentator.cpp with the
// same float32 arithmetic in the same order, so partitions match the official tool's.
// Differences, only where the tool's result is undefined (see ikne_plugin/ops/segment_mesh.py):
// edges are sorted stably, and faces without a finite unit normal are left out of the
// vertex normals instead of turning them into NaN.

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "device_registry.h"

// Bit-exact agreement needs every float operation rounded on its own: no fused
// multiply-add contraction (GCC contracts by default where the target has FMA; built with
// -march=native and no guard, scene0470_00 gave 370 segments instead of the tool's 371).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace {

struct Vec3 {
  float x = 0.f, y = 0.f, z = 0.f;
};

struct Edge {
  float w;
  int32_t a, b;
};

// Disjoint sets with union by rank as in the tool (its roots become the segment ids);
// path halving changes no root.
class DisjointSets {
 public:
  explicit DisjointSets(int64_t n) : parent_(n), rank_(n, 0), size_(n, 1) {
    std::iota(parent_.begin(), parent_.end(), 0);
  }
  int32_t find(int32_t x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];
      x = parent_[x];
    }
    return x;
  }
  // Joins roots x and y; on equal ranks y becomes the root. Returns the new root.
  int32_t join(int32_t x, int32_t y) {
    if (rank_[x] > rank_[y]) std::swap(x, y);
    else if (rank_[x] == rank_[y]) ++rank_[y];
    parent_[x] = y;
    size_[y] += size_[x];
    return y;
  }
  int32_t size(int32_t x) const { return size_[x]; }

 private:
  std::vector<int32_t> parent_, rank_, size_;
};

// Running average of the unit face normals at each vertex, faces in file order.
std::vector<Vec3> vertex_normals(const float* p, const int64_t* f, int64_t num_vertices,
                                 int64_t num_faces) {
  std::vector<Vec3> normals(num_vertices);
  std::vector<int32_t> counts(num_vertices, 0);
  for (int64_t i = 0; i < num_faces; ++i) {
    const int64_t* v = f + 3 * i;
    const float* p1 = p + 3 * v[0];
    const float* p2 = p + 3 * v[1];
    const float* p3 = p + 3 * v[2];
    const float ux = p2[0] - p1[0], uy = p2[1] - p1[1], uz = p2[2] - p1[2];
    const float vx = p3[0] - p1[0], vy = p3[1] - p1[1], vz = p3[2] - p1[2];
    float cx = uy * vz - uz * vy, cy = uz * vx - ux * vz, cz = ux * vy - uy * vx;
    const float length = std::sqrt(cx * cx + cy * cy + cz * cz);
    cx /= length;
    cy /= length;
    cz /= length;
    if (!(std::isfinite(cx) && std::isfinite(cy) && std::isfinite(cz))) continue;  // degenerate
    for (int k = 0; k < 3; ++k) {
      Vec3& n = normals[v[k]];
      const float t = 1.0f / (static_cast<float>(counts[v[k]]) + 1.0f);
      const float s = 1.0f - t;
      n = Vec3{t * cx + s * n.x, t * cy + s * n.y, t * cz + s * n.z};
      ++counts[v[k]];
    }
  }
  return normals;
}

// Three edges per face, (i1, i2), (i1, i3), (i3, i2): weight 1 - dot of the end normals,
// squared where convex (the far normal points away from the near vertex).
std::vector<Edge> weighted_edges(const float* p, const int64_t* f, int64_t num_faces,
                                 const std::vector<Vec3>& normals) {
  std::vector<Edge> edges(3 * num_faces);
  at::parallel_for(0, num_faces, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t* v = f + 3 * i;
      const int64_t ends[3][2] = {{v[0], v[1]}, {v[0], v[2]}, {v[2], v[1]}};
      for (int k = 0; k < 3; ++k) {
        const int64_t a = ends[k][0], b = ends[k][1];
        const Vec3& n1 = normals[a];
        const Vec3& n2 = normals[b];
        float dx = p[3 * b] - p[3 * a], dy = p[3 * b + 1] - p[3 * a + 1],
              dz = p[3 * b + 2] - p[3 * a + 2];
        const float length = std::sqrt(dx * dx + dy * dy + dz * dz);
        dx /= length;  // a zero-length edge gives NaN: never convex, as in the tool
        dy /= length;
        dz /= length;
        const float dot = n1.x * n2.x + n1.y * n2.y + n1.z * n2.z;
        const float convexity = n2.x * dx + n2.y * dy + n2.z * dz;
        float w = 1.0f - dot;
        if (convexity > 0) w = w * w;
        edges[3 * i + k] = Edge{w, static_cast<int32_t>(a), static_cast<int32_t>(b)};
      }
    }
  });
  return edges;
}

at::Tensor segment_mesh_cpu(const at::Tensor& vertices, const at::Tensor& faces,
                            double k_thresh, int64_t seg_min_verts) {
  const int64_t num_vertices = vertices.size(0);
  const int64_t num_faces = faces.size(0);
  const float* p = vertices.data_ptr<float>();
  const int64_t* f = faces.data_ptr<int64_t>();
  for (int64_t i = 0; i < 3 * num_faces; ++i) {  // checked by the wrapper; guards a direct call
    TORCH_CHECK(f[i] >= 0 && f[i] < num_vertices, "segment_mesh: internal: face index out of range");
  }

  const std::vector<Vec3> normals = vertex_normals(p, f, num_vertices, num_faces);
  std::vector<Edge> edges = weighted_edges(p, f, num_faces, normals);
  std::stable_sort(edges.begin(), edges.end(),
                   [](const Edge& x, const Edge& y) { return x.w < y.w; });

  // Felzenszwalb-Huttenlocher: join when the edge is no heavier than either
  // component's threshold, which then becomes w + c / size (float32, as the tool).
  const float c = static_cast<float>(k_thresh);
  DisjointSets sets(num_vertices);
  std::vector<float> threshold(num_vertices, c);
  for (const Edge& e : edges) {
    const int32_t a = sets.find(e.a), b = sets.find(e.b);
    if (a != b && e.w <= threshold[a] && e.w <= threshold[b]) {
      const int32_t root = sets.join(a, b);
      threshold[root] = e.w + c / static_cast<float>(sets.size(root));
    }
  }
  // Merge segments smaller than seg_min_verts into a neighbour, same edge order.
  for (const Edge& e : edges) {
    const int32_t a = sets.find(e.a), b = sets.find(e.b);
    if (a != b && (sets.size(a) < seg_min_verts || sets.size(b) < seg_min_verts)) {
      sets.join(a, b);
    }
  }

  at::Tensor segment_ids = at::empty({num_vertices}, vertices.options().dtype(at::kLong));
  int64_t* ids = segment_ids.data_ptr<int64_t>();
  for (int64_t v = 0; v < num_vertices; ++v) ids[v] = sets.find(static_cast<int32_t>(v));
  return segment_ids;
}

}  // namespace

at::Tensor segment_mesh_impl(const at::Tensor& vertices, const at::Tensor& faces,
                             double k_thresh, int64_t seg_min_verts);
REGISTER_DEVICE_IMPL(segment_mesh_impl, CPU, segment_mesh_cpu);
