#!/usr/bin/env bash
# On a bare GPU machine, from the repository root with the bundle in .gpu/ (shared/device/README.md):
# set the environment up, build ikne_plugin._ext with CUDA, run the tests (CUDA ones included)
# in one pytest process (each process spends about 20 s importing mmdet3d there), then the op
# benchmark and the end-to-end one (float32 and AMP, about 2 minutes): BENCH=ops runs only the
# first, BENCH=none neither (a session's own measurements then follow in the same call).
# NCU=REGEX then profiles the first 24 launches of kernels whose names match REGEX with Nsight
# Compute (caches flushed before each, at ncu's locked clocks) in `benchmark_ops --ops voxel_pool
# rpe`: in its order, the RPE value op's forward (6 histogram launches), then its forward+backward.
# Logs and JSON results go to $OUT (default: gpu_results/).
#   bash tools/gpu/run_checks.sh [pytest selection ...]   (default: the op tests, tests/test_ops_*.py)
#   BENCH=none NCU='rpe_(histogram|gather|table)' bash tools/gpu/run_checks.sh tests/test_ops_rpe_*.py
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
bash tools/gpu/setup_gpu_env.sh .gpu || exit 1
export PYTHONPATH=/tmp/site:/tmp/mmcv:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

bash tools/gpu/build_ext.sh . "$OUT/build.log" || exit 1

# The compiled ops raise no C++ errors on user input (the wrappers do), so one process suffices:
# on that machine's toolchain a C++ error whose message formats a number crashed the process.
python3 -m pytest -q -p no:cacheprovider -W ignore::FutureWarning ${@:-tests/test_ops_*.py} 2>&1 \
  | tee "$OUT/tests.log" | tail -25
BENCH=${BENCH:-all}
[ "$BENCH" = none ] || python3 tools/benchmark_ops.py --device cuda --kernels 3 --json "$OUT/benchmark_ops.json" 2>&1 \
  | tee "$OUT/benchmark_ops.log"
[ "$BENCH" != all ] || python3 tools/benchmark.py configs/ikne_trans_scannet.py --amp \
  --json "$OUT/benchmark.json" 2>&1 | tee "$OUT/benchmark.log"
[ -z "${NCU:-}" ] || ncu --kernel-name "regex:$NCU" --launch-count 24 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  python3 tools/benchmark_ops.py --device cuda --ops voxel_pool rpe --repeats 3 > "$OUT/ncu.txt" 2>&1 \
  || tail -20 "$OUT/ncu.txt"
