"""The reconciler's thread (`Loop`): a step every period, or sooner when woken;
recovery first, at start and on taking over as leader."""

from __future__ import annotations

import logging
import threading
import time

from detente.control.lease import Lease
from detente.control.metrics import Metrics
from detente.control.reconciler import Reconciler
from detente.executors.base import EngineUnavailable

log = logging.getLogger("detente")


class Loop:
    """The reconciler's thread: a step every ``period`` seconds, or sooner when woken.

    No exception stops it: a failed step is logged and retried (the store is the
    truth). ``healthy`` is False once no step has completed for ``stale`` seconds,
    which ``/healthz`` reports as 503."""

    def __init__(
        self, rec: Reconciler, metrics: Metrics, period: float = 0.2, lease: Lease | None = None
    ) -> None:
        self.rec, self.metrics, self.period, self.lease = rec, metrics, period, lease
        self.wake, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self.last_step = time.monotonic()
        self.stale = max(15.0, 50 * period)

    def healthy(self) -> bool:
        return time.monotonic() - self.last_step < self.stale

    def _run(self) -> None:
        recovered = False
        while not self.stop.is_set():
            if self.lease is not None and not self.lease.leader:
                recovered = False  # a standby: the leader schedules; recover on takeover
                self.last_step = time.monotonic()
                self.wake.wait(self.period)
                self.wake.clear()
                continue
            if not recovered:
                recovered = self._recover()
                if not recovered:  # never step on what recovery could not settle
                    self.last_step = time.monotonic()
                    self.wake.wait(max(self.period, 1.0))
                    self.wake.clear()
                    continue
            try:
                self.metrics.observe(self.rec.step())
                self.last_step = time.monotonic()
            except Exception:  # keep scheduling; the store is the truth, retry next step
                log.exception("reconciler step failed")
            self.wake.wait(self.period)
            self.wake.clear()

    def _recover(self) -> bool:
        """At start, and on taking over as leader: settle what the last leader (or a
        crash) left, from the store and the processes found. False if it could not
        (the engine did not answer): it is tried again before any step."""
        self.rec.reset()
        try:
            log.info("recovered: %s", self.rec.recover())
        except EngineUnavailable as e:
            log.warning("recovery waits for the engine: %s", e)
            return False
        except Exception:  # a bad job: recovery is retried job by job in later steps
            log.exception("recovery failed")
        return True
