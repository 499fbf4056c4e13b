#!/bin/bash
# The control plane on this machine: 4 virtual nodes of 8 GPUs, a 2-node gang, an
# array with at most 2 tasks at once, and a job that runs after the gang succeeds.
set -euo pipefail
D=${DETENTE:-detente}
export DETENTE_HOME=${DETENTE_HOME:-$(mktemp -d)}
work=$(mktemp -d)
here=$(cd "$(dirname "$0")" && pwd)
trap '$D down >/dev/null' EXIT
# Single-user: every job runs as you (as root, `up` alone would run each user's jobs
# under their own Unix account; see docs/security.md).
$D up --nodes 4x8 --single-user
cd "$work"
train=$($D submit --parsable "$here/slurm/train.sh")
$D sbatch "$here/slurm/sweep.sh"
$D submit --dependency=afterok:"$train" "$here/slurm/eval.sh" step-1000
$D queue
for _ in $(seq 120); do
  [ "$($D queue -o json)" = "[]" ] && break
  sleep 0.5
done
$D history
cat "$work"/train-*.out
