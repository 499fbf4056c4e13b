"""The control plane's end of the pod spawners (`detente.executors.spawner`): a
helper process per CPU, started on first use and again after one died, with none of
the control plane's environment.

Contract: `send` writes requests and returns at once; `answers` gives the answers in
the order the requests were sent — all that have come (``wait=False``) or all that
are owed (``wait=True``), or at most a given number of them. An answer is (pid,
start) or the OSError that stopped the pod; "the pod spawner died" means the pod may
have started all the same (the caller kills it by its token). Thread-safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detente.executors.spawner import ANSWER, LENGTH, _write

#: The helper, run by path: it needs nothing but the standard library.
HELPER = Path(__file__).with_name("spawner.py")
Request = tuple[Any, ...]
Answer = tuple[int, int] | OSError
#: Requests owed answers at most, per helper (its answer pipe holds 4,096).
MAX_OWED = 2048
F_SETPIPE_SZ = 1031


class _Helper:
    def __init__(self) -> None:
        req_r, self.wr = os.pipe2(os.O_CLOEXEC)
        self.rd, ans_w = os.pipe2(os.O_CLOEXEC)
        #: Its pods' ends, as pids (`detente.executors.watch` reads them).
        self.exits, exits_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # a batch's requests written at once
            fcntl.fcntl(self.wr, F_SETPIPE_SZ, 1 << 20)
        argv = [sys.executable, "-I", str(HELPER), "3", "4", "5"]
        actions = [(os.POSIX_SPAWN_DUP2, req_r, 3), (os.POSIX_SPAWN_DUP2, ans_w, 4),
                   (os.POSIX_SPAWN_DUP2, exits_w, 5),
                   (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]  # fmt: skip
        try:
            self.pid = os.posix_spawn(argv[0], argv, {"PATH": "/usr/bin:/bin"},
                                      file_actions=actions, setsid=True)  # fmt: skip
        finally:
            for fd in (req_r, ans_w, exits_w):
                os.close(fd)
        os.set_blocking(self.rd, False)
        self.owed = 0
        self.buf = b""
        self.dead: OSError | None = None

    def alive(self) -> bool:
        """Not known dead, and not exited (read without reaping another's pid)."""
        if self.dead is not None:
            return False
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] == 0
        except ChildProcessError:  # reaped by the executor's `reap`: gone
            return False

    def send(self, req: bytes) -> None:
        try:
            _write(self.wr, req)
            self.owed += 1
        except OSError as e:
            self.died(e)
            raise self.dead from None  # type: ignore[misc]

    def pull(self, wait: bool, upto: int | None = None) -> None:
        """Reads what answers have come (with ``wait``, all owed, or the first ``upto``
        of them) into `buf`."""
        need = (self.owed if upto is None else min(upto, self.owed)) * ANSWER.size
        while self.dead is None and len(self.buf) < need:
            try:
                chunk = os.read(self.rd, need - len(self.buf))
            except BlockingIOError:
                if not wait:
                    return
                os.set_blocking(self.rd, True)
                try:
                    chunk = os.read(self.rd, need - len(self.buf))
                finally:
                    os.set_blocking(self.rd, False)
            if not chunk:
                self.died(OSError(32, "no answer"))
                return
            self.buf += chunk

    def take(self) -> Answer:
        """The next answer, from `buf` (or the death that stands for it)."""
        if len(self.buf) < ANSWER.size:
            assert self.dead is not None
            self.owed -= 1
            return self.dead
        (pid, start), self.buf = ANSWER.unpack(self.buf[: ANSWER.size]), self.buf[ANSWER.size :]
        self.owed -= 1
        return (pid, start) if pid > 0 else OSError(-pid, os.strerror(-pid))

    def died(self, e: OSError) -> None:
        self.dead = OSError(e.errno, f"the pod spawner died: {e.strerror}")

    def close(self) -> None:
        for fd in (self.wr, self.rd):  # the exits pipe is its watcher's to close
            with contextlib.suppress(OSError):
                os.close(fd)
        # Killed only while still an unreaped child: a reaped pid may be another's.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(self.pid, os.WNOHANG)[0] == 0:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)


class Spawner:
    """``on_helper`` is called with each new helper's exits pipe (its pods' ends)."""

    def __init__(
        self, helpers: int | None = None, on_helper: Callable[[int], None] | None = None
    ) -> None:
        self.on_helper = on_helper
        self._lock = threading.Lock()
        self._n = helpers or min(os.cpu_count() or 1, 4)
        self._helpers: list[_Helper | None] = [None] * self._n
        self._order: deque[_Helper] = deque()  # the helper each owed answer comes from
        self._next = 0

    def send(self, requests: list[Request]) -> list[OSError | None]:
        """Sends each request to a helper, in turn; an OSError for one that could not
        be sent (no helper could be started, or it died) — it is owed no answer."""
        out: list[OSError | None] = []
        with self._lock:
            for req in requests:
                data = marshal.dumps(req)
                try:
                    helper = self._helper()
                    if helper.owed - len(helper.buf) // ANSWER.size >= MAX_OWED:
                        helper.pull(wait=True)  # its answer pipe must never fill
                    helper.send(LENGTH.pack(len(data)) + data)
                except OSError as e:
                    out.append(e)
                    continue
                self._order.append(helper)
                out.append(None)
        return out

    def answers(self, wait: bool, most: int | None = None) -> list[Answer]:
        """The answers come since the last call, in the order sent; with ``wait``,
        every answer owed. At most ``most`` (the rest are given by later calls), and
        with ``wait`` only as many are waited for."""
        with self._lock:
            owed = list(self._order)[:most] if most is not None else self._order
            for h in set(owed):
                h.pull(wait, sum(1 for o in owed if o is h))
            out: list[Answer] = []
            while self._order and (most is None or len(out) < most):
                h = self._order[0]
                if len(h.buf) < ANSWER.size and h.dead is None:
                    break
                self._order.popleft()
                out.append(h.take())
                if h.dead is not None and not h.owed and h not in self._helpers:
                    h.close()  # a dead helper replaced, all its answers given
            return out

    def _helper(self) -> _Helper:
        """The next helper in turn, started anew if it has none or it died (a dead
        one's owed answers still come, as its death)."""
        k = self._next
        self._next = (k + 1) % self._n
        h = self._helpers[k]
        if h is None or not h.alive():
            if h is not None:
                h.died(OSError(32, "exited"))
                if not h.owed:
                    h.close()
            h = self._helpers[k] = _Helper()
            if self.on_helper is not None:
                self.on_helper(h.exits)
            else:
                os.close(h.exits)  # nobody reads: the helper drops its notices
        return h

    def close(self) -> None:
        """Ends the helpers (their pods live on)."""
        with self._lock:
            for h in {*self._order, *filter(None, self._helpers)}:
                h.close()
            self._helpers = [None] * self._n
            self._order.clear()

    def __del__(self) -> None:  # their input ends: the helpers exit (pods live on)
        for h in getattr(self, "_helpers", []):
            if h is not None:
                for fd in (h.wr, h.rd):
                    with contextlib.suppress(OSError):
                        os.close(fd)
