#!/bin/bash
# The pod launcher without a Python interpreter (detente.executors.local): what the
# Python shim (detente.executors.shim) does, for pods that run as the daemon's own
# user (single-user mode), at a tenth of its cost per pod (bash, tee, the tasks).
#
# Contract (as the shim's): the pod's tasks run with the job's environment alone
# (read from L_ENVFILE, NUL-separated), in L_CWD, their output appended (or, with
# L_TRUNC=1, truncated first) to L_OUT/L_ERR and copied to the pod's own log L_LOG;
# the exit code of the first failing task (128+N if killed by signal N) is written to
# L_EXIT atomically, retried while the disk is full; a pod that cannot start writes 1
# and its reason beside it (.reason). It outlives signals sent to its group (a handler,
# not an ignore, so tasks get the default action). Root: cgroups of its own with
# L_MEM bytes and L_CPU milli-CPUs (v1 or v2); an OOM kill leaves a .oom marker.
# L_NTASKS=0 holds the node until SIGTERM/SIGINT/SIGHUP (exit 0). L_STEPS names the
# batch step's steps file (srun records there); its batch shell's pid goes to .batch.
set -u
stem=${L_EXIT%.exit}

write_exit() {  # atomically; while the disk is full, retry every second
    until { printf '%s\n' "$1" >"$L_EXIT.tmp" && mv -f -- "$L_EXIT.tmp" "$L_EXIT"; } 2>/dev/null
    do sleep 1; done
}

fail() {
    printf 'detente: pod could not start: %s\n' "$1" >&3
    printf '%s' "$1" >"$stem.reason"
    write_exit 1
    exit 1
}

for sig in HUP INT QUIT TERM USR1 USR2 ALRM VTALRM PROF URG WINCH XCPU XFSZ IO PWR; do
    trap ':' "$sig"
done
exec 3>>"$L_LOG" || exit 1

if [ "$L_NTASKS" = 0 ]; then  # a holder: runs nothing, ends with the job
    trap 'write_exit 0; exit 0' TERM INT HUP
    while :; do sleep 86400 & wait $!; done
fi

cgroups=()
cg_dir() {  # the cgroup folder of controller $1 for this process (v1 or v2), or nothing
    local ids ctrls path
    while IFS=: read -r ids ctrls path; do
        if [[ ",$ctrls," == *",$1,"* ]]; then echo "/sys/fs/cgroup/$1${path%/}"; return; fi
        if [ -z "$ctrls" ] && grep -qw "$1" /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
            echo "/sys/fs/cgroup${path%/}"; return
        fi
    done </proc/self/cgroup
}
cg_join() {  # controller, then file=value pairs (the files a version has are written)
    local ctl=$1 base d kv; shift
    base=$(cg_dir "$ctl")
    if [ -z "$base" ]; then echo "detente: $ctl limit not enforced: no $ctl controller" >&3; return; fi
    d="$base/detente-$DETENTE_POD_TOKEN"
    if ! mkdir -p "$d" 2>/dev/null; then echo "detente: $ctl limit not enforced: $d" >&3; return; fi
    for kv in "$@"; do [ -e "$d/${kv%%=*}" ] && echo "${kv#*=}" >"$d/${kv%%=*}"; done
    echo $$ >"$d/cgroup.procs" && cgroups+=("$d")
}
if [ "$EUID" = 0 ]; then
    [ "${L_MEM:-0}" != 0 ] && cg_join memory "memory.max=$L_MEM" "memory.limit_in_bytes=$L_MEM"
    if [ "${L_CPU:-0}" != 0 ]; then
        quota=$(( L_CPU * 100 )); [ "$quota" -lt 1000 ] && quota=1000
        cg_join cpu "cpu.max=$quota 100000" "cpu.cfs_quota_us=$quota"
    fi
fi

umask 077
cd -- "$L_CWD" 2>/dev/null || fail "No such file or directory: $L_CWD"
for f in "$L_OUT" "$L_ERR"; do
    if [ "${L_TRUNC:-0}" = 1 ]; then why=$({ : >"$f"; } 2>&1); else why=$({ : >>"$f"; } 2>&1); fi ||
        fail "cannot open output $f: ${why##*: }"
done
# The writers ignore the job's signals: a SIGTERM must not cut off the tasks' last words.
quiet="trap '' HUP INT QUIT TERM USR1 USR2 ALRM"
exec 4> >(eval "$quiet"; exec tee -a -- "$L_OUT" >&3)
tees=($!)
if [ "$L_OUT" = "$L_ERR" ]; then exec 5>&4; else
    exec 5> >(eval "$quiet"; exec tee -a -- "$L_ERR" >&3); tees+=($!)
fi

mapfile -d '' jobenv <"$L_ENVFILE"
pids=()
for ((i = 0; i < L_NTASKS; i++)); do
    r=$((L_BASE + i))
    extra=(RANK=$r LOCAL_RANK=$i SLURM_PROCID=$r SLURM_LOCALID=$i)
    [ -n "${L_STEPS:-}" ] && extra+=(DETENTE_STEPS_FILE="$L_STEPS")
    env -i "${jobenv[@]}" "${extra[@]}" /bin/bash "$L_SCRIPT" "$@" \
        </dev/null >&4 2>&5 3>&- 4>&- 5>&- &
    pids+=($!)
done
[ -n "${L_STEPS:-}" ] && [ ${#pids[@]} -gt 0 ] && printf '%s' "${pids[0]}" >"$stem.batch"

code=0
for p in "${pids[@]}"; do
    while :; do  # a trapped signal interrupts wait: wait again until the task is gone
        wait "$p"; rc=$?
        kill -0 "$p" 2>/dev/null || break
    done
    [ "$code" = 0 ] && [ "$rc" != 0 ] && code=$rc
done
exec 4>&- 5>&-
for t in "${tees[@]}"; do wait "$t" 2>/dev/null; done

for d in "${cgroups[@]}"; do
    if grep -qE '^oom_kill [1-9]' "$d/memory.events" "$d/memory.oom_control" 2>/dev/null; then
        echo oom >"$stem.oom"
        echo "detente: out of memory: the job exceeded its --mem" >&3
    fi
    echo $$ >"${d%/*}/cgroup.procs" 2>/dev/null
    rmdir "$d" 2>/dev/null
done
write_exit "$code"
exit "$code"
