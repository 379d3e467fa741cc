"""ScanNet's mesh segmentator: superpoints of a triangle mesh from its vertex normals.

A re-implementation of the algorithm of ScanNet's ``Segmentator/segmentator.cpp``
(Felzenszwalb-Huttenlocher graph segmentation on the mesh's edges), which produced
the official ``*.segs.json`` superpoints; the ScanNet test split no longer ships them.
All arithmetic is float32 in the tool's operation order, so partitions agree exactly:

1. Vertex normals: each face's unit normal, in file order, is blended into its three
   vertices as a running average (``n_v = lerp(n_v, n_face, 1 / (count_v + 1))``).
2. Three edges per face, ``(i1, i2), (i1, i3), (i3, i2)``, duplicates kept, weighted
   ``w = 1 - dot(n_a, n_b)``, squared where convex (``dot(n_b, unit(p_b - p_a)) > 0``).
3. Edges sorted by weight; components ``a, b`` join when ``w <= thr[a]`` and
   ``w <= thr[b]``, then ``thr[root] = w + k_thresh / size(root)``.
4. Over the same order, any two components join if either has < ``seg_min_verts`` vertices.
5. A vertex's segment id is the root vertex index of its component (union by rank as in
   the tool), so ids are sparse and ``segs.json`` files look like ScanNet's.

Two deliberate differences, both where the tool's output is undefined:

- Ties: the tool sorts with the unstable ``std::sort``; we sort stably (equal weights keep
  edge order: face order, then the three edges of a face in the order above).
- Degenerate faces (zero area): the tool divides by a zero normal length, so their
  vertices get NaN normals, every edge there gets a NaN weight and ``std::sort`` with NaN
  keys has no defined order. We skip a face whose unit normal is not finite when blending
  normals (it counts for nothing in the running average); its edges remain. A vertex with
  no valid face keeps a zero normal (its edges weigh 1). Meshes without degenerate faces,
  like ScanNet's, are unaffected.
"""
import numpy as np
import torch

from ._checks import INDEX_DTYPES, check_index_range, check_tensor
from .ext_loader import load_ext

# ScanNet Segmentator defaults (segmentator.cpp, main()).
DEFAULT_K_THRESH = 0.01
DEFAULT_SEG_MIN_VERTS = 20
VERTEX_DTYPES = (torch.float32, torch.float64)


def segment_mesh(vertices, faces, k_thresh=DEFAULT_K_THRESH,
                 seg_min_verts=DEFAULT_SEG_MIN_VERTS):
    """Segment a triangle mesh into superpoints like ScanNet's segmentator.

    Args:
        vertices: float32/float64 CPU tensor [V, 3] (cast to float32, as the tool reads it).
        faces: int32/int64 CPU tensor [F, 3] of vertex indices in [0, V).
        k_thresh: merge threshold constant (> 0); larger gives larger segments.
        seg_min_verts: segments with fewer vertices are merged into a neighbour (>= 0).

    Returns:
        int64 tensor [V]: the segment id of each vertex (its root vertex index).
    """
    vertices, faces = _check_mesh(vertices, faces, k_thresh, seg_min_verts)
    ext = load_ext()
    if ext is None:
        return _segment_mesh_reference(vertices, faces, k_thresh, seg_min_verts)
    return ext.segment_mesh(vertices, faces, float(k_thresh), int(seg_min_verts))


def segment_mesh_reference(vertices, faces, k_thresh=DEFAULT_K_THRESH,
                           seg_min_verts=DEFAULT_SEG_MIN_VERTS):
    """Pure numpy/Python :func:`segment_mesh` (the test oracle and the fallback)."""
    vertices, faces = _check_mesh(vertices, faces, k_thresh, seg_min_verts)
    return _segment_mesh_reference(vertices, faces, k_thresh, seg_min_verts)


def _check_mesh(vertices, faces, k_thresh, seg_min_verts):
    """Validate the arguments; return contiguous float32 [V, 3] and int64 [F, 3] tensors."""
    check_tensor('vertices', vertices, VERTEX_DTYPES, 2, '[V, 3] of x, y, z')
    check_tensor('faces', faces, INDEX_DTYPES, 2, '[F, 3] of vertex indices (triangles)')
    if vertices.shape[1] != 3:
        raise ValueError(f'vertices must be [V, 3] of x, y, z, got shape {tuple(vertices.shape)}')
    if faces.shape[1] != 3:
        raise ValueError(f'faces must be [F, 3] of vertex indices (triangles), got shape {tuple(faces.shape)}')
    for name, tensor in (('vertices', vertices), ('faces', faces)):
        if tensor.device.type != 'cpu':
            raise ValueError(f'segment_mesh runs on the CPU: {name} must be a CPU tensor, got {tensor.device}')
    if not k_thresh > 0:
        raise ValueError(f'k_thresh must be > 0, got {k_thresh}')
    if isinstance(seg_min_verts, bool) or int(seg_min_verts) != seg_min_verts or seg_min_verts < 0:
        raise ValueError(f'seg_min_verts must be an integer >= 0, got {seg_min_verts}')
    num_vertices = vertices.shape[0]
    if num_vertices >= 2 ** 31:
        raise ValueError(f'segment_mesh supports at most 2**31 - 1 vertices, got {num_vertices}')
    vertices = vertices.to(torch.float32).contiguous()
    if not bool(torch.isfinite(vertices).all()):
        raise ValueError('vertices must be finite (after the cast to float32)')
    check_index_range('faces', faces, 0, num_vertices)
    return vertices, faces.to(torch.int64).contiguous()


def _segment_mesh_reference(vertices, faces, k_thresh, seg_min_verts):
    """The reference on checked float32 [V, 3] / int64 [F, 3] tensors."""
    points = vertices.numpy()
    faces = faces.numpy()
    normals = _vertex_normals(points, faces)
    edge_a = faces[:, [0, 0, 2]].reshape(-1)  # three edges per face: (i1,i2), (i1,i3), (i3,i2)
    edge_b = faces[:, [1, 2, 1]].reshape(-1)
    weights = _edge_weights(points, normals, edge_a, edge_b)
    order = np.argsort(weights, kind='stable')
    roots = _felzenszwalb(points.shape[0], edge_a[order].tolist(), edge_b[order].tolist(),
                          weights[order].tolist(), np.float32(k_thresh), int(seg_min_verts))
    return torch.from_numpy(roots)


def _vertex_normals(points, faces):
    """Running average of the unit face normals at each vertex, faces in file order."""
    p1, p2, p3 = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    u, v = p2 - p1, p3 - p1
    cross = np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1],
                      u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                      u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=1)
    with np.errstate(divide='ignore', invalid='ignore'):
        length = np.sqrt(cross[:, 0] * cross[:, 0] + cross[:, 1] * cross[:, 1] + cross[:, 2] * cross[:, 2])
        face_normals = cross / length[:, None]
    valid = np.isfinite(face_normals).all(axis=1)  # degenerate faces are skipped, see module doc
    # Blend in rounds: round k applies every vertex's k-th face (each vertex at most once).
    corner_vertex = faces[valid].reshape(-1)  # face-major: file order within each vertex
    corner_normal = np.repeat(face_normals[valid], 3, axis=0)
    by_vertex = np.argsort(corner_vertex, kind='stable')
    counts = np.bincount(corner_vertex, minlength=points.shape[0])
    starts = np.cumsum(counts) - counts
    sorted_vertex = corner_vertex[by_vertex]
    rank = np.arange(sorted_vertex.size) - starts[sorted_vertex]
    by_rank = by_vertex[np.argsort(rank, kind='stable')]
    rank_sizes = np.bincount(rank) if rank.size else np.zeros(0, np.int64)
    normals = np.zeros_like(points)
    begin = 0
    for k, size in enumerate(rank_sizes.tolist()):
        pick = by_rank[begin:begin + size]
        begin += size
        ids = corner_vertex[pick]
        t = np.float32(1.0) / (np.float32(k) + np.float32(1.0))
        normals[ids] = t * corner_normal[pick] + (np.float32(1.0) - t) * normals[ids]
    return normals


def _edge_weights(points, normals, edge_a, edge_b):
    """1 - dot of the end normals, squared where the edge is convex (float32)."""
    n1, n2 = normals[edge_a], normals[edge_b]
    d = points[edge_b] - points[edge_a]
    with np.errstate(divide='ignore', invalid='ignore'):
        length = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2])
        d = d / length[:, None]  # zero-length edge: NaN, so never convex, as in the tool
        dot = n1[:, 0] * n2[:, 0] + n1[:, 1] * n2[:, 1] + n1[:, 2] * n2[:, 2]
        convex = n2[:, 0] * d[:, 0] + n2[:, 1] * d[:, 1] + n2[:, 2] * d[:, 2] > 0
    weights = np.float32(1.0) - dot
    return np.where(convex, weights * weights, weights)


def _felzenszwalb(num_vertices, edge_a, edge_b, weights, k_thresh, seg_min_verts):
    """Union-find over the sorted edges: threshold pass, then small-segment pass."""
    parent = list(range(num_vertices))
    rank = [0] * num_vertices
    size = [1] * num_vertices
    threshold = [k_thresh] * num_vertices

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(x, y):
        """Union by rank of roots x, y as in the tool (ties go to y); returns the new root."""
        if rank[x] > rank[y]:
            x, y = y, x
        elif rank[x] == rank[y]:
            rank[y] += 1
        parent[x] = y
        size[y] += size[x]
        return y

    for a, b, w in zip(edge_a, edge_b, weights):
        a, b = find(a), find(b)
        if a != b and w <= threshold[a] and w <= threshold[b]:
            root = join(a, b)
            # float32 like the tool: thr = w + c / size
            threshold[root] = float(np.float32(w) + k_thresh / np.float32(size[root]))
    for a, b in zip(edge_a, edge_b):
        a, b = find(a), find(b)
        if a != b and (size[a] < seg_min_verts or size[b] < seg_min_verts):
            join(a, b)
    return np.array([find(x) for x in range(num_vertices)], dtype=np.int64)
