"""Exits noticed by event: a thread waits on the pidfds of watched processes and calls
back when one ends, so the scheduler settles the exit at once instead of at its next
poll. The exit file stays the record (a pod's end is known from it even if this
process was down); this only wakes the reader sooner. Linux ≥ 5.3 (``pidfd_open``);
elsewhere `watch` does nothing and the poll remains.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from collections.abc import Callable

log = logging.getLogger("detente")


class ExitWatcher:
    def __init__(self, on_exit: Callable[[], None]) -> None:
        self.on_exit = on_exit
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._ended: set[int] = set()  # pids seen ended, until `drain`
        self._r, self._w = os.pipe()  # wakes the select when a pid is added
        os.set_blocking(self._r, False)
        self._sel.register(self._r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        """Calls back once ``pid`` has ended (at once if it already has)."""
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd here, or the process is gone
            with self._lock:
                self._ended.add(pid)
            self.on_exit()
            return
        with self._lock:
            self._sel.register(fd, selectors.EVENT_READ, pid)
        os.write(self._w, b"+")

    def drain(self) -> set[int]:
        """The pids seen ended since the last drain."""
        with self._lock:
            out, self._ended = self._ended, set()
        return out

    def _run(self) -> None:
        while True:
            try:
                events = self._sel.select()
            except OSError:  # a fd closed under us: select again
                continue
            ended = False
            for key, _ in events:
                if key.fd == self._r:
                    while True:
                        try:
                            if not os.read(self._r, 4096):
                                break
                        except BlockingIOError:
                            break
                    continue
                with self._lock:
                    self._sel.unregister(key.fd)
                    self._ended.add(key.data)
                os.close(key.fd)
                ended = True
            if ended:
                try:
                    self.on_exit()
                except Exception:  # the callback only wakes a loop; never stop watching
                    log.exception("exit callback failed")
