"""Build and install ikne_plugin with its C++/CUDA extension ikne_plugin._ext.

The extension compiles against the installed PyTorch, so install torch first
and build without isolation: ``pip install --no-build-isolation -e .``.
CUDA kernels are built when ``torch.cuda.is_available()`` or ``FORCE_CUDA=1``.
"""
import glob
import os

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import (BuildExtension, CppExtension, CUDAExtension,
                                           library_paths)
except ImportError as error:
    raise SystemExit(
        'ikne_plugin: building the extension ikne_plugin._ext needs PyTorch, which could not be '
        f'imported ({error}). Install torch first (pip install -r requirements/build.txt), then '
        'run `pip install --no-build-isolation -e .` (without --no-build-isolation pip builds '
        'in an isolated environment that has no torch).') from error

CSRC = os.path.join('ops', 'csrc')


def make_extension():
    """A CUDAExtension where CUDA is usable or forced, else a CppExtension."""
    sources = sorted(glob.glob(os.path.join(CSRC, '*.cpp')) +
                     glob.glob(os.path.join(CSRC, 'cpu', '*.cpp')))
    extra_compile_args = {'cxx': ['-O3']}
    extra_link_args = [f'-Wl,-rpath,{path}' for path in library_paths()]  # libc10 without `import torch`
    if torch.backends.openmp.is_available():
        # at::parallel_for is inlined into our kernels and, in an OpenMP build of torch, is a
        # `#pragma omp parallel`: without -fopenmp it silently runs on one thread. The rpath
        # above makes libgomp.so.1 resolve to the copy torch ships, so one runtime is used.
        extra_compile_args['cxx'].append('-fopenmp')
        extra_link_args.append('-fopenmp')
    with_cuda = torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1'
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(CSRC, 'cuda', '*.cpp')) +
                          glob.glob(os.path.join(CSRC, 'cuda', '*.cu')))
        extra_compile_args['nvcc'] = ['-O3']
    extension = CUDAExtension if with_cuda else CppExtension
    return extension(
        name='ikne_plugin._ext',
        sources=sources,
        include_dirs=[os.path.abspath(os.path.join(CSRC, 'common'))],
        extra_compile_args=extra_compile_args,
        extra_link_args=extra_link_args)


setup(
    name='ikne_plugin',
    version='0.1.0',
    description='IKNE 3D instance segmentation as an mmdet3d plugin',
    packages=find_packages(include=['ikne_plugin', 'ikne_plugin.*']),
    python_requires='>=3.9',
    ext_modules=[make_extension()],
    cmdclass={'build_ext': BuildExtension},
    zip_safe=False,
)
