"""Prometheus metrics of the control plane (one registry per app, no global state)."""

from __future__ import annotations

import gc

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

from detente.control.reconciler import StepStats


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.pending = Gauge(
            "detente_queue_pending", "Pending jobs per queue", ["queue"], registry=r
        )
        self.admissions = Counter("detente_admissions", "Jobs admitted", registry=r)
        self.ended = Counter("detente_jobs_ended", "Jobs that ended", registry=r)
        self.gpus = Gauge("detente_gpus_allocated", "GPUs held by running jobs", registry=r)
        self.cycle = Histogram(
            "detente_cycle_seconds", "Load + decide time of a scheduler step", registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )  # fmt: skip
        self.steps = Counter("detente_steps", "Scheduler steps: those that decided, and those "
                             "that only settled", ["kind"], registry=r)  # fmt: skip
        # The interpreter's own: its collections by generation (a full one stops the
        # reconciler and the API), the process's memory and CPU.
        GCCollector(registry=r)
        ProcessCollector(registry=r)
        frozen = Gauge("detente_gc_frozen_objects", "Objects of the startup heap the "
                       "cyclic collector no longer walks (gc.freeze)", registry=r)  # fmt: skip
        frozen.set_function(gc.get_freeze_count)
        self._queues: set[str] = set()

    def observe(self, st: StepStats) -> None:
        self.admissions.inc(st.admitted)
        self.ended.inc(st.ended)
        self.gpus.set(st.gpus_allocated)
        self.steps.labels("decided" if st.decided else "settled").inc()
        if st.decided:  # an idle step decided nothing: no latency to record
            self.cycle.observe(st.cycle_seconds)
        for q in self._queues - set(st.pending_by_queue):
            self.pending.labels(q).set(0)
        for q, n in st.pending_by_queue.items():
            self.pending.labels(q).set(n)
        self._queues |= set(st.pending_by_queue)
