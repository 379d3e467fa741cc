#!/usr/bin/env bash
# On the GPU machine (after setup_gpu_env.sh): build ikne_plugin._ext with CUDA for this GPU in
# the tree DIR (a checkout, or a `git archive` of one), its log to LOG; prints the time it took,
# or the log's tail on a failure (exit 1).
#   bash tools/gpu/build_ext.sh DIR LOG [JOBS]   (JOBS: parallel compiles, default: every core)
set -uo pipefail
dir=${1:?usage: build_ext.sh DIR LOG [JOBS]} log=$(realpath -m "${2:?usage: build_ext.sh DIR LOG [JOBS]}")
cd "$dir" || exit 1
rm -f ikne_plugin/_ext*.so  # never a CPU-only build carried from elsewhere
t0=$(date +%s)
TORCH_CUDA_ARCH_LIST="$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')" \
  FORCE_CUDA=1 MAX_JOBS=${3:-$(nproc)} python3 setup.py build_ext --inplace > "$log" 2>&1 \
  || { echo "build failed in $dir:"; tail -60 "$log"; exit 1; }
echo "extension built with CUDA in $dir in $(( $(date +%s) - t0 )) s"
