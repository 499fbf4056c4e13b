#!/bin/bash
# Inference and training on one pool (3 virtual nodes × 8 GPUs): a --requeue training
# job borrows the serving queue's idle GPUs; load on the service scales it up, which
# reclaims them (the training job is preempted); a replica is killed and replaced;
# when the service goes, the training job resumes (SLURM_RESTART_COUNT 1).
set -euo pipefail
D=${DETENTE:-detente}
export DETENTE_HOME=${DETENTE_HOME:-$(mktemp -d)}
work=$(mktemp -d)
here=$(cd "$(dirname "$0")" && pwd)
load_pid=
# On exit: stop the load, cancel what still runs (jobs outlive `down` by design), stop.
cleanup() {
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null
  $D delete -y service llm >/dev/null 2>&1 || true
  ids=$($D queue -o json | python3 -c 'import json,sys; print(" ".join(str(j["id"]) for j in json.load(sys.stdin)))')
  [ -n "$ids" ] && $D cancel $ids >/dev/null
  for _ in $(seq 40); do [ "$($D queue -o json)" = "[]" ] && break; sleep 0.25; done
  $D down >/dev/null
}
trap cleanup EXIT
$D up --nodes 3x8 --single-user
$D apply -y -f "$here/serve/pool.yaml" >/dev/null
cd "$work"
cat > own.sh <<'JOB'
#!/bin/bash
#SBATCH --job-name=own -N 1 --gres=gpu:8 -p train
sleep 600
JOB
cat > borrower.sh <<'JOB'
#!/bin/bash
#SBATCH --job-name=borrower --requeue -N 2 --gres=gpu:8 -p train --output=borrower.out
echo "borrower starts, restart count $SLURM_RESTART_COUNT"
trap 'echo "borrower: SIGTERM, checkpointing"; exit 143' TERM
sleep 600 & wait
JOB
$D submit own.sh >/dev/null
$D submit borrower.sh >/dev/null
cat > llm.yaml <<YAML
apiVersion: detente.dev/v1
kind: Service
metadata: {name: llm}
spec:
  queue: serve
  priorityClass: serving
  command: exec python3 $here/serve/fake_llm.py
  resources: {nvidia.com/gpu: 4, cpu: 1}
  model: fake-llm
  autoscaling: {min: 0, max: 2, target: {concurrency: 1}, scaleToZeroAfter: 30s}
  readiness: {path: /healthz, periodSeconds: 0.2}
  env: {TOKEN_RATE: "20"}
YAML
sleep 2
echo "== training: one job in its own quota, one --requeue job borrowing serving's GPUs"
$D queue
$D apply -y -f llm.yaml
gw="http://127.0.0.1:$(cat "$DETENTE_HOME/detente.gateway")"
echo "== load on the service (3 clients through the gateway at $gw)"
( for c in 1 2 3; do
    ( while :; do curl -s -o /dev/null "$gw/v1/completions" \
        -d '{"model": "fake-llm", "max_tokens": 10}'; done ) &
  done; wait ) &
load_pid=$!
for _ in $(seq 60); do
  [ "$($D services -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"][0]["ready"])')" -ge 2 ] && break
  sleep 0.5
done
$D services
$D queue
echo "== kill one replica's server process: it is replaced"
pid=$(curl -s "$gw/llm/who" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
kill -9 "$pid"
sleep 4
$D services
echo "== the service goes: its GPUs return, and the training job resumes"
kill $load_pid 2>/dev/null || true
pkill -f "curl -s -o /dev/null $gw" 2>/dev/null || true
load_pid=
$D delete -y service llm
for _ in $(seq 60); do
  grep -q "restart count 1" borrower.out 2>/dev/null && break
  sleep 0.5
done
$D queue
cat borrower.out
