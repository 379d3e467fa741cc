#!/usr/bin/env bash
# Distributed evaluation with torchrun: the test set split over one process per GPU, the
# metric computed on the gathered predictions (mmengine's 'pytorch' launcher).
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options, e.g. --amp]
# Several nodes: run it on every node with NNODES, NODE_RANK and MASTER_ADDR (and PORT) set.
set -euo pipefail
CONFIG=${1:?usage: dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]}
CHECKPOINT=${2:?usage: dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]}
GPUS=${3:?usage: dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" --nproc_per_node="$GPUS" \
  "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
