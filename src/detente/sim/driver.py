"""A simulated cluster: workloads arrive, cycles admit them, they run and finish.

The driver plays the control plane's part: after every batch of events at one
instant it runs one cycle on the current snapshot (event-triggered scheduling, as
Slurm's scheduler runs on submit and on job end), then applies the result: admitted
workloads start and finish after their run time (or are killed at their time
limit), and pending ones wait for the next event.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from detente.core.cycle import CycleResult, run_cycle
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload
from detente.sim.engine import Engine


@dataclass(slots=True)
class JobRecord:
    workload: Workload
    runtime: float
    start: float | None = None
    end: float | None = None
    nodes: list[int] = field(default_factory=list)
    #: Reservation start times this job was given, in cycle order.
    reserved_at: list[float] = field(default_factory=list)
    #: Times it was preempted (stopped at the end of its checkpoint grace).
    preempted_at: list[float] = field(default_factory=list)
    #: Increases with every start, so a finish event of an earlier run is ignored.
    run: int = 0


class Simulation:
    def __init__(self, snap: Snapshot, profile: Profile, seed: int = 0) -> None:
        self.snap, self.profile = snap, profile
        self.queues = QueueManager(profile.queue_sort)
        self.engine = Engine()
        self.rng = random.Random(seed)
        self.jobs: dict[str, JobRecord] = {}
        self.cycles = 0
        self._cycle_pending = False
        self._last_prio: float | None = None

    def submit(self, w: Workload, runtime: float) -> None:
        """Schedules ``w`` to arrive at its submit time and run ``runtime`` seconds."""
        self.jobs[w.name] = JobRecord(w, runtime)
        self.engine.at(w.submit_time, lambda t, w=w: self._arrive(w, t))

    def run(self, until: float | None = None) -> dict[str, JobRecord]:
        self.engine.run(until)
        return self.jobs

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
        self.cycles += 1
        if self._last_prio is None or t - self._last_prio >= self.profile.calc_period:
            reprioritize(self.snap, self.queues, self.profile.half_life, t)
            self._last_prio = t
        result = run_cycle(self.snap, self.queues, self.profile, t, self.rng)
        self._apply(result, t)

    def _apply(self, result: CycleResult, t: float) -> None:
        for r in result.reservations:
            self.jobs[r.workload].reserved_at.append(r.start)
        for p in result.preemptions:
            run = self.jobs[p.victim].run
            pods = frozenset(p.pods)
            self.engine.at(
                p.deadline, lambda t2, n=p.victim, r=run, ps=pods: self._evict(n, r, t2, ps)
            )
        for adm in result.admissions:
            if not adm.complete:
                continue
            rec = self.jobs[adm.workload.name]
            self.queues.remove(adm.workload.name)
            rec.start, rec.nodes = t, [p.node for p in adm.placements]
            rec.run += 1
            limit = adm.workload.time_limit
            run = rec.runtime if limit is None else min(rec.runtime, limit)
            self.engine.at(
                t + run, lambda t2, n=adm.workload.name, r=rec.run: self._finish(n, r, t2)
            )

    def _finish(self, name: str, run: int, t: float) -> None:
        if self.jobs[name].run != run or name not in self.snap.running:
            return  # this run was preempted; the finish belongs to it, not the current one
        self.snap.release(name)
        self.jobs[name].end = t
        self._want_cycle(t)

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
        rec.run += 1
        rec.preempted_at.append(t)
        rec.start = None
        if name not in self.queues:
            self.queues.add(rec.workload)
        self._want_cycle(t)
