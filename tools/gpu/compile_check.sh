#!/usr/bin/env bash
# Compile the extension's CUDA sources on a machine without a GPU (this CPU machine has nvcc
# but a CPU-only torch), to catch compile errors and signature mismatches before a device call.
# Objects only: nothing is linked or run. torch's CUDA headers include the cuBLAS/cuSPARSE/
# cuSOLVER headers for handle types that none of our kernels use; small stand-ins are made for
# them when the toolkit lacks them. Then every CUDA function cudabind.cpp registers must be
# defined, with the same signature, by one of the .cu objects.
#   bash tools/gpu/compile_check.sh [sm_90]
#   NVCC_EXTRA="-Xptxas -v" bash tools/gpu/compile_check.sh   (also prints registers and spills)
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:-sm_90}
PY=${PYTHON:-.venv/bin/python}
TORCH_INC=$("$PY" -c 'import torch.utils.cpp_extension as c; print(" ".join("-I" + p for p in c.include_paths()))')
PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
CUDA_INC=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/stubs"
for header in cusparse.h cublas_v2.h cublasLt.h cusolverDn.h cusolver_common.h; do
  [ -f "$CUDA_INC/$header" ] && continue
  {
    echo '#pragma once'
    echo '#include <cuda_runtime.h>'
    echo 'typedef struct cusparseContext* cusparseHandle_t; typedef int cusparseStatus_t;'
    echo 'typedef struct cublasContext* cublasHandle_t; typedef int cublasStatus_t;'
    echo 'typedef struct cublasLtContext* cublasLtHandle_t;'
    echo 'typedef struct cusolverDnContext* cusolverDnHandle_t; typedef int cusolverStatus_t;'
  } > "$WORK/stubs/$header"
done
# (the CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h: skip it)
FLAGS="-std=c++20 -O1 -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE -I$WORK/stubs $TORCH_INC -I$PY_INC -Iops/csrc/common"
for source in ops/csrc/cuda/*.cu; do
  echo "nvcc $source"
  nvcc -c -arch="$ARCH" --expt-relaxed-constexpr ${NVCC_EXTRA:-} $FLAGS "$source" -o "$WORK/$(basename "$source").o" \
    > "$WORK/nvcc.log" 2>&1 || { grep -B2 -A6 'error' "$WORK/nvcc.log" | head -60; echo "FAILED: $source"; exit 1; }
  [ -z "${NVCC_EXTRA:-}" ] || cat "$WORK/nvcc.log"
done
echo "g++ ops/csrc/cuda/cudabind.cpp"
g++ -c $FLAGS -I"$CUDA_INC" ops/csrc/cuda/cudabind.cpp -o "$WORK/cudabind.o"
missing=$(comm -23 <(nm -C "$WORK/cudabind.o" | sed -n 's/^ *U \(.*_cuda(.*\)$/\1/p' | sort -u) \
                   <(for o in "$WORK"/*.cu.o; do nm -C "$o"; done \
                     | sed -n 's/^[0-9a-f]* T \(.*_cuda(.*\)$/\1/p' | sort -u))
if [ -n "$missing" ]; then
  echo "cudabind.cpp declares CUDA functions that no .cu file defines with that signature:"
  echo "$missing"
  exit 1
fi
echo "all CUDA sources compile for $ARCH; cudabind.cpp's declarations match their definitions"
