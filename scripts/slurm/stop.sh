#!/usr/bin/env bash
# Stop the Slurm peer started by setup.sh: only the processes whose PID files
# are under $SLURMPEER_DIR/run (slurmrestd, slurmd-*, slurmctld, munged), and
# only if the PID still belongs to the expected program. Never kills by name.
# Running jobs are cancelled first so that their slurmstepd processes exit.
set -uo pipefail
D="${SLURMPEER_DIR:-/tmp/detente-slurm}"
RUN="$D/run"
[[ -d "$RUN" ]] || { echo "[stop.sh] nothing to stop ($RUN missing)"; exit 0; }
export SLURM_CONF="$D/etc/slurm.conf"

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }
# $1 pidfile, $2 expected substring of /proc/PID/cmdline
pid_of() {
  local f="$1" want="$2" pid
  [[ -s "$f" ]] || return 1
  pid="$(tr -dc 0-9 <"$f")"
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$want" || return 1
  echo "$pid"
}

# 1. cancel jobs (so slurmstepd children of our slurmds end) if ctld is up
if pid_of "$RUN/slurmctld.pid" slurmctld >/dev/null; then
  if [[ "$(squeue -h -o %i 2>/dev/null | wc -l)" -gt 0 ]]; then
    scancel --partition=gpu 2>/dev/null || true
    for _ in $(seq 100); do
      [[ "$(squeue -h -t R,CG,PD -o %i 2>/dev/null | wc -l)" -eq 0 ]] && break
      sleep 0.2
    done
  fi
fi

stop_pids() { # pids...
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 100); do
    local any=0
    for p in "$@"; do alive "$p" && any=1; done
    ((any == 0)) && return 0
    sleep 0.1
  done
  for p in "$@"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  return 0
}

pids=()
p="$(pid_of "$RUN/slurmrestd.pid" slurmrestd)" && pids+=("$p")
for f in "$RUN"/slurmd-*.pid; do
  [[ -e "$f" ]] || continue
  p="$(pid_of "$f" slurmd)" && pids+=("$p")
done
((${#pids[@]})) && stop_pids "${pids[@]}"
echo "[stop.sh] stopped ${#pids[@]} slurmd/slurmrestd processes"
if p="$(pid_of "$RUN/slurmctld.pid" slurmctld)"; then stop_pids "$p"; echo "[stop.sh] stopped slurmctld $p"; fi
if p="$(pid_of "$RUN/munged.pid" munged)"; then stop_pids "$p"; echo "[stop.sh] stopped munged $p"; fi
rm -f "$RUN"/*.pid
exit 0
