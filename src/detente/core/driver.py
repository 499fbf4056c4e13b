"""The one scheduling driver: ``schedule(snapshot, queues, profile, now, rng)``.

`detente plan`, the live reconciler, `apply`'s preview, the simulator and the test
helpers all decide through this function, so the same input gives the same decisions
everywhere. What they do with the decisions differs (plan shows preemptions as done;
live records them and signals; the simulator evicts at each deadline), never how the
decisions are made.

At one instant, in steps:

1. Run a cycle (`detente.core.cycle.run_cycle`) on the snapshot.
2. Take complete admissions out of the queue; note preemptions (each victim once,
   with its deadline) and the reservations standing after the cycle.
3. Set aside what did not fit (Kueue's inadmissible set): the next cycle at this
   instant looks only at the rest. Workloads skipped only because their
   ClusterQueue's head budget for the cycle was spent are not set aside.
4. Repeat while a cycle admits something.

Contract: ``snapshot`` and ``queues`` are changed in place (admissions charged, the
admitted removed, the inadmissible parked); the caller unparks (`QueueManager.
unpark_all`) when capacity frees. ``rng`` must be seeded by the caller (the profile's
seed) so that profiles that break ties at random decide alike everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detente.core.cycle import run_cycle
from detente.core.framework import Rng
from detente.core.preemption import Preemption
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.status import Status
from detente.core.timeline import Reservation
from detente.core.workload import Admission

#: Pending statuses that mean "not tried this cycle", not "does not fit".
NOT_TRIED = frozenset({"QueueHeads"})
#: A safety net: cycles at one instant (each admits at least one workload).
MAX_CYCLES = 100_000


@dataclass(slots=True)
class Decisions:
    """What one instant decided. ``admissions`` are in decision order (pod-by-pod
    profiles may admit a workload in parts: ``Admission.complete`` says whether it has
    all its pods); ``pending`` is each unadmitted workload's latest status."""

    admissions: list[Admission] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    pending: dict[str, Status] = field(default_factory=dict)
    cycles: int = 0

    def admitted(self) -> list[str]:
        """Names of workloads admitted whole, in order."""
        return [a.workload.name for a in self.admissions if a.complete]


def schedule(
    snapshot: Snapshot, queues: QueueManager, profile: Profile, now: float, rng: Rng
) -> Decisions:
    """Cycles at ``now`` until one admits nothing (see the module's steps)."""
    out = Decisions()
    victims: set[str] = set()
    for _ in range(MAX_CYCLES):
        r = run_cycle(snapshot, queues, profile, now, rng)  # step 1
        out.cycles += 1
        out.admissions += r.admissions  # step 2
        out.preemptions += [p for p in r.preemptions if p.victim not in victims]
        victims.update(p.victim for p in r.preemptions)
        out.reservations = r.reservations
        out.pending.update(r.pending)
        for adm in r.admissions:
            if adm.complete:
                queues.remove(adm.workload.name)
                out.pending.pop(adm.workload.name, None)
        queues.park(n for n, st in r.pending.items() if st.plugin not in NOT_TRIED)  # step 3
        if not r.admissions:  # step 4
            break
    return out
