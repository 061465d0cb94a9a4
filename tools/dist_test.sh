#!/usr/bin/env bash
# Evaluate on NUM_GPUS processes (NCCL on GPUs, gloo on CPU; 1 works too):
#   ./tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS [tools/test.py options]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each, as
# torchrun expects.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_GPUS [options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
# bash, not the file's mode: the launcher runs whether or not it is executable
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$GPUS" \
    "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
