#!/usr/bin/env bash
# detente's own local Slurm, for its Slurm tests, conformance suite and benchmarks
# (learned from ../shared/peers/slurm; this copy is the project's).
#
# Install, configure and start a single-machine Slurm 22.05 (Debian 12) cluster
# with MANY virtual nodes (one slurmd per node, all on 127.0.0.1, one port each),
# fake GPUs as GRES, a tree topology, cons_tres + backfill + multifactor.
#
# Everything (config, state, logs, pid files, munge key/socket) lives under
# $SLURMPEER_DIR (default /tmp/detente-slurm). No systemd, nothing under /etc/slurm
# is used, only loopback traffic. Idempotent: re-running stops the processes the
# previous run started (by PID file, via stop.sh), rewrites the config for the
# requested size and starts fresh (clean state, job ids restart at 1).
#
# Usage:  setup.sh [NODES] [GPUS_PER_NODE]
# Env:    SLURMPEER_DIR=/tmp/detente-slurm  NODES=16  GPUS=8  CPUS=64  MEM_MB=1024000
#         LEAF=4 (nodes per leaf switch)  SPINE_FANOUT=0 (0 = one root switch;
#         N = group N leaf switches under one spine, then one root over spines)
#         CTLD_PORT=18817  NODE_BASE_PORT=18900 (node i listens on base+i)
#         SCHED_PARAMS (SchedulerParameters; set it to "" for Slurm defaults),
#         SCHEDULER=sched/backfill (or sched/builtin)
#         RESTD=1 also start slurmrestd on a unix socket (rest_auth/local)
#         RETURN_TO_SERVICE=2 (slurm.conf ReturnToService)
#         SKIP_INSTALL=1 do not call apt-get
# After it returns:  source $SLURMPEER_DIR/env.sh ; sinfo ; sbatch ...
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd /   # the caller's cwd may be $D/out, which is recreated below
D="${SLURMPEER_DIR:-/tmp/detente-slurm}"
NODES="${1:-${NODES:-16}}"
GPUS="${2:-${GPUS:-8}}"
CPUS="${CPUS:-64}"
MEM_MB="${MEM_MB:-1024000}"
LEAF="${LEAF:-4}"
SPINE_FANOUT="${SPINE_FANOUT:-0}"
CTLD_PORT="${CTLD_PORT:-18817}"
NODE_BASE_PORT="${NODE_BASE_PORT:-18900}"
SCHEDULER="${SCHEDULER:-sched/backfill}"
SCHED_PARAMS="${SCHED_PARAMS-bf_interval=1,bf_continue,bf_resolution=60,bf_window=1440,default_queue_depth=1000,bf_max_job_test=1000}"
RESTD="${RESTD:-0}"
# 2: a DOWN node returns when its slurmd registers (at once here: every slurmd runs);
# 1: a node an admin set DOWN stays down until resumed (what a test of node loss needs).
RETURN_TO_SERVICE="${RETURN_TO_SERVICE:-2}"
SLURMD_DEBUG="${SLURMD_DEBUG:-error}"
CTLD_DEBUG="${CTLD_DEBUG:-info}"

log() { echo "[setup.sh] $*" >&2; }

# ---------------------------------------------------------------- install
need_pkgs=()
for p in munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins slurmrestd; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})) && [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  # Parallel test workers may all get here on a fresh machine: one installs at a time
  # (apt-get holds dpkg's lock and would fail the others).
  exec 9>/tmp/detente-slurm-install.lock
  flock 9
  log "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # policy-rc.d / no systemd: the postinst scripts cannot start the system
  # services, which is what we want (we start our own instances below).
  apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
  flock -u 9
fi
# slurm-wlm-emulator (Debian's "front-end" build) takes over /usr/sbin/slurmctld
# via alternatives and is unusable (its shared libslurmfull lacks front-end
# support). We never call /usr/sbin/slurm{ctld,d} anyway: see bin/ links below.
for b in /usr/sbin/slurmctld-wlm /usr/sbin/slurmd-wlm /usr/sbin/slurmstepd-wlm; do
  [[ -x "$b" ]] || { echo "missing $b (is slurmctld/slurmd installed?)" >&2; exit 1; }
done

# ---------------------------------------------------------------- stop old
if [[ -d "$D/run" ]]; then
  SLURMPEER_DIR="$D" bash "$HERE/stop.sh" || true
fi

# ---------------------------------------------------------------- layout
if ((NODES < 1)); then echo "NODES must be >= 1" >&2; exit 1; fi
if ((NODE_BASE_PORT + NODES >= 32768)); then
  echo "node ports would reach the ephemeral range; lower NODE_BASE_PORT/NODES" >&2; exit 1
fi
# Raise the fd limit: slurmctld keeps one connection per slurmd during fan-out.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

rm -rf "$D/state" "$D/spool" "$D/log" "$D/run" "$D/out" "$D/rest"
mkdir -p "$D"/{etc,state,spool,log,run,out,bin,dev,munge,munge-sock}
chmod 755 "$D" "$D/munge-sock"
chmod 700 "$D/munge"
cd "$D"

# Slurm decides "am I slurmctld / slurmd / slurmstepd" from basename(argv[0]).
# Debian's real binaries are named *-wlm; started under that name, slurmctld
# silently drops every Gres= from slurm.conf (node_conf.c: run_in_daemon
# ("slurmctld,slurmd")). So start them through links with the canonical names.
ln -sfn /usr/sbin/slurmctld-wlm  "$D/bin/slurmctld"
ln -sfn /usr/sbin/slurmd-wlm     "$D/bin/slurmd"
ln -sfn /usr/sbin/slurmstepd-wlm "$D/bin/slurmstepd"

# Fake GPU "device files": 22.05 drops GPUs without File= (gres.c
# _find_fileless_gres) and only stat()s them for scheduling, but slurmstepd sets
# CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS only for char/block devices. So make
# char nodes aliasing /dev/null (major 1, minor 3); fall back to plain files
# (GPUs still schedule, IDX shows in `scontrol show job -d`, just no env var).
for ((g = 0; g < GPUS; g++)); do
  rm -f "$D/dev/nvidia$g"
  mknod "$D/dev/nvidia$g" c 1 3 2>/dev/null || : >"$D/dev/nvidia$g"
done

HOST="$(hostname -s)"
LAST=$((NODE_BASE_PORT + NODES))

# ---------------------------------------------------------------- munge
if [[ ! -s "$D/munge/munge.key" ]]; then
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$D/munge/munge.key"
munged --force --socket="$D/munge-sock/munge.socket" --key-file="$D/munge/munge.key" \
  --log-file="$D/log/munged.log" --pid-file="$D/run/munged.pid" \
  --seed-file="$D/munge/munged.seed" --num-threads=16
for _ in $(seq 50); do [[ -S "$D/munge-sock/munge.socket" ]] && break; sleep 0.1; done
munge -S "$D/munge-sock/munge.socket" -n | unmunge -S "$D/munge-sock/munge.socket" >/dev/null

# ---------------------------------------------------------------- slurm.conf
GRES_LINE=""; GRESTYPES=""
if ((GPUS > 0)); then GRES_LINE="Gres=gpu:$GPUS"; GRESTYPES="GresTypes=gpu"; fi
cat >"$D/etc/slurm.conf" <<EOF
# generated by $HERE/setup.sh : $NODES nodes x $GPUS GPUs, leaf=$LEAF
ClusterName=detente
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((NODE_BASE_PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$D/munge-sock/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
SlurmctldDebug=$CTLD_DEBUG
SlurmdDebug=$SLURMD_DEBUG
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=$SCHEDULER
${SCHED_PARAMS:+SchedulerParameters=$SCHED_PARAMS}
# multifactor loads without slurmdbd, but the age and fair-share factors are
# ignored ("PriorityWeightAge can only be used with SlurmDBD"): equal priority
# => FIFO by job id. Partition/job-size/nice factors still apply.
PriorityType=priority/multifactor
PriorityWeightPartition=1000
TopologyPlugin=topology/tree
$GRESTYPES
ReturnToService=$RETURN_TO_SERVICE
SlurmdParameters=config_overrides
MaxJobCount=50000
MinJobAge=300
SlurmdTimeout=300
MessageTimeout=30
NodeName=DEFAULT CPUs=$CPUS RealMemory=$MEM_MB $GRES_LINE State=UNKNOWN
NodeName=n[1-$NODES] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[$((NODE_BASE_PORT + 1))-$LAST]
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# ---------------------------------------------------------------- gres.conf
if ((GPUS > 0)); then
  cat >"$D/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=n[1-$NODES] Name=gpu File=$D/dev/nvidia[0-$((GPUS - 1))]
EOF
else
  : >"$D/etc/gres.conf"
fi

# ---------------------------------------------------------------- topology.conf
python3 - "$NODES" "$LEAF" "$SPINE_FANOUT" >"$D/etc/topology.conf" <<'EOF'
import sys
n, leaf, fan = (int(x) for x in sys.argv[1:4])
leaves = []
for s in range((n + leaf - 1) // leaf):
    lo, hi = s * leaf + 1, min(n, (s + 1) * leaf)
    print(f"SwitchName=leaf{s} Nodes=n[{lo}-{hi}]" if hi > lo else f"SwitchName=leaf{s} Nodes=n{lo}")
    leaves.append(s)
L = len(leaves)
if L == 1:
    pass
elif fan <= 0 or fan >= L:
    print(f"SwitchName=root Switches=leaf[0-{L-1}]")
else:
    spines = []
    for k in range((L + fan - 1) // fan):
        lo, hi = k * fan, min(L, (k + 1) * fan) - 1
        print(f"SwitchName=spine{k} Switches=leaf[{lo}-{hi}]" if hi > lo else f"SwitchName=spine{k} Switches=leaf{lo}")
        spines.append(k)
    print(f"SwitchName=root Switches=spine[0-{len(spines)-1}]")
EOF

cat >"$D/env.sh" <<EOF
export SLURM_CONF=$D/etc/slurm.conf
export SLURMPEER_DIR=$D
EOF
export SLURM_CONF="$D/etc/slurm.conf"

# ---------------------------------------------------------------- start
log "starting slurmctld ($NODES nodes x $GPUS gpus, port $CTLD_PORT)"
"$D/bin/slurmctld" -f "$SLURM_CONF" -i
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
scontrol ping | grep -q UP || { echo "slurmctld did not come up; see $D/log/slurmctld.log" >&2; exit 1; }

log "starting $NODES slurmd (ports $((NODE_BASE_PORT + 1))-$LAST)"
for ((i = 1; i <= NODES; i++)); do
  mkdir -p "$D/spool/n$i"
  "$D/bin/slurmd" -f "$SLURM_CONF" -N "n$i" -d "$D/bin/slurmstepd"
done

# wait until every node is idle
deadline=$((SECONDS + 60 + NODES / 4))
while :; do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | wc -l)
  ((idle >= NODES)) && break
  if ((SECONDS > deadline)); then
    echo "only $idle/$NODES nodes idle after wait; sinfo -R:" >&2; sinfo -R >&2; exit 1
  fi
  sleep 0.5
done
log "cluster up: $(sinfo -h -o '%D nodes %T gres=%G' | tr '\n' ' ')"

if [[ "$RESTD" == 1 ]]; then
  # - refuses to run as root ("should not be run as the root user") -> -u nobody
  #   (it binds after setuid, so the socket dir must be writable by nobody);
  # - rest_auth/local = UNIX-socket peer credentials (TCP would need auth/jwt);
  # - the default plugin set includes openapi/dbv0.0.3x which is fatal without
  #   slurmdbd ("slurm not configured with slurmdbd") -> load only v0.0.38.
  mkdir -p "$D/rest"; chown nobody:nogroup "$D/rest"
  nohup /usr/sbin/slurmrestd -f "$SLURM_CONF" -a rest_auth/local -s openapi/v0.0.38 \
    -u nobody "unix:$D/rest/slurmrestd.sock" >"$D/log/slurmrestd.log" 2>&1 &
  echo $! >"$D/run/slurmrestd.pid"
  for _ in $(seq 50); do [[ -S "$D/rest/slurmrestd.sock" ]] && break; sleep 0.1; done
  log "slurmrestd on unix:$D/rest/slurmrestd.sock (pid $(cat "$D/run/slurmrestd.pid"))"
  log "try: runuser -u nobody -- curl -s --unix-socket $D/rest/slurmrestd.sock http://localhost/slurm/v0.0.38/ping"
fi
echo "source $D/env.sh"
