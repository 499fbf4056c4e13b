"""The replica controller as a pure function: Kubernetes' ReplicaSet and Deployment
rollout rules, shared by the live system and the simulator.

A service has ``desired`` replicas of its current ``revision`` (a hash of what
changes a replica: command, resources, env). Each replica sits in a *slot*; a slot
whose replica exited waits out an exponential backoff before it is filled again
(1 s doubling to 5 min, reset after 10 min healthy: `after_exit`), shown as
``CrashLoopBackOff``.

`reconcile` returns, in steps:

1. **Old replicas** (another revision) that may go: not-ready ones at once, ready
   ones while the ready count stays ≥ ``desired − max_unavailable``.
2. **New replicas** to create: up to ``desired`` of the current revision, never
   more than ``desired + max_surge`` replicas alive while old ones remain (exactly
   ``desired`` otherwise), each in the lowest free slot not backing off.
3. **Scale down**: with no old replicas, replicas beyond ``desired`` go — pending
   first, then starting, then the newest ready (highest slot).

Contract: pure; the caller applies the actions and calls again on the next tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

BACKOFF_START = 1.0
BACKOFF_MAX = 300.0
#: Healthy this long and a slot's restart count resets (kubelet: 10 min).
BACKOFF_RESET = 600.0


class Phase(StrEnum):
    PENDING = "Pending"  # queued: not yet admitted by the scheduler
    STARTING = "Starting"  # running, not ready yet (or failing readiness)
    READY = "Ready"
    TERMINATING = "Terminating"


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    slot: int
    revision: str
    phase: Phase


@dataclass(frozen=True, slots=True)
class Rollout:
    max_surge: int = 1
    max_unavailable: int = 0


@dataclass(frozen=True, slots=True)
class SlotHistory:
    restarts: int = 0
    last_exit: float | None = None

    def not_before(self) -> float:
        if self.last_exit is None or self.restarts == 0:
            return float("-inf")
        return self.last_exit + backoff(self.restarts)


def backoff(restarts: int) -> float:
    """Seconds a slot waits before its ``restarts``-th restart."""
    return min(BACKOFF_MAX, BACKOFF_START * float(2 ** max(restarts - 1, 0)))


def after_exit(h: SlotHistory, ready_since: float | None, now: float) -> SlotHistory:
    """A slot's history once its replica exits: a replica that was ready for
    `BACKOFF_RESET` starts the count again."""
    healthy = ready_since is not None and now - ready_since >= BACKOFF_RESET
    return SlotHistory(1 if healthy else h.restarts + 1, now)


@dataclass(slots=True)
class Actions:
    #: (slot, revision) of replicas to create.
    create: list[tuple[int, str]] = field(default_factory=list)
    #: Names of replicas to stop.
    stop: list[str] = field(default_factory=list)
    #: Slots backing off: when each may be filled again (CrashLoopBackOff).
    backing_off: dict[int, float] = field(default_factory=dict)


def _down_order(r: Replica) -> tuple[int, int]:
    rank = {Phase.PENDING: 0, Phase.STARTING: 1, Phase.READY: 2}
    return rank.get(r.phase, 0), -r.slot


def reconcile(
    desired: int,
    revision: str,
    replicas: Sequence[Replica],
    history: Mapping[int, SlotHistory],
    rollout: Rollout,
    now: float,
) -> Actions:
    """What to create and stop now (see the module's steps)."""
    out = Actions()
    live = [r for r in replicas if r.phase != Phase.TERMINATING]
    new = [r for r in live if r.revision == revision]
    old = [r for r in live if r.revision != revision]
    ready = sum(r.phase == Phase.READY for r in live)
    floor = max(0, desired - rollout.max_unavailable)
    for r in sorted(old, key=_down_order):  # step 1
        if r.phase != Phase.READY:
            out.stop.append(r.name)
        elif ready - 1 >= floor or (not new and desired == 0):
            out.stop.append(r.name)
            ready -= 1
    alive = len(live) - len(out.stop)
    cap = desired + rollout.max_surge if len(old) > len(out.stop) else desired
    room = max(0, min(desired - len(new), cap - alive))  # step 2
    used = {r.slot for r in live if r.name not in out.stop}
    slot = 0
    while room > 0 and slot < desired + rollout.max_surge + len(live):
        if slot not in used:
            until = history.get(slot, SlotHistory()).not_before()
            if until > now:  # the slot waits: no other slot takes its place
                out.backing_off[slot] = until
                room -= 1
            else:
                out.create.append((slot, revision))
                room -= 1
        slot += 1
    if not old:  # step 3
        extra = len(new) - desired
        out.stop += [r.name for r in sorted(new, key=_down_order)[: max(extra, 0)]]
    return out
