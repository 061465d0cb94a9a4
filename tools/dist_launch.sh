#!/usr/bin/env bash
# Run a tools/ script on NUM_GPUS processes of this node through torchrun
# (NCCL on GPUs, gloo on CPU; 1 works too). dist_train.sh and dist_test.sh
# call it with their script and arguments:
#   ./tools/dist_launch.sh SCRIPT NUM_GPUS [SCRIPT's arguments]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each node,
# the variables torchrun reads, and run the same command everywhere, from
# the same path: evaluation gathers the processes' results through files
# in ./.dist_test, which must be on a file system all nodes share.
set -euo pipefail
# The callers check their own arguments; set -u stops a call without these.
SCRIPT=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The project's environment (make env) unless PYTHON says otherwise.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python
    [ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"
fi

# exec: a SIGTERM to this script's PID (dist_train.sh's too) reaches the
# launcher, which stops every process cleanly; bash would die alone.
PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
exec "$PYTHON" "$ROOT/tools/dist_run.py" \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/$SCRIPT" "${@:3}"
