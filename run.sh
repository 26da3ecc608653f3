#!/usr/bin/env bash
# Launch DiffusionMTL training or evaluation.
#
#   bash run.sh                                   # the demo: synthetic data, small ViT, CPU ok
#   CONFIG=configs/pascal/vitb_onelabel.yml NGPUS=8 bash run.sh
#   RUN_MODE=infer CHECKPOINT=work_dirs/demo/best.pth bash run.sh
#   bash run.sh --opts max_iter=1000 trBatch=4     # extra arguments go to main.py
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 MASTER_PORT=29500 CONFIG=... bash run.sh   # multi-node
#   sbatch docs/slurm.sbatch                      # SLURM: `srun bash run.sh`, one per node
#
# Every variable below can be set from the environment. NGPUS is the number of processes
# on this node: by default one per visible GPU (nvidia-smi, narrowed by
# CUDA_VISIBLE_DEVICES), one without a GPU; NGPUS=2 without a GPU runs two CPU processes
# (DDP over gloo). Under SLURM the variables left unset come from SLURM's: NNODES from
# SLURM_NNODES, NODE_RANK from SLURM_NODEID, NGPUS from SLURM_GPUS_ON_NODE (else the visible
# GPUs, else SLURM_NTASKS_PER_NODE), MASTER_ADDR = the first host of SLURM_JOB_NODELIST, MASTER_PORT
# = 20000 + SLURM_JOB_ID % 10000 (docs/clusters.md). One process runs main.py directly;
# several on one node use torchrun's standalone rendezvous (a free port, so two runs on
# one machine do not collide); several nodes meet at MASTER_ADDR:MASTER_PORT.
# Errors are one line (no traceback) with exit status 2 for config / data / checkpoint /
# install problems; Ctrl-C saves last.pth and exits with 130.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "error: $*" >&2; exit 2; }

# The first host of a SLURM node list: node[03-05,07],gpu1 -> node03.
first_host() {
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$1" | head -n 1
    return
  fi
  local prefix=${1%%[\[,]*} rest
  if [ "${1:${#prefix}:1}" = "[" ]; then
    rest=${1:${#prefix}+1}
    echo "$prefix${rest%%[-,\]]*}"
  else
    echo "$prefix"
  fi
}

# GPUs this process may use: nvidia-smi's count, narrowed by CUDA_VISIBLE_DEVICES (CUDA
# reads that list up to its first invalid entry: -1 or an empty list hide every GPU).
visible_gpus() {
  local count listed
  count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
    listed=$(awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { if ($i == "" || $i ~ /^-/) break; n++ } print n }' \
      <<< "$CUDA_VISIBLE_DEVICES")
    [ "${listed:-0}" -lt "${count:-0}" ] && count=$listed
  fi
  echo "${count:-0}"
}

CONFIG=${CONFIG:-configs/demo.yml}
RUN_MODE=${RUN_MODE:-train}
CHECKPOINT=${CHECKPOINT:-}
if [ -n "${TRAINED_MODEL:-}" ] && [ -z "$CHECKPOINT" ]; then   # the former name
  echo "note: TRAINED_MODEL is now CHECKPOINT (the old name still works)" >&2
  CHECKPOINT=$TRAINED_MODEL
fi
case "$RUN_MODE" in
  train|infer) ;;
  *) die "RUN_MODE must be train or infer, got '$RUN_MODE'" ;;
esac
if [ "$RUN_MODE" = infer ] && [ -z "$CHECKPOINT" ]; then
  die "RUN_MODE=infer needs the checkpoint to evaluate: CHECKPOINT=work_dirs/<run>/best.pth bash run.sh"
fi

# Processes and nodes: the environment, else SLURM's variables, else this machine's GPUs.
GPUS=$(visible_gpus)
if [ -n "${NNODES:-}" ]; then      # set by hand: SLURM's node index does not apply
  NODE_RANK=${NODE_RANK:-0}
else
  NNODES=${SLURM_NNODES:-1}
  NODE_RANK=${NODE_RANK:-${SLURM_NODEID:-0}}
fi
if [ -z "${NGPUS:-}" ]; then
  for NGPUS in "${SLURM_GPUS_ON_NODE:-}" "$GPUS" "${SLURM_NTASKS_PER_NODE:-}" 1; do  # the first count >= 1
    [[ "$NGPUS" =~ ^[1-9][0-9]*$ ]] && break
  done
fi
[[ "$NGPUS" =~ ^[1-9][0-9]*$ ]] || die "NGPUS must be the number of processes per node (1 or more), got '$NGPUS'"
[[ "$NNODES" =~ ^[1-9][0-9]*$ ]] || die "NNODES must be the number of nodes (1 or more), got '$NNODES'"
[[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NNODES" ] \
  || die "NODE_RANK must be 0..$((NNODES - 1)) (this node's index among NNODES=$NNODES), got '$NODE_RANK'"
if [ "$GPUS" -ge 1 ] && [ "$NGPUS" -gt "$GPUS" ]; then
  die "NGPUS=$NGPUS but only $GPUS GPU(s) are visible on this node${CUDA_VISIBLE_DEVICES:+ (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)}; set NGPUS=$GPUS or fewer, or choose the GPUs with CUDA_VISIBLE_DEVICES (docs/clusters.md)"
fi
if [ "$NNODES" -gt 1 ]; then
  NODELIST=${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}
  [ -n "${MASTER_ADDR:-}" ] || [ -z "$NODELIST" ] || MASTER_ADDR=$(first_host "$NODELIST")
  [ -n "${MASTER_PORT:-}" ] || [ -z "${SLURM_JOB_ID:-}" ] || MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000))
  [ -n "${MASTER_ADDR:-}" ] && [ -n "${MASTER_PORT:-}" ] \
    || die "a multi-node run (NNODES=$NNODES) needs MASTER_ADDR (the address of node 0) and MASTER_PORT (a free port there)"
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -m utils.install   # a torch / torchvision pair that does not match: one line, before anything runs

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
[ -n "$CHECKPOINT" ] && ARGS+=(--checkpoint "$CHECKPOINT")

if [ "$GPUS" -eq 0 ] && [ "$NGPUS" -gt 1 ]; then
  echo "NGPUS=$NGPUS: $NGPUS CPU processes on this node (no GPU visible): DDP over gloo"
fi
if [ "$NNODES" -eq 1 ] && [ "$NGPUS" -eq 1 ]; then
  exec "$PYTHON" main.py "${ARGS[@]}" "$@"
elif [ "$NNODES" -eq 1 ]; then
  exec "$PYTHON" -m utils.launch --standalone --nproc_per_node "$NGPUS" main.py "${ARGS[@]}" "$@"
else
  echo "node $NODE_RANK of $NNODES, $NGPUS process(es) here, rendezvous at $MASTER_ADDR:$MASTER_PORT"
  exec "$PYTHON" -m utils.launch --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NGPUS" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" main.py "${ARGS[@]}" "$@"
fi
