"""Clusters for simulation: shorthands, real node lists, or manifests.

* ``NxG`` (e.g. ``128x8``): N nodes of G GPUs, 96 cores and 1 TiB each, in racks of
  8 nodes and blocks of 4 racks.
* ``openb``: the Alibaba openb GPU node list (1,213 nodes, 6,212 GPUs of 6 models;
  bundled, Apache-2.0 via hkust-adsl/kubernetes-scheduler-simulator).
* ``lingjun``: the 847 hosts of Alibaba's Lingjun training cluster with their real
  three-layer Clos topology (PSW → ASW), 8 GPUs each (bundled; Crux, SIGCOMM'24).
* a path: manifests (`detente.api`) with nodes and, optionally, queues.

Every cluster comes with a queue config: one ClusterQueue ``cluster`` whose quota is
the whole cluster, and a LocalQueue per trace queue (VC), so fair share and
fairness metrics are per VC. Manifests may bring their own queues instead.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from detente.core.cluster import Cluster, Node
from detente.core.queues import ClusterQueue, LocalQueue, QueueConfig, ResourceFlavor, ResourceGroup
from detente.core.quota import Quota
from detente.core.resources import CPU, GPU, MEMORY, Resources
from detente.sim.traces import bundled

BLOCK, RACK = "topology.detente.dev/block", "topology.detente.dev/rack"
PSW, ASW = "network.alibaba/psw", "network.alibaba/asw"


class ClusterError(ValueError):
    pass


@dataclass(slots=True)
class SimCluster:
    cluster: Cluster
    config: QueueConfig | None  # None: build one per trace with `queues_for`
    name: str


def _node(name: str, gpus: int, cpu_milli: int, memory: int, labels: dict[str, str]) -> Node:
    res = Resources({GPU: gpus * 1000, CPU: cpu_milli, MEMORY: memory})
    return Node(name, res, MappingProxyType(labels))


def grid(n: int, gpus: int, rack: int = 8, per_block: int = 4) -> Cluster:
    nodes = [
        _node(
            f"n{i:05d}",
            gpus,
            96_000,
            1 << 40,
            {BLOCK: f"b{i // (rack * per_block)}", RACK: f"r{i // rack}"},
        )
        for i in range(n)
    ]
    return Cluster(nodes, (BLOCK, RACK))


def openb() -> Cluster:
    with bundled("openb_nodes.csv").open(newline="") as f:
        nodes = [
            _node(
                r["sn"],
                int(r["gpu"]),
                int(r["cpu_milli"]),
                int(r["memory_mib"]) << 20,
                {"gpu-model": r["model"]},
            )
            for r in csv.DictReader(f)
        ]
    return Cluster(nodes, ())


def lingjun() -> Cluster:
    with bundled("lingjun_topo.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    nodes = [
        _node(f"host{i:04d}", 8, 128_000, 1 << 40, {PSW: r["PSW"], ASW: f"{r['PSW']}/{r['ASW']}"})
        for i, r in enumerate(rows)
    ]
    return Cluster(nodes, (PSW, ASW))


def build(spec: str) -> SimCluster:
    m = re.fullmatch(r"(\d+)x(\d+)", spec)
    if m:
        n, g = int(m.group(1)), int(m.group(2))
        if n < 1 or g < 0:
            raise ClusterError(f"--cluster {spec!r}: need at least one node")
        return SimCluster(grid(n, g), None, spec)
    if spec == "openb":
        return SimCluster(openb(), None, spec)
    if spec == "lingjun":
        return SimCluster(lingjun(), None, spec)
    from detente.api.loader import ManifestError, load_files

    try:
        man = load_files([spec])
    except ManifestError as e:
        raise ClusterError("\n".join(e.problems)) from None
    if not man.nodes:
        raise ClusterError(f"{spec}: no Node or NodePool documents")
    has_queues = any(c.name != "default" for c in man.config.cluster_queues.values())
    return SimCluster(man.cluster(), man.config if has_queues else None, spec)


def queues_for(
    cluster: Cluster, trace_queues: Iterable[str], vc_shares: dict[str, float] | None = None
) -> QueueConfig:
    """One ClusterQueue holding the whole cluster and a LocalQueue per trace queue; or,
    with ``vc_shares``, one ClusterQueue per queue (VC) with that share of the GPUs as
    nominal quota and no cohort: Philly's virtual clusters, which could not borrow."""
    cap = cluster.capacity
    res = (GPU, CPU, MEMORY)
    group = (ResourceGroup(res, ("default",)),)
    names = sorted(set(trace_queues))
    if vc_shares is None:
        quotas = {("default", r): Quota(max(cap[r], 1)) for r in res}
        cqs = [ClusterQueue("cluster", group, quotas)]
        lqs = [LocalQueue(q, "cluster") for q in names]
    else:
        cqs, lqs = [], []
        for q in names:
            gpus = max(1000, round(cap[GPU] * vc_shares.get(q, 0.0) / 1000) * 1000)
            quotas = {("default", GPU): Quota(gpus)}
            quotas.update({("default", r): Quota(max(cap[r], 1)) for r in (CPU, MEMORY)})
            cqs.append(ClusterQueue(f"vc-{q}", group, quotas))
            lqs.append(LocalQueue(q, f"vc-{q}"))
    return QueueConfig(flavors=[ResourceFlavor("default")], cluster_queues=cqs, local_queues=lqs)
