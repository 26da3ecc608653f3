#!/usr/bin/env bash
# Launch DiffusionMTL training or evaluation.
#
#   bash run.sh                                   # the demo: synthetic data, small ViT, CPU ok
#   CONFIG=configs/pascal/vitb_onelabel.yml NGPUS=8 bash run.sh
#   RUN_MODE=infer TRAINED_MODEL=work_dirs/demo/best.pth bash run.sh
#   bash run.sh --opts max_iter=1000 trBatch=4     # extra arguments go to main.py
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 MASTER_PORT=29500 CONFIG=... bash run.sh   # multi-node
#
# Every variable below can be set from the environment. One process runs main.py
# directly; several on one node use torchrun's standalone rendezvous (a free port, so
# two runs on one machine do not collide); several nodes meet at MASTER_ADDR:MASTER_PORT.
# Errors are one line (no traceback) with exit status 2 for config / data / checkpoint
# problems; Ctrl-C saves last.pth and exits with 130.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "error: $*" >&2; exit 2; }

CONFIG=${CONFIG:-configs/demo.yml}
RUN_MODE=${RUN_MODE:-train}
TRAINED_MODEL=${TRAINED_MODEL:-}
case "$RUN_MODE" in
  train|infer) ;;
  *) die "RUN_MODE must be train or infer, got '$RUN_MODE'" ;;
esac
if [ "$RUN_MODE" = infer ] && [ -z "$TRAINED_MODEL" ]; then
  die "RUN_MODE=infer needs the checkpoint to evaluate: TRAINED_MODEL=work_dirs/<run>/best.pth bash run.sh"
fi
if [ -z "${NGPUS:-}" ]; then
  NGPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "${NGPUS:-0}" -ge 1 ] || NGPUS=1          # no GPU: one CPU process
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# The demo dataset (db_root of configs/demo.yml): generated once, PASCAL-Context layout,
# at the demo config's size. data.synthetic writes into a hidden temporary folder and
# renames it into place when complete, so an interrupted generation leaves nothing a later
# run would accept; DEMO_DATA/.demo_args records the arguments, so a dataset made by
# another version of the demo is generated again. DEMO_DATA (default demo_data, the
# config's db_root) moves it elsewhere.
DEMO_DATA=${DEMO_DATA:-demo_data}
DEMO_ARGS="--layout pascal --train 240 --val 60 --size 96 --seed 0"

ARGS=(--config_exp "$CONFIG" --run_mode "$RUN_MODE")
if [ "$CONFIG" = "configs/demo.yml" ]; then
  if [ ! -d "$DEMO_DATA/PASCALContext" ] || [ "$(cat "$DEMO_DATA/.demo_args" 2>/dev/null)" != "$DEMO_ARGS" ]; then
    if [ -d "$DEMO_DATA/PASCALContext" ]; then
      echo "The demo dataset in $DEMO_DATA/PASCALContext was made by another version of the demo; generating it again ..."
    else
      echo "Generating the demo dataset in $DEMO_DATA/PASCALContext ..."
    fi
    # shellcheck disable=SC2086  # DEMO_ARGS is a list of words
    "$PYTHON" -m data.synthetic $DEMO_ARGS --out "$DEMO_DATA" --force
    echo "$DEMO_ARGS" > "$DEMO_DATA/.demo_args"
  fi
  [ "$DEMO_DATA" = demo_data ] || ARGS+=(--opts "db_root=$DEMO_DATA")
fi
[ -n "$TRAINED_MODEL" ] && ARGS+=(--trained_model "$TRAINED_MODEL")

if [ "$NNODES" -eq 1 ] && [ "$NGPUS" -eq 1 ]; then
  exec "$PYTHON" main.py "${ARGS[@]}" "$@"
elif [ "$NNODES" -eq 1 ]; then
  exec "$PYTHON" -m utils.launch --standalone --nproc_per_node "$NGPUS" main.py "${ARGS[@]}" "$@"
else
  [ -n "${MASTER_ADDR:-}" ] && [ -n "${MASTER_PORT:-}" ] \
    || die "a multi-node run (NNODES=$NNODES) needs MASTER_ADDR (the address of node 0) and MASTER_PORT (a free port there)"
  exec "$PYTHON" -m utils.launch --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NGPUS" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" main.py "${ARGS[@]}" "$@"
fi
