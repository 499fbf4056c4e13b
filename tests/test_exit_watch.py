"""Exits noticed by event (pidfd), not by the next poll."""

from __future__ import annotations

import subprocess
import threading
import time

from detente.executors.watch import ExitWatcher


def test_the_callback_comes_when_the_process_ends_not_before() -> None:
    ended = threading.Event()
    watcher = ExitWatcher(ended.set)
    p = subprocess.Popen(["sleep", "0.4"])
    t0 = time.monotonic()
    watcher.watch(p.pid)
    assert not ended.wait(0.2)  # still running: no call yet
    assert ended.wait(5)
    assert 0.35 <= time.monotonic() - t0 < 3
    p.wait()


def test_a_process_already_gone_calls_back_at_once() -> None:
    ended = threading.Event()
    p = subprocess.Popen(["true"])
    p.wait()  # reaped: its pid names no process any more
    ExitWatcher(ended.set).watch(p.pid)
    assert ended.wait(2)


def test_many_watched_processes_each_wake_it() -> None:
    calls: list[float] = []
    watcher = ExitWatcher(lambda: calls.append(time.monotonic()))
    procs = [subprocess.Popen(["sleep", str(0.1 * (i + 1))]) for i in range(5)]
    for p in procs:
        watcher.watch(p.pid)
    for p in procs:
        p.wait()
    time.sleep(0.3)  # the watcher's thread has seen the last end
    assert 1 <= len(calls) <= 5  # ends close together may share one wake-up
    assert max(calls) - min(calls) >= 0.2  # the later ends woke it later
