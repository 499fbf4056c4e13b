"""Knative's KPA as a pure function: replicas wanted from observed concurrency or RPS.

Per tick (Knative's ``pkg/autoscaler/scaling/autoscaler.go``):

1. The *stable* value is the mean of the samples in the last ``stable_window``
   (60 s), the *panic* value the mean over the last ``panic_window`` (6 s).
2. ``want = ceil(value / target)``: from the stable value, or from the panic value
   while panicking. Panic starts when ``ceil(panic / target) ≥ panic_threshold ×
   ready`` (2×) and lasts until a whole stable window passes below it; in panic the
   count never decreases.
3. The change per tick is bounded: up to ``ready × max_up_rate``, down to ``ready /
   max_down_rate`` (1000 and 2).
4. Scale to zero only when ``min`` is 0 and no request came for ``to_zero_after``;
   from zero, a held request (``waiting > 0``) asks for one replica at once.
5. The result is clamped to ``[min, max]``.

Contract: `decide` reads ``state`` and returns a new one; the caller keeps the
samples (``Sample(t, value)``) and passes ``now``; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class KpaSpec:
    #: Wanted concurrency (or RPS) per replica.
    target: float
    min_replicas: int = 0
    max_replicas: int = 8
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_up_rate: float = 1000.0
    max_down_rate: float = 2.0
    #: No traffic for this long before scaling to zero (Knative's grace: 30 s).
    to_zero_after: float = 30.0


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    value: float


@dataclass(frozen=True, slots=True)
class KpaState:
    #: When panic mode began (None: not panicking).
    panic_since: float | None = None
    #: The last time the panic value was at or above the threshold.
    panic_seen: float | None = None
    #: The last decision, never lowered while panicking.
    last: int = 0
    #: The last time a request was seen (or ``waiting``).
    last_traffic: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    state: KpaState
    #: The inputs, for `describe service`: stable and panic values and the mode.
    stable: float = 0.0
    panic: float = 0.0
    mode: str = "stable"
    why: list[str] = field(default_factory=list)


def _mean(samples: list[Sample], since: float) -> float:
    xs = [s.value for s in samples if s.t > since]
    return sum(xs) / len(xs) if xs else 0.0


def decide(
    spec: KpaSpec,
    samples: list[Sample],
    ready: int,
    now: float,
    state: KpaState,
    waiting: int = 0,
) -> Decision:
    """Replicas wanted now (see the module's steps)."""
    stable = _mean(samples, now - spec.stable_window)  # step 1
    panic = _mean(samples, now - spec.panic_window)
    traffic = waiting > 0 or any(s.value > 0 for s in samples if s.t > now - spec.panic_window)
    # The first decision counts as traffic: a new service is not scaled to zero at once.
    last_traffic = now if traffic or state.last_traffic is None else state.last_traffic
    want_stable = math.ceil(stable / spec.target)  # step 2
    want_panic = math.ceil(panic / spec.target)
    over = want_panic >= spec.panic_threshold * max(ready, 1) and want_panic > 0
    panic_seen = now if over else state.panic_seen
    panic_since = state.panic_since
    if over and panic_since is None:
        panic_since = now
    elif panic_since is not None and (panic_seen is None or now - panic_seen >= spec.stable_window):
        panic_since = None  # a whole stable window below the threshold
    if panic_since is not None:
        want = max(want_panic, state.last)
        mode = "panic"
    else:
        want, mode = want_stable, "stable"
    if ready > 0:  # step 3
        want = min(want, math.ceil(ready * spec.max_up_rate))
        want = max(want, math.floor(ready / spec.max_down_rate))
    why = []
    if waiting > 0 and want == 0:  # step 4
        want = 1
        why.append(f"{waiting} request(s) held: scale from zero")
    elif want == 0 and spec.min_replicas == 0:
        idle = last_traffic is None or now - last_traffic >= spec.to_zero_after
        if not idle:
            want = 1
            why.append("traffic within the scale-to-zero window")
    want = max(spec.min_replicas, min(spec.max_replicas, want))  # step 5
    new = KpaState(panic_since, panic_seen, want, last_traffic)
    return Decision(want, new, stable, panic, mode, why)
