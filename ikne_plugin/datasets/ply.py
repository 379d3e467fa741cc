"""Binary PLY triangle meshes as ScanNet stores them, read and written with numpy.

ScanNet's ``*_vh_clean_2.ply`` is ``binary_little_endian``: a ``vertex`` element of
scalar properties (``x y z red green blue alpha``; ``labels.ply`` adds a ushort
``label``) and a ``face`` element with one ``list uchar int vertex_indices``.
Reading the whole body with ``np.frombuffer`` (no per-face Python loop) keeps a
300k-face mesh in milliseconds, and checking the body's byte count turns a
truncated download into a clear error instead of garbage.
"""
import gzip

import numpy as np

from ..utils import UserInputError, atomic_write

# PLY scalar type names (both spellings of the spec) -> numpy type codes.
_PLY_TYPES = {
    'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1',
    'short': 'i2', 'int16': 'i2', 'ushort': 'u2', 'uint16': 'u2',
    'int': 'i4', 'int32': 'i4', 'uint': 'u4', 'uint32': 'u4',
    'float': 'f4', 'float32': 'f4', 'double': 'f8', 'float64': 'f8',
}
_NUMPY_TO_PLY = {'i1': 'char', 'u1': 'uchar', 'i2': 'short', 'u2': 'ushort',
                 'i4': 'int', 'u4': 'uint', 'f4': 'float', 'f8': 'double'}


class PlyFormatError(UserInputError):
    """A PLY file that is not a readable binary triangle mesh; the message names it."""


def read_ply(path):
    """Read a binary triangle-mesh PLY (gzip-compressed if the name ends with ``.gz``).

    Returns:
        (vertex, faces): ``vertex`` a structured numpy array with one field per vertex
        property (e.g. ``vertex['x']``), ``faces`` int64 [F, 3] (empty if the file has
        no face element).
    """
    with (gzip.open if str(path).endswith('.gz') else open)(path, 'rb') as f:
        try:
            data = f.read()
        except (OSError, EOFError) as error:  # a damaged .gz
            raise PlyFormatError(f'{path}: cannot decompress ({error})') from None
    end = data.find(b'end_header\n')
    if not data:
        raise PlyFormatError(f'{path}: empty file')
    if not data.startswith(b'ply\n') or end < 0:
        raise PlyFormatError(f'{path}: not a PLY file (no "ply" magic or "end_header")')
    header = data[:end].decode('ascii', errors='replace').splitlines()[1:]
    body = memoryview(data)[end + len(b'end_header\n'):]

    byte_order, elements = None, []  # elements: [name, count, [(prop, dtype)], list_spec]
    for line in header:
        words = line.split()
        if not words or words[0] in ('comment', 'obj_info'):
            continue
        if words[0] == 'format':
            byte_order = {'binary_little_endian': '<', 'binary_big_endian': '>'}.get(words[1])
            if byte_order is None:
                raise PlyFormatError(f'{path}: format {words[1]!r} is not supported; '
                                     'expected binary_little_endian or binary_big_endian')
        elif words[0] == 'element':
            elements.append([words[1], int(words[2]), [], None])
        elif words[0] == 'property' and elements:
            if words[1] == 'list':
                elements[-1][3] = (_ply_type(path, words[2]), _ply_type(path, words[3]))
            else:
                elements[-1][2].append((words[2], byte_order + _ply_type(path, words[1])))
        else:
            raise PlyFormatError(f'{path}: unexpected header line {line!r}')

    vertex, faces, offset = None, np.zeros((0, 3), np.int64), 0
    for name, count, props, list_spec in elements:
        if list_spec is None:
            dtype = np.dtype(props)
        else:  # triangles only: every row is (count=3, i1, i2, i3)
            if props:
                raise PlyFormatError(f'{path}: element {name!r} mixes lists and scalars')
            dtype = np.dtype([('n', byte_order + list_spec[0]),
                              ('v', byte_order + list_spec[1], (3,))])
        size = dtype.itemsize * count
        if offset + size > len(body):
            raise PlyFormatError(f'{path}: truncated: element {name!r} needs {size} bytes '
                                 f'at offset {offset}, the body has {len(body)}')
        array = np.frombuffer(body, dtype, count, offset)
        offset += size
        if name == 'vertex':
            vertex = array
        elif name == 'face':
            if list_spec is None or not np.all(array['n'] == 3):
                raise PlyFormatError(f'{path}: faces must all be triangles')
            faces = array['v'].astype(np.int64)
    if vertex is None:
        raise PlyFormatError(f'{path}: no vertex element')
    if offset != len(body):
        raise PlyFormatError(f'{path}: {len(body) - offset} unexpected bytes after the data')
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertex)):
        raise PlyFormatError(f'{path}: face indices outside [0, {len(vertex)})')
    return vertex, faces


def write_ply(path, vertex, faces, comment='ikne_plugin'):
    """Write ``vertex`` (structured array) and ``faces`` ([F, 3] ints) as binary PLY, atomically."""
    lines = ['ply', 'format binary_little_endian 1.0', f'comment {comment}',
             f'element vertex {len(vertex)}']
    for field in vertex.dtype.names:
        code = vertex.dtype[field].str[1:]
        lines.append(f'property {_NUMPY_TO_PLY[code]} {field}')
    lines += [f'element face {len(faces)}', 'property list uchar int vertex_indices',
              'end_header\n']
    face_rows = np.empty(len(faces), [('n', 'u1'), ('v', '<i4', (3,))])
    face_rows['n'] = 3
    face_rows['v'] = faces
    little = vertex.astype(vertex.dtype.newbyteorder('<'))
    atomic_write(path, '\n'.join(lines).encode('ascii') + little.tobytes() + face_rows.tobytes(),
                 mode='wb')


def _ply_type(path, name):
    if name not in _PLY_TYPES:
        raise PlyFormatError(f'{path}: unknown PLY type {name!r}')
    return _PLY_TYPES[name]
