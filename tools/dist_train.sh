#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU, PyTorch DDP through mmengine's
# 'pytorch' launcher (NCCL on GPUs; on a machine without CUDA, gloo on the CPU).
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py options, e.g. --amp --sync-bn]
# Several nodes: run it on every node with NNODES, NODE_RANK and MASTER_ADDR (and PORT) set.
set -euo pipefail
CONFIG=${1:?usage: dist_train.sh CONFIG GPUS [train.py options]}
GPUS=${2:?usage: dist_train.sh CONFIG GPUS [train.py options]}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" --nproc_per_node="$GPUS" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
