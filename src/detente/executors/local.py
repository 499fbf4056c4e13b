"""The local executor: each pod of a job is a process group on this machine.

Contract: `launch` returns once every pod's shim is running; a pod's end is read from
the exit file its shim writes (so it is known even if the control plane was down when
the pod ended). `find` locates a pod's process by the token in its environment, for
re-adoption after a crash. Processes are identified by (pid, start time): a reused
pid never passes for a pod.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from detente.executors.base import PodLaunch

TOKEN_VAR = "DETENTE_POD_TOKEN"


def proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def pod_log(exit_file: Path) -> Path:
    """Where a pod's own log is kept: beside its exit file."""
    return exit_file.with_suffix(".log")


def alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and proc_start(pid) == start


class LocalExecutor:
    """`detente.executors.base.Executor` for processes on this machine."""

    @staticmethod
    def alive(pid: int | None, start: int | None) -> bool:
        return alive(pid, start)

    def launch(self, pod: PodLaunch) -> tuple[int, int]:
        """Starts ``pod``'s shim in a new session; returns (pid, start time). OSError if
        its output cannot be opened or its working directory does not exist."""
        # The output's folder is the user's to make (sbatch does not create it either).
        pod.exit_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**pod.env, TOKEN_VAR: pod.token}
        cmd = [sys.executable, "-m", "detente.executors.shim", str(pod.exit_file)]
        cmd += [str(pod.ntasks), str(pod.rank * pod.ntasks), str(pod_log(pod.exit_file)), "--"]
        cmd += ["/bin/bash", str(pod.script), *pod.args]
        with pod.stdout.open("ab") as out:
            err = out if pod.stderr == pod.stdout else pod.stderr.open("ab")
            try:
                p = subprocess.Popen(
                    cmd, env=env, cwd=pod.cwd, stdout=out, stderr=err,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            finally:
                if err is not out:
                    err.close()
        start = proc_start(p.pid)
        return p.pid, start if start is not None else -1

    @staticmethod
    def exit_code(exit_file: Path) -> int | None:
        try:
            return int(exit_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def signal(pid: int | None, start: int | None, sig: signal.Signals) -> None:
        """Signals the pod's whole process group, if it is still that process."""
        if pid is not None and alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)

    @staticmethod
    def reap() -> None:
        """Collects ended children so they do not linger as zombies."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    @staticmethod
    def find(tokens: set[str]) -> dict[str, tuple[int, int]]:
        """token → (pid, start) for live processes carrying one of ``tokens``."""
        found: dict[str, tuple[int, int]] = {}
        if not tokens:
            return found
        prefix = TOKEN_VAR.encode() + b"="
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                env = (d / "environ").read_bytes()
            except OSError:
                continue
            for item in env.split(b"\0"):
                if item.startswith(prefix):
                    tok, pid = item[len(prefix) :].decode(), int(d.name)
                    start = proc_start(pid)
                    # Tasks inherit the token; the shim is the one leading its group.
                    if tok in tokens and start is not None and _leader(pid):
                        found[tok] = (pid, start)
                    break
        return found


def _leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
