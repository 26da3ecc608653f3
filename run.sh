#!/usr/bin/env bash
# Launch DiffusionMTL training or evaluation with torchrun.
#
#   bash run.sh                                   # the demo: synthetic data, small ViT, CPU ok
#   CONFIG=configs/pascal/vitb_onelabel.yml NGPUS=8 bash run.sh
#   RUN_MODE=infer TRAINED_MODEL=work_dirs/demo/best.pth bash run.sh
#   bash run.sh --opts max_iter=1000 trBatch=4     # extra arguments go to main.py
#
# Every variable below can be set from the environment.
set -euo pipefail
cd "$(dirname "$0")"

CONFIG=${CONFIG:-configs/demo.yml}
RUN_MODE=${RUN_MODE:-train}
TRAINED_MODEL=${TRAINED_MODEL:-}
if [ -z "${NGPUS:-}" ]; then
  NGPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "${NGPUS:-0}" -ge 1 ] || NGPUS=1          # no GPU: one CPU process
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# The demo dataset (db_root of configs/demo.yml): generated once, PASCAL-Context layout.
DEMO_DATA=demo_data

if [ "$CONFIG" = "configs/demo.yml" ] && [ ! -d "$DEMO_DATA/PASCALContext" ]; then
  echo "Generating the demo dataset in $DEMO_DATA/PASCALContext ..."
  "$PYTHON" -m data.synthetic --layout pascal --out "$DEMO_DATA" --train 240 --val 60 --size 128 --seed 0
fi

ARGS=(--config_exp "$CONFIG" --run_mode "$RUN_MODE")
[ -n "$TRAINED_MODEL" ] && ARGS+=(--trained_model "$TRAINED_MODEL")

exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NGPUS" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  main.py "${ARGS[@]}" "$@"
