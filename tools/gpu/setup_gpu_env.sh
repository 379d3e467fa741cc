#!/usr/bin/env bash
# From the project's tested GPU recipe (shared/device/README.md); kept here because only the repo reaches the GPU machine.
# Run on the GPU machine, from the folder that holds the bundle made by make_bundle.sh (carried with the call).
# Unpacks the packages into /tmp/site and builds mmcv 2.1.0's ops for the CPU there (mmdet3d imports need mmcv._ext;
# the model's own CUDA ops are this project's). About 1-2 minutes with 16 cores. Then: export PYTHONPATH=/tmp/site:/tmp/mmcv
# Idempotent within one machine: a second call returns at once.
set -euo pipefail
B=${1:?usage: setup_gpu_env.sh BUNDLE_DIR}
if [ -f /tmp/site/.ready ]; then echo "GPU env already set up"; exit 0; fi
mkdir -p /tmp/site /tmp/st && tar xJf "$B/site312.tar.xz" -C /tmp/site
python3 -m pip install -q --no-index --no-deps --target /tmp/st "$B"/setuptools-*.whl
rm -rf /tmp/mmcv-src && mkdir -p /tmp/mmcv-src && tar xzf "$B"/mmcv-2.1.0.tar.gz -C /tmp/mmcv-src
cd /tmp/mmcv-src/mmcv-2.1.0
# CUDA_VISIBLE_DEVICES= hides the GPU from the build only: mmcv then compiles its CPU ops (fast); none of its CUDA ops are used.
CUDA_VISIBLE_DEVICES= PYTHONPATH=/tmp/st:/tmp/site MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) python3 setup.py build_ext --inplace > /tmp/mmcv_build.log 2>&1 \
  || { tail -20 /tmp/mmcv_build.log; exit 1; }
rm -rf /tmp/mmcv && mkdir -p /tmp/mmcv && cp -r mmcv /tmp/mmcv/
touch /tmp/site/.ready
echo "GPU env ready: export PYTHONPATH=/tmp/site:/tmp/mmcv"
