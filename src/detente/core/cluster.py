"""The static cluster: nodes, their labels and capacity, and the topology tree over them.

A `Cluster` never changes during a cycle; usage lives in `detente.core.state.ClusterState`.

Topology: levels are node label keys, coarsest first, as in Kueue's ``Topology``
(e.g. ``block → rack → kubernetes.io/hostname``). A domain at level *i* is the set of
nodes that share the label values of levels 0..i. The hostname level, if listed, is
implicit: every node is its own leaf. Domains get dense integer ids so per-domain
aggregates are plain arrays in the state (cheap to copy per cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from detente.core.resources import MILLI, Resources

HOSTNAME = "kubernetes.io/hostname"


class NodeCondition(StrEnum):
    UP = "up"
    #: Runs what it has; takes nothing new.
    DRAINING = "draining"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Node:
    """A node's spec. ``capacity`` is what pods may request (Kubernetes' allocatable)."""

    name: str
    capacity: Resources
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    condition: NodeCondition = NodeCondition.UP

    @property
    def gpu_devices(self) -> int:
        return self.capacity.gpu_milli // MILLI

    @property
    def features(self) -> frozenset[str]:
        """What Slurm's ``--constraint`` matches: every label key, every ``key=value``,
        and the comma-separated words of a ``features`` label (Slurm's node Features)."""
        words = {w.strip() for w in self.labels.get("features", "").split(",") if w.strip()}
        return frozenset({*self.labels, *(f"{k}={v}" for k, v in self.labels.items()), *words})


@dataclass(frozen=True, slots=True)
class Domain:
    """One topology domain. ``level`` indexes `Cluster.levels`; the root has level -1."""

    id: int
    level: int
    key: tuple[str, ...]
    parent: int | None
    children: tuple[int, ...]
    nodes: tuple[int, ...]

    @property
    def name(self) -> str:
        return "/".join(self.key) if self.key else "cluster"


class Cluster:
    """Nodes plus the domain tree. Node indices are positions in ``nodes``.

    Contract: built once; callers must not mutate it. ``node_domains[i]`` lists node
    *i*'s domains from the root down to its lowest non-host level.
    """

    def __init__(self, nodes: Sequence[Node], levels: Sequence[str] = ()) -> None:
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"duplicate node name {dup!r}")
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.levels: tuple[str, ...] = tuple(lv for lv in levels if lv != HOSTNAME)
        self.index: dict[str, int] = {n: i for i, n in enumerate(names)}
        self.domains: list[Domain] = []
        self.node_domains: list[tuple[int, ...]] = []
        self._fits_memo: dict[Resources, bool] = {}
        self._allowed_memo: dict[Hashable, frozenset[int]] = {}
        self._build_tree()
        #: Per domain: histogram of UP nodes by GPU devices (what could ever fit).
        self.capacity_hist: list[dict[int, int]] = [{} for _ in self.domains]
        for i, node in enumerate(self.nodes):
            if node.condition != NodeCondition.DOWN:
                for d in self.node_domains[i]:
                    h = self.capacity_hist[d]
                    h[node.gpu_devices] = h.get(node.gpu_devices, 0) + 1
        self.capacity = Resources()
        for n in self.nodes:
            self.capacity = self.capacity + n.capacity
        self.total_gpu_milli = self.capacity.gpu_milli
        self.total_gpus = self.total_gpu_milli // MILLI
        self.max_node_gpus = max((n.gpu_devices for n in self.nodes), default=0)

    def level_index(self, label: str) -> int | None:
        """The level of a label key; ``len(levels)`` for the hostname (node) level."""
        if label == HOSTNAME:
            return len(self.levels)
        try:
            return self.levels.index(label)
        except ValueError:
            return None

    def domains_at(self, level: int) -> list[Domain]:
        return [d for d in self.domains if d.level == level]

    def _build_tree(self) -> None:
        members: dict[tuple[str, ...], list[int]] = {(): list(range(len(self.nodes)))}
        for i, node in enumerate(self.nodes):
            key: tuple[str, ...] = ()
            for lv in self.levels:
                key = (*key, node.labels.get(lv, ""))
                members.setdefault(key, []).append(i)
        # Sorted keys give parents before children and a deterministic id order.
        keys = sorted(members, key=lambda k: (len(k), k))
        ids = {k: i for i, k in enumerate(keys)}
        children: dict[tuple[str, ...], list[int]] = {k: [] for k in keys}
        for k in keys[1:]:
            children[k[:-1]].append(ids[k])
        for k in keys:
            parent = ids[k[:-1]] if k else None
            self.domains.append(
                Domain(ids[k], len(k) - 1, k, parent, tuple(children[k]), tuple(members[k]))
            )
        for node in self.nodes:
            key = ()
            chain = [ids[()]]
            for lv in self.levels:
                key = (*key, node.labels.get(lv, ""))
                chain.append(ids[key])
            self.node_domains.append(tuple(chain))

    def ever_slots(self, domain: int, request: Resources, one_per_node: bool) -> int:
        """Pods of ``request`` an empty ``domain`` could hold, by GPUs alone."""
        g = request.gpu_milli
        hist = self.capacity_hist[domain]
        if g >= MILLI:
            need = g // MILLI
            if one_per_node:
                return sum(c for n, c in hist.items() if n >= need)
            return sum(c * (n // need) for n, c in hist.items() if n >= need)
        nodes = sum(c for n, c in hist.items() if n or not g)
        return nodes if one_per_node else nodes * (MILLI // g if g else 1_000_000)

    def allowed(self, key: Hashable, allows: Callable[[Node], bool]) -> frozenset[int]:
        """Indices of the nodes ``allows`` accepts, memoized under ``key`` (a workload's
        node filter: equal filters accept equal nodes)."""
        hit = self._allowed_memo.get(key)
        if hit is None:
            hit = frozenset(i for i, n in enumerate(self.nodes) if allows(n))
            self._allowed_memo[key] = hit
        return hit

    def fits_some_node(self, request: Resources) -> bool:
        """Does any node's capacity hold one pod of ``request``? (memoized)"""
        hit = self._fits_memo.get(request)
        if hit is None:
            hit = self._fits_memo[request] = any(request.fits_in(n.capacity) for n in self.nodes)
        return hit
