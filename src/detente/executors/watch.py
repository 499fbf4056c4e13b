"""Exits noticed by event: a thread waits on the pidfds of watched processes and calls
back when one ends, so the scheduler settles the exit at once instead of at its next
poll. The exit file stays the record (a pod's end is known from it even if this
process was down); this only wakes the reader sooner. Linux ≥ 5.3 (``pidfd_open``);
elsewhere `watch` reports the pid as ended at once and the poll remains.

The pidfds are registered with epoll directly from the caller's thread (epoll takes
registrations while another thread waits in it): no wake-up write per pid, which at
thousands of pods a second cost a syscall and a thread switch each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import struct
import threading
from collections.abc import Callable

log = logging.getLogger("detente")


class ExitWatcher:
    def __init__(self, on_exit: Callable[[], None]) -> None:
        self.on_exit = on_exit
        self._ep = select.epoll() if hasattr(select, "epoll") else None
        self._lock = threading.Lock()
        self._pids: dict[int, int] = {}  # pidfd → pid
        self._streams: dict[int, bytes] = {}  # pipe of ended pids → a partial one
        self._ended: set[int] = set()  # pids seen ended, until `drain`
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)
        if self._ep is not None:
            self._thread.start()

    def watch(self, pid: int) -> None:
        """Calls back once ``pid`` has ended (at once if it already has, or if nothing
        here can watch it)."""
        try:
            if self._ep is None:
                raise OSError("no epoll")
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd here, or the process is gone
            with self._lock:
                self._ended.add(pid)
            self.on_exit()
            return
        with self._lock:
            self._pids[fd] = pid
        self._ep.register(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def watch_stream(self, fd: int) -> None:
        """Reports the pids written to pipe ``fd`` (int64 each: a pod spawner's ends
        of its pods) as ended; closes it at its end."""
        if self._ep is None:
            os.close(fd)
            return
        with self._lock:
            self._streams[fd] = b""
        self._ep.register(fd, select.EPOLLIN)

    def _read_stream(self, fd: int) -> bool:
        """Takes what pids ``fd`` holds; whether any."""
        try:
            data = os.read(fd, 8192)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        with self._lock:
            if not data:  # the writer is gone
                del self._streams[fd]
            else:
                data = self._streams[fd] + data
                whole = len(data) - len(data) % 8
                self._streams[fd] = data[whole:]
                self._ended.update(p for (p,) in struct.iter_unpack("=q", data[:whole]))
        if not data:
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)  # type: ignore[union-attr]
            os.close(fd)
        return bool(data)

    def drain(self) -> set[int]:
        """The pids seen ended since the last drain."""
        with self._lock:
            out, self._ended = self._ended, set()
        return out

    def _run(self) -> None:
        assert self._ep is not None
        while True:
            try:
                events = self._ep.poll()
            except OSError:  # interrupted: wait again
                continue
            ended = False
            for fd, _ in events:
                if fd in self._streams:
                    ended = self._read_stream(fd) or ended
                    continue
                with self._lock:
                    pid = self._pids.pop(fd, None)
                    if pid is not None:
                        self._ended.add(pid)
                if pid is None:
                    continue
                with contextlib.suppress(OSError):
                    self._ep.unregister(fd)
                os.close(fd)
                ended = True
            if ended:
                try:
                    self.on_exit()
                except Exception:  # the callback only wakes a loop; never stop watching
                    log.exception("exit callback failed")
