"""Processes on this machine, known by (pid, start time) so a reused pid never passes
for a pod's, and by the token every pod's processes carry in their environment."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

TOKEN_VAR = "DETENTE_POD_TOKEN"


def proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if gone or a zombie."""
    try:  # os.open, not Path.read_text: this is asked for every pod, at every start
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = stat[stat.rindex(b")") + 2 :].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return pid is not None and start is not None and proc_start(pid) == start


def _has_token(pid: int, token: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TOKEN_VAR}={token}".encode() in env.split(b"\0")


def kill_pod(token: str) -> int:
    """SIGKILLs every process of a pod: all carry its token (the shim puts it in every
    task's environment, and children inherit it), also a task that left the session.
    Returns how many were signalled."""
    killed = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid() and _has_token(int(d.name), token):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(d.name), signal.SIGKILL)
                killed += 1
    return killed


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def find(tokens: set[str]) -> dict[str, tuple[int, int]]:
    """token → (pid, start) for live processes carrying one of ``tokens``: the one
    leading its process group (tasks inherit the token; the pod's first process leads)."""
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
                if tok in tokens and start is not None and _leader(pid):
                    found[tok] = (pid, start)
                break
    return found
