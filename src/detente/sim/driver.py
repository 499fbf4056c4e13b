"""A simulated cluster: workloads arrive, cycles admit them, they run and finish.

The driver plays the control plane's part with the same core calls: after every
batch of events at one instant it runs `detente.core.driver.schedule` on the live
snapshot (event-triggered scheduling, as Slurm's scheduler runs on submit and on job
end), then applies the decisions. Admitted workloads run for their run time, or are killed at
their time limit (TIMEOUT); preempted ones stop at the end of their checkpoint
grace and requeue keeping their submit time; a failed node kills what runs on it
(requeued, as Slurm's JobRequeue) until it is repaired. Priorities are recomputed
every profile calc period. The engine is the only clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from detente.core import kpa
from detente.core.driver import Decisions, schedule
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.replicas import Phase, Replica, Rollout, reconcile
from detente.core.resources import MILLI
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload
from detente.sim.engine import Engine
from detente.sim.services import Service


@dataclass(slots=True)
class JobRecord:
    workload: Workload
    runtime: float
    start: float | None = None
    first_start: float | None = None
    end: float | None = None
    timed_out: bool = False
    nodes: list[int] = field(default_factory=list)
    #: Reservation start times this job was given, in cycle order.
    reserved_at: list[float] = field(default_factory=list)
    #: Times it was preempted or killed by a node failure.
    preempted_at: list[float] = field(default_factory=list)
    #: GPU-seconds of work thrown away by preemptions and failures.
    lost_gpu_seconds: float = 0.0
    #: Seconds of work saved by checkpoints: a restart resumes from there.
    saved: float = 0.0
    #: Increases with every start, so a finish event of an earlier run is ignored.
    run: int = 0
    #: The service this record is a replica of ("" for batch jobs).
    service: str = ""
    #: Seconds a replica served (summed over its runs).
    served: float = 0.0


@dataclass(frozen=True, slots=True)
class Sample:
    time: float
    allocated_gpus: float
    running_gpus: float
    fragmented_gpus: float
    pending: int
    #: GPUs held by running service replicas (the rest of ``running_gpus`` is training).
    service_gpus: float = 0.0


@dataclass(slots=True)
class ServiceState:
    service: Service
    #: Replica names in creation order, and each one's slot (`detente.core.replicas`).
    replicas: list[str] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)
    created: int = 0
    #: (time, desired replicas) at every autoscaler decision.
    desired: list[tuple[float, int]] = field(default_factory=list)
    #: The load now, the KPA's samples within its stable window, and its state.
    load: float = 0.0
    samples: list[kpa.Sample] = field(default_factory=list)
    kpa_state: kpa.KpaState = field(default_factory=kpa.KpaState)
    #: False once the load curve ended (the service scaled to zero).
    open: bool = True
    #: (time, load) at every load change and (time, ready replicas) at every change:
    #: what the SLO is measured on (`detente.sim.metrics.services`).
    loads: list[tuple[float, float]] = field(default_factory=list)
    ready: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Failures:
    """Node failures: each node fails after Exp(mtbf) seconds, is repaired after ``repair``."""

    mtbf: float
    repair: float = 3600.0


#: Seconds between the autoscaler's follow-up ticks (Knative's tick interval: 2 s).
KPA_TICK = 2.0


class Simulation:
    def __init__(
        self,
        snap: Snapshot,
        profile: Profile,
        seed: int = 0,
        sample_every: float = 600.0,
        failures: Failures | None = None,
        checkpoint_every: float | None = None,
    ) -> None:
        """``checkpoint_every``: seconds of run between a job's checkpoints; a preempted
        or failed job loses the work since its last one (without: all of its run)."""
        self.snap, self.profile = snap, profile
        self.queues = QueueManager(profile.queue_sort)
        self.engine = Engine()
        self.rng = random.Random(seed)
        self.fail_rng = random.Random(seed + 7919)
        self.jobs: dict[str, JobRecord] = {}
        self.samples: list[Sample] = []
        self.cycles = 0
        self.sample_every = sample_every
        self.failures = failures
        self.checkpoint_every = checkpoint_every
        self._cycle_pending = False
        self._last_prio: float | None = None
        self._last_sample: float | None = None
        self._open = 0  # jobs submitted and not yet finished
        self.services: dict[str, ServiceState] = {}

    def submit(self, w: Workload, runtime: float) -> None:
        """Schedules ``w`` to arrive at its submit time and run ``runtime`` seconds."""
        self.jobs[w.name] = JobRecord(w, runtime)
        self._open += 1
        self.engine.at(w.submit_time, lambda t, w=w: self._arrive(w, t))

    def add_service(self, service: Service, load: list[tuple[float, float]]) -> None:
        """Drives ``service``'s replicas by ``load`` (time, load) points through the
        autoscaler; after the last point the service scales to zero so the run can end."""
        self.services[service.name] = ServiceState(service)
        for t, v in load:
            self.engine.at(t, lambda t2, n=service.name, x=v: self._load(n, x, t2))
        end = load[-1][0] if load else 0.0
        self.engine.at(end, lambda t2, n=service.name: self._close(n, t2))

    def run(
        self, until: float | None = None, progress: Callable[[int], None] | None = None
    ) -> dict[str, JobRecord]:
        """Runs to the end (or ``until``); ``progress`` gets the count of finished jobs."""
        if self.failures is not None:
            for node in range(len(self.snap.cluster.nodes)):
                self._schedule_failure(node, 0.0)
        done = -1
        while len(self.engine) and (until is None or (self.engine.peek() or 0) <= until):
            if self._open == 0 and self.failures is not None:
                break  # only failure events are left
            self.engine.step()
            if progress is not None and (finished := len(self.jobs) - self._open) != done:
                done = finished
                progress(done)
        return self.jobs

    # -- events ----------------------------------------------------------------------

    def _arrive(self, w: Workload, t: float) -> None:
        self.queues.add(w)
        self._want_cycle(t)

    def _want_cycle(self, t: float) -> None:
        # One cycle after all events of this instant: scheduled last at the same time.
        if not self._cycle_pending:
            self._cycle_pending = True
            self.engine.at(t, self._cycle)

    def _cycle(self, t: float) -> None:
        self._cycle_pending = False
        if self._last_prio is None or t - self._last_prio >= self.profile.calc_period:
            reprioritize(self.snap, self.queues, self.profile.half_life, t)
            self.queues.unpark_all()  # new priorities: look at everything again
            self._last_prio = t
        # The one driver: cycles back to back while they admit; what did not fit stays
        # parked until capacity frees (Kueue's inadmissible set).
        result = schedule(self.snap, self.queues, self.profile, t, self.rng)
        self.cycles += result.cycles
        self._apply(result, t)
        if self._last_sample is None or t - self._last_sample >= self.sample_every:
            self._sample(t)

    def _apply(self, result: Decisions, t: float) -> None:
        for r in result.reservations:
            self.jobs[r.workload].reserved_at.append(r.start)
        for p in result.preemptions:
            run = self.jobs[p.victim].run
            pods = frozenset(p.pods)
            self.engine.at(
                p.deadline, lambda t2, n=p.victim, r=run, ps=pods: self._evict(n, r, t2, ps)
            )
        for adm in result.admissions:
            if adm.complete and self.jobs[adm.workload.name].start is None:
                self._start(adm.workload, [p.node for p in adm.placements], t)

    def _start(self, w: Workload, nodes: list[int], t: float) -> None:
        rec = self.jobs[w.name]
        self.queues.remove(w.name)
        rec.start, rec.nodes = t, nodes
        if rec.service:
            self._ready_changed(rec.service, t)
        rec.first_start = t if rec.first_start is None else rec.first_start
        rec.run += 1
        run = rec.runtime - rec.saved
        if rec.service:
            return  # a replica serves until scaled down
        if w.time_limit is not None and run > w.time_limit:
            run, rec.timed_out = w.time_limit, True
        self.engine.at(t + run, lambda t2, n=w.name, r=rec.run: self._finish(n, r, t2))

    def _finish(self, name: str, run: int, t: float) -> None:
        if self.jobs[name].run != run or name not in self.snap.running:
            return  # this run was preempted; the finish belongs to it, not the current one
        self.snap.release(name)
        self.jobs[name].end = t
        self._open -= 1
        self._freed(t)

    def _evict(self, name: str, run: int, t: float, pods: frozenset[tuple[str, int]]) -> None:
        """Ends a preempted run at its grace deadline and requeues it, keeping its submit time.

        Losing some pods (pod-level preemption) also ends the run: a distributed job
        cannot go on without part of its world, so it starts over once whole again."""
        rec = self.jobs[name]
        if rec.run != run or name not in self.snap.running:
            return  # finished on its own before the deadline
        if pods:
            self.snap.release_pods(name, set(pods))
        else:
            self.snap.release(name)
        self._requeue(rec, t)

    def _requeue(self, rec: JobRecord, t: float) -> None:
        if rec.start is not None and rec.service:
            rec.served += t - rec.start  # serving is not lost work; the replica restarts
        elif rec.start is not None:
            ran = t - rec.start
            every = self.checkpoint_every
            kept = math.floor(ran / every) * every if every else 0.0
            rec.saved += kept
            rec.lost_gpu_seconds += (ran - kept) * rec.workload.gpus
        rec.run += 1
        rec.preempted_at.append(t)
        rec.start = None
        if rec.service:
            self._ready_changed(rec.service, t)
        if rec.workload.name not in self.queues:
            self.queues.add(rec.workload)
        self._freed(t)

    def _freed(self, t: float) -> None:
        """Capacity came back: every parked workload gets another look."""
        self.queues.unpark_all()
        self._want_cycle(t)

    # -- services -------------------------------------------------------------------

    def _load(self, name: str, load: float, t: float) -> None:
        """A load change: the autoscaler ticks on the new load."""
        svc = self.services[name]
        if svc.open:
            svc.load = load
            svc.loads.append((t, load))
            self._tick(name, t)

    def _tick(self, name: str, t: float) -> None:
        """One KPA tick (`detente.core.kpa.decide`, as the live service controller
        runs it) on the load now; while the count moves (scale-down goes by halves),
        it ticks again `KPA_TICK` seconds later, as the live controller keeps ticking."""
        svc = self.services[name]
        if not svc.open:
            return
        spec = svc.service.kpa
        svc.samples.append(kpa.Sample(t, svc.load))
        svc.samples = [x for x in svc.samples if x.t > t - spec.stable_window]
        ready = sum(1 for r in svc.replicas if self.jobs[r].start is not None)
        d = kpa.decide(spec, svc.samples, ready, t, svc.kpa_state)
        svc.kpa_state = d.state
        before = svc.desired[-1][1] if svc.desired else None
        self._scale(name, d.replicas, t)
        if d.replicas != before:
            self.engine.at(t + KPA_TICK, lambda t2, n=name: self._tick(n, t2))

    def _close(self, name: str, t: float) -> None:
        self._scale(name, 0, t)
        self.services[name].open = False

    def _scale(self, name: str, desired: int, t: float) -> None:
        """A load change: the replica controller the live system runs
        (`detente.core.replicas.reconcile`) says which replicas to create and stop;
        pending ones stop first (stopping a serving one costs capacity now)."""
        svc = self.services[name]
        svc.desired.append((t, desired))
        reps = [
            Replica(r, svc.slots[r], "v1",
                    Phase.READY if self.jobs[r].start is not None else Phase.PENDING)
            for r in svc.replicas
        ]  # fmt: skip
        acts = reconcile(desired, "v1", reps, {}, Rollout(), t)
        for r in acts.stop:
            self._stop_replica(r, t)
            svc.replicas.remove(r)
        for slot, _ in acts.create:
            w = svc.service.replica(svc.created, t)
            svc.created += 1
            svc.replicas.append(w.name)
            svc.slots[w.name] = slot
            self.jobs[w.name] = JobRecord(w, math.inf, service=name)
            self.queues.add(w)
        if acts.create:  # a stop that frees room asks for a cycle itself (`_freed`)
            self._want_cycle(t)

    def _ready_changed(self, name: str, t: float) -> None:
        svc = self.services[name]
        svc.ready.append((t, sum(1 for r in svc.replicas if self.jobs[r].start is not None)))

    def _stop_replica(self, name: str, t: float) -> None:
        rec = self.jobs[name]
        rec.run += 1  # invalidates pending evictions of this replica
        if name in self.snap.running:
            self.snap.release(name)
            rec.served += t - (rec.start if rec.start is not None else t)
            rec.end, rec.start = t, None
            self._ready_changed(rec.service, t)
            self._freed(t)
        else:
            self.queues.remove(name)
            rec.end = rec.end or t

    # -- node failures -----------------------------------------------------------------

    def _schedule_failure(self, node: int, now: float) -> None:
        assert self.failures is not None
        when = now + self.fail_rng.expovariate(1 / self.failures.mtbf)
        self.engine.at(when, lambda t, n=node: self._fail(n, t))

    def _fail(self, node: int, t: float) -> None:
        assert self.failures is not None
        self.snap.state.set_schedulable(node, False)
        for name in [
            n for n, a in self.snap.running.items() if any(p.node == node for p in a.placements)
        ]:
            self.snap.release(name)
            self._requeue(self.jobs[name], t)
        self.engine.at(t + self.failures.repair, lambda t2, n=node: self._repair(n, t2))

    def _repair(self, node: int, t: float) -> None:
        self.snap.state.set_schedulable(node, True)
        self._schedule_failure(node, t)
        self._freed(t)

    # -- sampling ----------------------------------------------------------------------

    def _sample(self, t: float) -> None:
        self._last_sample = t
        st, cl = self.snap.state, self.snap.cluster
        running = sum(a.workload.gpus for a in self.snap.running.values() if a.complete)
        serving = sum(
            a.workload.gpus
            for n, a in self.snap.running.items()
            if a.complete and self.jobs[n].service
        )
        frag = 0
        for i, node in enumerate(cl.nodes):
            free = sum(st.devices[i])
            if st.schedulable[i] and 0 < free < node.capacity.gpu_milli:
                frag += free
        allocated = (cl.total_gpu_milli - st.free_milli[0]) / MILLI
        self.samples.append(Sample(t, allocated, running, frag / MILLI, len(self.queues), serving))
