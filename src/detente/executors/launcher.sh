#!/bin/bash
# The pod launcher without a Python interpreter (detente.executors.local): what the
# Python shim (detente.executors.shim) does, for pods that run as the daemon's own
# user (single-user mode), at a tenth of its cost per pod (bash, tee, the tasks).
#
# Contract (as the shim's): the pod's tasks run with the job's environment alone
# (NUL-separated, on fd 9, or from L_ENVFILE when set), in L_CWD, their output appended (or, with
# L_TRUNC=1, truncated first) to L_OUT/L_ERR and copied to the pod's own log L_LOG;
# the exit code of the first failing task (128+N if killed by signal N) is written to
# L_EXIT as "CODE\n" (whole once its newline is there), retried while the disk is
# full; a pod that cannot start writes 1 and its reason beside it (.reason). It
# outlives signals sent to its group (a handler, not an ignore, so tasks get the
# default action). It joins the cgroups named in L_CGROUPS (root: made by the control
# plane with the job's limits, v1 or v2); an OOM kill leaves a .oom marker.
# L_NTASKS=0 holds the node until SIGTERM/SIGINT/SIGHUP (exit 0). L_STEPS names the
# batch step's steps file (srun records there); its batch shell's pid goes to .batch.
set -u
stem=${L_EXIT%.exit}

write_exit() {  # one write of "CODE\n" (a reader takes it only whole: with its newline);
    # while the disk is full, retry every second (not once its folder is gone: that
    # does not heal). No rename: mv was a process per pod.
    until printf '%s\n' "$1" 2>/dev/null >"$L_EXIT"; do
        [ -d "${L_EXIT%/*}" ] || return 0
        sleep 1
    done
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
    exec 9<&-
    trap 'write_exit 0; exit 0' TERM INT HUP
    while :; do sleep 86400 & wait $!; done
fi

# The pod's cgroups (root, with limits) were made by the control plane with their
# limits written (detente.executors.cgroups: a mkdir here was a process per pod);
# the launcher joins them, and its tasks with it.
# v1: "0" into `tasks` moves this (single-threaded) shell without the kernel's global
# threadgroup lock, which waits for an RCU grace period when no move ran lately
# (≈ 6 ms against 0.15); v2 has no `tasks`: the pid into cgroup.procs.
join() { if [ -e "$1/tasks" ]; then echo 0 >"$1/tasks"; else echo $$ >"$1/cgroup.procs"; fi; }
cgroups=()
IFS=: read -r -a made <<<"${L_CGROUPS:-}"
for d in "${made[@]}"; do
    if { join "$d"; } 2>/dev/null; then cgroups+=("$d"); else
        echo "detente: ${d##*/} not joined: limit not enforced" >&3
    fi
done

umask 077
cd -- "$L_CWD" 2>/dev/null || fail "No such file or directory: $L_CWD"
for f in "$L_OUT" "$L_ERR"; do  # the error's words are asked for only on failure
    if [ "${L_TRUNC:-0}" = 1 ]; then op=">"; else op=">>"; fi
    eval "{ : $op\"\$f\"; } 2>/dev/null" && continue
    why=$(eval "{ : $op\"\$f\"; } 2>&1")
    fail "cannot open output $f: ${why##*: }"
done
# Output goes to the pod's log and is copied to the job's file by tee, unless that
# file is /dev/null (nothing to copy: a process per pod saved). The writers ignore the
# job's signals: a SIGTERM must not cut off the tasks' last words.
quiet="trap '' HUP INT QUIT TERM USR1 USR2 ALRM"
tees=()
if [ "$L_OUT" = /dev/null ]; then exec 4>&3; else
    exec 4> >(eval "$quiet"; exec tee -a -- "$L_OUT" >&3); tees+=($!)
fi
if [ "$L_OUT" = "$L_ERR" ]; then exec 5>&4; elif [ "$L_ERR" = /dev/null ]; then exec 5>&3; else
    exec 5> >(eval "$quiet"; exec tee -a -- "$L_ERR" >&3); tees+=($!)
fi

if [ -n "${L_ENVFILE:-}" ]; then mapfile -d '' jobenv <"$L_ENVFILE"; else
    mapfile -d '' jobenv <&9; exec 9<&-  # a memory file the control plane passed
fi
pids=()
for ((i = 0; i < L_NTASKS; i++)); do
    r=$((L_BASE + i))
    extra=(RANK=$r LOCAL_RANK=$i SLURM_PROCID=$r SLURM_LOCALID=$i)
    [ -n "${L_STEPS:-}" ] && extra+=(DETENTE_STEPS_FILE="$L_STEPS")
    (   # The job's environment alone, without an env process: the launcher's
        # variables — exactly those local.py gives it — unset in the task's subshell. A
        # name bash cannot export (say A-B) falls back to env -i.
        script=$L_SCRIPT
        unset "${!L_@}" DETENTE_POD_TOKEN PATH PWD OLDPWD
        export "${jobenv[@]}" "${extra[@]}" 2>/dev/null && exec /bin/bash "$script" "$@"
        exec /usr/bin/env -i "${jobenv[@]}" "${extra[@]}" /bin/bash "$script" "$@"
    ) </dev/null >&4 2>&5 3>&- 4>&- 5>&- &
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

oom_killed() {  # whether the group's memory events show a kill (no grep: builtins)
    local k v f
    for f in "$1/memory.events" "$1/memory.oom_control"; do
        [ -r "$f" ] || continue
        while read -r k v; do [ "$k" = oom_kill ] && [ "${v:-0}" != 0 ] && return 0; done <"$f"
    done
    return 1
}
for d in "${cgroups[@]}"; do  # the control plane removes the groups once this ends
    if oom_killed "$d"; then
        echo oom >"$stem.oom"
        echo "detente: out of memory: the job exceeded its --mem" >&3
    fi
    { join "${d%/*}"; } 2>/dev/null
done
write_exit "$code"
exit "$code"
