#!/usr/bin/env bash
# Train on NUM_GPUS processes of this node through torchrun (NCCL on GPUs,
# gloo on CPU; 1 works too):
#   ./tools/dist_train.sh CONFIG NUM_GPUS [tools/train.py options]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each node,
# the variables torchrun reads, and run the same command everywhere.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_GPUS [options]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
# bash, not the file's mode: the launcher runs whether or not it is executable
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$GPUS" \
    "$CONFIG" --launcher pytorch "${@:3}"
