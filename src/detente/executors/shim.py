"""The process that stands for one pod.

``python -I -m detente.executors.shim CONFIG``

CONFIG (JSON, written by the executor in the daemon's private state directory) names
the script, its arguments and environment, the Unix account to run as, the working
directory, the job's ``--output``/``--error`` paths, the pod's own log and its exit
file. The shim:

1. opens the output files *as the job's user* (a writer process per file running
   ``cat >> FILE`` under the user's uid, gids and umask), so a job writes only where
   its user may, and a FIFO or slow device blocks this pod, never the control plane;
2. joins cgroups of its own with the job's memory limit (``--mem``) and CPU quota
   (tasks × ``--cpus-per-task``), root only, v1 or v2; exceeding the memory ends the
   job ``OUT_OF_MEMORY``;
3. hands the script to ``NTASKS`` copies of bash through a memfd (the script stays in
   the daemon's private directory, which the user cannot read), as the user;
4. copies their output to the writers and to the pod's own log (the API serves logs
   from there, never from a user-given path), waits for all, and writes the pod's exit
   code to the exit file atomically (write, then rename), retrying while the disk is
   full so a finished pod is never taken for a lost one. A pod that could not start
   writes exit code 1 and its reason beside the exit file (``.reason``).

It runs isolated (``-I``: no PYTHON* variables, no user site) with an environment of
its own; the job's environment reaches only the tasks. It leads its own session, so it
outlives a crash of the control plane, which re-adopts it by the token in its
environment. SIGTERM sent to the process group reaches the tasks; the shim itself
keeps waiting so it can record how they ended.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from detente.executors import cgroups
from detente.executors.steps import ENV as STEP_FD
from detente.executors.steps import StepServer

#: Asynchronous signals a pod may be sent (never the synchronous faults, never KILL/STOP).
FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
             "SIGVTALRM", "SIGPROF", "SIGURG", "SIGWINCH", "SIGTSTP", "SIGTTIN", "SIGTTOU",
             "SIGXCPU", "SIGXFSZ", "SIGIO", "SIGPWR")  # fmt: skip


class LaunchError(Exception):
    pass


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by signal N → 128 + N, as shells report


def _pump(src: int, dests: list[int]) -> None:
    while chunk := os.read(src, 65536):
        for d in list(dests):
            try:
                os.write(d, chunk)
            except OSError:  # a writer that died (or a full disk) loses only its copy
                dests.remove(d)
    os.close(src)


def _run_as(cfg: dict[str, Any]) -> dict[str, Any]:
    """Popen keywords that make a child the job's user (uid, gid, groups, umask)."""
    user = cfg.get("user")
    if not user:
        return {"umask": 0o077}
    return {"user": user["uid"], "group": user["gid"], "extra_groups": user["groups"],
            "umask": user.get("umask", 0o077)}  # fmt: skip


def _writer(path: str, cfg: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A process of the job's user appending its stdin to ``path`` (truncated first
    with ``truncate``); LaunchError if the user may not open it."""
    kw = _run_as(cfg)
    opening = ': >"$1"' if cfg.get("truncate") else ': >>"$1"'
    check = subprocess.run(["/bin/sh", "-c", opening, "sh", path], cwd=cfg["cwd"],
                           capture_output=True, env=cfg["env"], **kw)  # fmt: skip
    if check.returncode != 0:
        why = check.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["denied"]
        raise LaunchError(f"cannot open output {path}: {why[0]}")
    # Its own process group: a SIGTERM to the pod must not cut off the tasks' last words;
    # it ends when the shim closes its stdin (or dies).
    return subprocess.Popen(["/bin/sh", "-c", 'exec cat >>"$1"', "sh", path], cwd=cfg["cwd"],
                            stdin=subprocess.PIPE, env=cfg["env"], process_group=0,
                            **kw)  # fmt: skip


def _script_fd(path: str) -> int:
    """The script in a memfd the job's user can read through /dev/fd."""
    fd = os.memfd_create("detente-batch-script", 0)
    os.write(fd, Path(path).read_bytes())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _tasks(
    cfg: dict[str, Any], script: int, merged: bool, steps: StepServer | None
) -> list[subprocess.Popen[bytes]]:
    procs = []
    fds = (script,) if steps is None else (script, steps.theirs.fileno())
    for local in range(cfg["ntasks"]):
        env = dict(cfg["env"])
        if steps is not None:
            env[STEP_FD] = str(steps.theirs.fileno())
        rank = cfg["base"] + local
        env.update(RANK=str(rank), LOCAL_RANK=str(local), SLURM_PROCID=str(rank))
        env.update(SLURM_LOCALID=str(local))
        err = subprocess.STDOUT if merged else subprocess.PIPE
        try:
            p = subprocess.Popen(
                ["/bin/bash", f"/dev/fd/{script}", *cfg["args"]], env=env, cwd=cfg["cwd"],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                pass_fds=fds, **_run_as(cfg),
            )  # fmt: skip
        except OSError as e:
            for q in procs:
                q.kill()
            raise LaunchError(f"{e.strerror}: {e.filename or cfg['cwd']}") from None
        procs.append(p)
    return procs


def enter_cgroups(cfg: dict[str, Any], log: int) -> list[Path]:
    """Moves the shim (and so every task it starts) into cgroups of its own with the
    job's memory and CPU limits (`detente.executors.cgroups`); a limit that cannot be
    enforced is said in the pod's log."""
    made, warnings = cgroups.prepare(f"detente-{cfg['token']}", int(cfg.get("memory") or 0),
                                     int(cfg.get("cpu_milli") or 0))  # fmt: skip
    joined: list[Path] = []
    for d in made:
        try:
            (d / "cgroup.procs").write_text(str(os.getpid()))
            joined.append(d)
        except OSError as e:
            warnings.append(f"detente: {d.name} not joined: {e}")
    for w in warnings:
        os.write(log, f"{w}\n".encode())
    return joined


def leave_cgroups(groups: list[Path]) -> bool:
    """Whether a memory cgroup saw an out-of-memory kill; then moves back out and
    removes the groups."""
    oom = cgroups.out_of_memory(groups)
    for d in groups:
        with contextlib.suppress(OSError):
            (d.parent / "cgroup.procs").write_text(str(os.getpid()))
    cgroups.remove(groups)
    return oom


def hold() -> int:
    """A pod that holds its node for the job's steps: it runs nothing and ends, code
    0, when the job's end stops it (SIGTERM, SIGINT or SIGHUP; others are ignored,
    as a job's ``--signal`` is for its tasks)."""
    ends = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, ends)
    signal.sigwait(ends)
    return 0


def run(cfg: dict[str, Any], log: int) -> int:
    """Runs the pod; its exit code (the first failing task's, else 0)."""
    if cfg["ntasks"] == 0:
        return hold()
    outs = {cfg["stdout"]: None, cfg["stderr"]: None}
    writers = {p: _writer(p, cfg) for p in outs}
    merged = cfg["stdout"] == cfg["stderr"]
    script = _script_fd(cfg["script"])
    steps = StepServer(Path(cfg["steps"])) if cfg.get("steps") else None
    try:
        procs = _tasks(cfg, script, merged, steps)
        if steps is not None:  # where a --signal=B: finds the batch shell
            write_atomically(cfg["exit_file"][: -len(".exit")] + ".batch", str(procs[0].pid))
    finally:
        os.close(script)
        if steps is not None:
            steps.theirs.close()  # the tasks hold it now: the shim never writes to it
    code = _collect(cfg, log, procs, writers)
    if steps is not None:
        steps.finish()
    return code


def _collect(
    cfg: dict[str, Any], log: int, procs: list[subprocess.Popen[bytes]],
    writers: dict[str, subprocess.Popen[bytes]],
) -> int:  # fmt: skip
    """Copies the tasks' output to the writers and the pod's log until they end."""
    pumps = []
    for p in procs:
        pipes = ((p.stdout, cfg["stdout"]), (p.stderr, cfg["stderr"]))
        for pipe, path in pipes:
            if pipe is None:
                continue
            w: BinaryIO | None = writers[path].stdin
            dests = [log] + ([w.fileno()] if w is not None else [])
            t = threading.Thread(target=_pump, args=(os.dup(pipe.fileno()), dests))
            pipe.close()
            t.start()
            pumps.append(t)
    codes = [_code(p.wait()) for p in procs]
    for t in pumps:
        t.join()
    for wp in writers.values():
        if wp.stdin is not None:
            wp.stdin.close()
        wp.wait()
    return next((c for c in codes if c != 0), 0)


def write_atomically(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` (temp file, fsync, rename); while the disk is full it
    retries every second rather than leave the pod's end unrecorded."""
    while True:
        try:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            time.sleep(1.0)


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    # Signals sent to the pod's process group (SIGTERM, a job's --signal) are for its
    # tasks: the shim keeps waiting to record how they end. A handler, not SIG_IGN, so
    # that the tasks, after exec, get the default action.
    for name in FORWARDED:
        if (sig := getattr(signal, name, None)) is not None:
            signal.signal(sig, lambda *_: None)
    log = os.open(cfg["pod_log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    groups = enter_cgroups(cfg, log)
    try:
        code = run(cfg, log)
        if leave_cgroups(groups):  # Slurm's OUT_OF_MEMORY: the kernel killed a task
            write_atomically(cfg["exit_file"][: -len(".exit")] + ".oom", "oom")
            os.write(log, b"detente: out of memory: the job exceeded its --mem\n")
    except Exception as e:  # whatever it is, the pod's end and its reason are recorded
        why = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) else str(e)
        os.write(log, f"detente: pod could not start: {why}\n".encode())
        write_atomically(cfg["exit_file"][: -len(".exit")] + ".reason", why)
        code = 1
    write_atomically(cfg["exit_file"], f"{code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
