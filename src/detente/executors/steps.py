"""The batch pod's step channel: how ``srun`` inside a job numbers and records steps.

The batch pod's shim opens a ``SOCK_SEQPACKET`` socket pair and passes one end to
the batch script (its fd number in ``DETENTE_STEP_FD``); every ``srun`` below it
inherits that end. An ``srun`` makes a pair of its own, sends ``start`` with one end
of it attached (SCM_RIGHTS) and reads its step id back on it; at its end it sends
``end`` with the exit code on the same pair. Contract: ids are 0, 1, 2, … in the
order steps start; one JSON line per ended step is appended to the steps file
(beside the pod's exit file, private to the daemon); a step whose ``srun`` vanished
without ``end``, or that still runs when the batch step ends, is recorded CANCELLED.
What a job sends is bounded and checked: it can only mislabel its own steps.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

ENV = "DETENTE_STEP_FD"
#: Steps recorded per batch step at most (Slurm's MaxStepCount default is 40,000).
MAX_STEPS = 10_000
_MSG = 8192


def _clean(text: Any, limit: int) -> str:
    s = str(text)[:limit]
    return "".join(c if c.isprintable() else "?" for c in s)


class StepServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._mine, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.theirs.set_inheritable(True)
        self._lock = threading.Lock()
        self._next = 0
        self._open: dict[int, dict[str, Any]] = {}
        self._followers: list[threading.Thread] = []
        threading.Thread(target=self._serve, name="steps", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self._mine, _MSG, 4)
            except OSError:
                return
            if not fds:
                continue
            reply = socket.socket(fileno=fds[0])
            for extra in fds[1:]:
                with contextlib.suppress(OSError):
                    socket.close(extra)
            self._start(reply, msg)

    def _start(self, reply: socket.socket, msg: bytes) -> None:
        try:
            req = json.loads(msg)
            rec = {"name": _clean(req.get("name", ""), 200),
                   "nodes": _clean(req.get("nodes", ""), 1000),
                   "ntasks": int(req.get("ntasks", 0)), "start": time.time()}  # fmt: skip
        except (ValueError, TypeError, AttributeError):
            reply.close()
            return
        with self._lock:
            if self._next >= MAX_STEPS:
                step = -1
            else:
                step, self._next = self._next, self._next + 1
                self._open[step] = rec
        with contextlib.suppress(OSError):
            reply.send(json.dumps({"step": step}).encode())
        if step < 0:
            reply.close()
            return
        t = threading.Thread(target=self._follow, args=(reply, step), daemon=True)
        self._followers.append(t)
        t.start()

    def _follow(self, reply: socket.socket, step: int) -> None:
        code: int | None = None
        try:
            end = json.loads(reply.recv(_MSG) or b"null")
            code = int(end["exit"]) if isinstance(end, dict) else None
        except (OSError, ValueError, TypeError, KeyError):
            code = None
        reply.close()
        self._record(step, code)

    def _record(self, step: int, code: int | None) -> None:
        with self._lock:
            rec = self._open.pop(step, None)
            if rec is None:
                return
            state = "CANCELLED" if code is None else "COMPLETED" if code == 0 else "FAILED"
            line = {"step": step, **rec, "end": time.time(), "exit_code": code, "state": state}
            with self.path.open("a") as f:
                f.write(json.dumps(line) + "\n")

    def finish(self, wait: float = 2.0) -> None:
        """Records the steps still open as CANCELLED (the batch step has ended); an
        ``end`` already sent is read first (for up to ``wait`` seconds in all)."""
        deadline = time.monotonic() + wait
        for t in list(self._followers):
            t.join(max(0.0, deadline - time.monotonic()))
        for step in sorted(self._open):
            self._record(step, None)


def read(path: Path, now: float | None = None) -> list[dict[str, Any]]:
    """The steps a pod recorded (bounded; malformed lines skipped): whole records (the
    Python shim's), or ``start``/``end`` events (``srun`` under the bash launcher),
    merged — a step started and never ended is CANCELLED, ended at ``now``."""
    out: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()[: 2 * MAX_STEPS]
    except OSError:
        return []
    for ln in lines:
        try:
            r = json.loads(ln)
            step = int(r["step"])
            if r.get("event") == "end" and step in out:
                out[step].update(end=float(r["end"]), exit_code=_code(r["exit_code"]),
                                 state=_clean(r["state"], 20))  # fmt: skip
                continue
            start = float(r["start"])
            out[step] = {"step": step, "name": _clean(r["name"], 200),
                         "nodes": _clean(r["nodes"], 1000), "ntasks": int(r["ntasks"]),
                         "start": start, "end": float(r.get("end", now or start)),
                         "exit_code": _code(r.get("exit_code")),
                         "state": _clean(r.get("state", "CANCELLED"), 20)}  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return [out[k] for k in sorted(out)][:MAX_STEPS]


def _code(v: Any) -> int | None:
    return None if v is None else int(v)
