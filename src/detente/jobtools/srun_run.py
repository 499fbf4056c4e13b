"""Running a step: start the tasks, forward signals, wait, report (`srun.main`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import BinaryIO

from detente.api.hostlist import compress
from detente.jobtools import alloc
from detente.jobtools.srun import (
    FORWARD,
    NO_EFFECT,
    STEP_FD,
    Channel,
    SrunError,
    Task,
    _export,
    layout,
    normalize,
    parser,
    task_env,
)


def _label(src: BinaryIO, dest: BinaryIO, rank: int) -> None:
    prefix = f"{rank}: ".encode()
    for line in iter(src.readline, b""):
        dest.write(prefix + line)
        dest.flush()
    src.close()


Started = tuple[list[subprocess.Popen[bytes]], list[threading.Thread]]


def start(a: argparse.Namespace, tasks: list[Task], step: int) -> Started:
    """The step's tasks, started in the pod's process group (its stop reaches them),
    and the threads labelling their output (``-l``)."""
    base = _export(a.export, dict(os.environ))
    fds = (int(os.environ[STEP_FD]),) if os.environ.get(STEP_FD, "").isdigit() else ()
    procs, pipes = [], []
    out = subprocess.PIPE if a.label else None
    for t in tasks:
        env = task_env(base, tasks, t, step)
        if a.cpus_per_task:
            env["SLURM_CPUS_PER_TASK"] = f"{a.cpus_per_task:g}"
        try:
            p = subprocess.Popen(a.command, env=env, cwd=a.chdir, stdout=out, stderr=out,
                                 stdin=subprocess.PIPE, pass_fds=fds)  # fmt: skip
        except OSError as e:
            for q in procs:
                q.kill()
            why = f"{t.share.node}: task {t.rank}: {e.strerror}: {a.command[0]}"
            raise SrunError(why) from None
        procs.append(p)
        if a.label:
            for src, dest in ((p.stdout, sys.stdout.buffer), (p.stderr, sys.stderr.buffer)):
                th = threading.Thread(target=_label, args=(src, dest, t.rank), daemon=True)
                th.start()
                pipes.append(th)
    th = threading.Thread(target=_broadcast, args=(procs,), daemon=True)
    th.start()
    return procs, pipes


def _broadcast(procs: list[subprocess.Popen[bytes]]) -> None:
    """srun's stdin to every task (Slurm's default ``--input=all``); a task that has
    ended or stopped reading loses only its own copy."""
    sinks = [p.stdin for p in procs if p.stdin is not None]
    try:
        while chunk := os.read(0, 65536):
            for w in list(sinks):
                try:
                    w.write(chunk)
                    w.flush()
                except OSError:
                    sinks.remove(w)
    except OSError:
        pass
    for w in sinks:
        with contextlib.suppress(OSError):
            w.close()


def wait(a: argparse.Namespace, tasks: list[Task], procs: list[subprocess.Popen[bytes]]) -> int:
    """Waits for every task (killing the rest at the first failure with ``-K``);
    reports failed tasks as Slurm's srun does; the highest exit code."""
    killed: set[int] = set()  # by srun itself (-K): their codes are not the step's
    codes: dict[int, int] = {}
    left = dict(enumerate(procs))
    while left:
        pid, status = os.wait()
        i = next((k for k, p in left.items() if p.pid == pid), None)
        if i is None:
            continue
        left.pop(i).returncode = os.waitstatus_to_exitcode(status)
        rc = procs[i].returncode
        codes[i] = 128 - rc if rc < 0 else rc
        if rc != 0:
            t = tasks[i]
            why = f"Exited with exit code {rc}" if rc > 0 else signal.strsignal(-rc)
            print(f"srun: error: {t.share.node}: task {t.rank}: {why}", file=sys.stderr)
            if a.kill_on_bad_exit and i not in killed:
                for k, p in left.items():
                    # Not Popen.kill: it polls first, reaping the child under os.wait.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
                    killed.add(k)
    return max((c for i, c in codes.items() if i not in killed), default=0)


def main(argv: list[str]) -> int:
    a = parser().parse_args(normalize(argv))
    try:
        return _run(a)
    except SrunError as e:
        print(f"srun: error: {e}", file=sys.stderr)
        return 1


def _run(a: argparse.Namespace) -> int:
    if a.het_group is not None:
        raise SrunError("--het-group: heterogeneous jobs are not supported by detente")
    for opt in NO_EFFECT:
        if getattr(a, f"ignored_{opt[2:].replace('-', '_')}") is not None:
            print(f"srun: warning: {opt} has no effect on detente", file=sys.stderr)
    if not a.command:
        raise SrunError("no command given to execute")
    if alloc.ENV not in os.environ:
        raise SrunError("not inside a detente job; `detente srun` allocates and runs")
    tasks = layout(a, alloc.from_env(os.environ[alloc.ENV]))
    nodes = list(dict.fromkeys(t.share.node for t in tasks))
    chan = Channel(a.job_name or os.path.basename(a.command[0]), compress(nodes), len(tasks))
    procs, pipes = start(a, tasks, chan.step)

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signum)

    for sig in FORWARD:
        signal.signal(sig, forward)
    code = wait(a, tasks, procs)
    for th in pipes:
        th.join()
    chan.end(code)
    return code
