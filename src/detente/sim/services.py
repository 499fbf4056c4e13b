"""Inference services in the simulator: replicas that follow a load curve.

A service is a set of one-pod replica workloads in its own queue, at a priority above
training. At every point of its load curve the autoscaler the live services run —
Knative's KPA (`detente.core.kpa`) — decides the replicas wanted from the load
(concurrency, or tokens/s, in the curve's unit; ``throughput`` is what one replica
serves), and the live replica controller (`detente.core.replicas.reconcile`) says
which replicas to create and stop. New replicas queue like any workload and start when
a cycle admits them (taking GPUs from preemptible training if the profile preempts);
a replica lost to a node failure or preemption is requeued, as a ReplicaSet recreates it.

``--services`` takes one or more specs separated by ``;`` (or the option repeated):
``SOURCE[,name=N][,gpus=G][,throughput=X][,priority=P][,min=N][,max=N][,scale=F]``,
SOURCE as in `detente.sim.loads`. ``scale`` multiplies the load. Without
``throughput``, a replica serves 1 (``diurnal``: replicas' worth; ``alibaba-genai``: one
request at a time) or `TOKENS_PER_GPU` × its GPUs tokens/s (Azure). ``max`` defaults
to what the peak needs, ``min`` to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from detente.core.kpa import KpaSpec
from detente.core.resources import CPU, GPU, Resources
from detente.core.workload import PodSet, Workload
from detente.sim.loads import Load, diurnal, from_requests, load_curve
from detente.sim.traces import TraceError

__all__ = ["PRIORITY", "QUEUE", "Load", "Service", "diurnal", "from_requests", "parse_spec"]

QUEUE = "inference"
PRIORITY = 1_000_000
#: Knative's default container-concurrency-target-percentage.
UTILIZATION = 0.7
#: Default throughput of a one-GPU replica on a token load (Azure traces): an assumption
#: (a 7–13B model on one modern GPU), to be set per service with ``throughput=``.
TOKENS_PER_GPU = 1000.0
KEYS = ("name", "gpus", "throughput", "priority", "min", "max", "scale")


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    #: Load one replica serves (the KPA's target per replica).
    target: float
    min_replicas: int = 1
    max_replicas: int = 16
    gpus_per_replica: float = 1.0
    priority: int = PRIORITY
    #: The KPA's stable window (Knative: 60 s); scale-down is bounded by it.
    stable_window: float = 60.0
    #: Replicas are scaled to run at this share of ``target`` (Knative's
    #: container-concurrency-target-percentage, 70 %): the spare 30 % carries a rise in
    #: load while a new replica waits for its GPUs.
    utilization: float = UTILIZATION

    @property
    def kpa(self) -> KpaSpec:
        return KpaSpec(self.target * self.utilization, self.min_replicas, self.max_replicas,
                       stable_window=self.stable_window)  # fmt: skip

    def needed(self, load: float) -> int:
        """Replicas ``load`` needs at full throughput (what the SLO asks to be ready)."""
        return math.ceil(load / self.target - 1e-9) if load > 0 else 0

    def replica(self, index: int, t: float) -> Workload:
        req = Resources({GPU: round(self.gpus_per_replica * 1000), CPU: 1000})
        return Workload(
            f"{self.name}-r{index}", f"default/{QUEUE}", (PodSet("server", 1, req),),
            seq=-1, submit_time=t, priority=self.priority, priority_class="inference",
        )  # fmt: skip


def _options(item: str, parts: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for p in parts:
        key, eq, value = p.partition("=")
        if not eq or key.strip() not in KEYS:
            raise TraceError(f"--services {item!r}: {p!r} is not one of {', '.join(KEYS)}=VALUE")
        opts[key.strip()] = value.strip()
    return opts


def _number(item: str, opts: dict[str, str], key: str, default: float, least: float) -> float:
    try:
        v = float(opts[key]) if key in opts else default
    except ValueError:
        raise TraceError(f"--services {item!r}: {key}={opts[key]!r} is not a number") from None
    if not v >= least or math.isinf(v):
        raise TraceError(f"--services {item!r}: {key}={opts[key]!r} must be at least {least:g}")
    return v


def parse_one(item: str, span: float, index: int = 0) -> tuple[Service, Load]:
    """One spec (see the module) → (service, load curve tiled to ``span``)."""
    source, *rest = [p for p in item.split(",")]
    opts = _options(item, rest)
    scale = _number(item, opts, "scale", 1.0, 0.0)
    load = [(t, v * scale) for t, v in load_curve(source.strip(), span)]
    peak = max((v for _, v in load), default=0.0)
    per_replica = 1.0 if source.startswith(("diurnal", "alibaba-genai")) else TOKENS_PER_GPU
    gpus = _number(item, opts, "gpus", 1.0, 0.001)
    if per_replica == TOKENS_PER_GPU:
        per_replica *= gpus
    target = _number(item, opts, "throughput", per_replica, 1e-9)
    low = int(_number(item, opts, "min", 1, 0))
    # Room to run at the KPA's 70 % utilization at the peak.
    room = max(low, math.ceil(peak / (target * UTILIZATION)), 1)
    high = int(_number(item, opts, "max", room, max(low, 1)))
    name = opts.get("name") or ("serve" if index == 0 else f"serve{index}")
    if not name.replace("-", "").isalnum():
        raise TraceError(f"--services {item!r}: name={name!r} must be letters, digits and -")
    svc = Service(
        name, target, low, high, gpus,
        int(_number(item, opts, "priority", PRIORITY, 0)),
    )  # fmt: skip
    return svc, load


def parse_spec(spec: str, span: float) -> list[tuple[Service, Load]]:
    """``;``-separated specs → (service, load) per service; names must differ."""
    items = [s.strip() for s in spec.split(";") if s.strip()]
    if not items:
        raise TraceError("--services: no service given")
    out = [parse_one(item, span, i) for i, item in enumerate(items)]
    names = [s.name for s, _ in out]
    if len(set(names)) != len(names):
        raise TraceError(f"--services: service names repeat ({', '.join(names)}); set name=")
    return out
