#!/usr/bin/env bash
# On the GPU machine: this tree's extension against other versions of it, built side by side in
# one call, so that their timings compare (one machine, one host). Before the call, here, export
# each version to compare (a commit, a branch) and carry .gpu and scratch:
#   mkdir -p scratch/builds/NAME && git archive REF ikne_plugin tools configs ops setup.py \
#     | tar -x -C scratch/builds/NAME
# There it sets the environment up, builds this tree and every scratch/builds/* in parallel, runs
# the test files given (default: the RPE value op's) on each, then
# `tools/benchmark_ops.py --device cuda --kernels 4 $BENCH_ARGS` on each: this tree first and
# again last (the difference of its two runs is the host's drift). Logs go to $OUT: one a tree
# (its build, then its tests), the benchmarks', setup's.
#   BENCH_ARGS="--ops rpe" bash tools/gpu/compare_builds.sh [test files ...]
set -uo pipefail
shopt -s nullglob  # (no scratch/builds: this tree alone)
cd "$(dirname "$0")/../.."
root=$PWD OUT=$(realpath -m "${OUT:-gpu_results}")
mkdir -p "$OUT"
bash tools/gpu/setup_gpu_env.sh .gpu > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
trees=(. scratch/builds/*)
name() { if [ "$1" = . ]; then echo this; else basename "$1"; fi; }
log() { echo "$OUT/tree_$(name "$1").log"; }  # a tree's build, then its tests ($OUT returns 8 files)
for tree in "${trees[@]}"; do
  bash tools/gpu/build_ext.sh "$tree" "$(log "$tree")" $(( $(nproc) / ${#trees[@]} + 1 )) &
done
wait
tests=("${@:-tests/test_ops_rpe_attention_value.py}")
for tree in "${trees[@]}"; do  # (in its tree, `import ikne_plugin` finds that tree's build)
  (cd "$tree" && PYTHONPATH=/tmp/site:/tmp/mmcv:$PWD python3 -m pytest -q -p no:cacheprovider \
    -W ignore::FutureWarning "${tests[@]/#/$root/}" >> "$(log "$tree")" 2>&1) &
done
wait
summary() { for tree in "${trees[@]}"; do echo "$(name "$tree") tests: $(tail -1 "$(log "$tree")")"; done; }
summary
for tree in "${trees[@]}" .; do
  echo "== $(name "$tree")"
  (cd "$tree" && PYTHONPATH=/tmp/site:/tmp/mmcv:$PWD python3 tools/benchmark_ops.py --device cuda \
    --kernels 4 ${BENCH_ARGS:-}) 2>&1 | grep -v -i warn
done | tee "$OUT/benchmarks.log"
summary  # again at the end, which the call's output tail keeps
