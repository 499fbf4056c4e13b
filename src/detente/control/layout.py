"""The live cluster: its nodes (``--nodes NxG`` virtual nodes, or this machine as
one node) and its queue config (applied manifests, or one queue per team)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from types import MappingProxyType
from typing import Any

from detente.api.loader import load_documents
from detente.core.cluster import Cluster, Node, NodeCondition
from detente.core.queues import (
    ClusterQueue,
    LocalQueue,
    PriorityClass,
    QueueConfig,
    ResourceFlavor,
    ResourceGroup,
)
from detente.core.quota import Quota
from detente.core.resources import CPU, GPU, MEMORY, Resources

RACK = "topology.detente.dev/rack"
NAMESPACE = "default"


class LayoutError(ValueError):
    pass


def machine() -> dict[str, int]:
    """This machine's CPUs (milli), memory (bytes) and NVIDIA GPUs."""
    gpus = 0
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
            gpus = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            gpus = 0
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": (os.cpu_count() or 1) * 1000, "memory": mem, "gpus": gpus}


def node_specs(spec: str | None) -> list[dict[str, Any]]:
    """``NxG``: N virtual nodes of G GPUs in racks of 8; None: this machine as one node
    with its real CPUs, memory and GPUs."""
    m = machine()
    if spec is None:
        return [{"name": socket.gethostname(), "gpus": m["gpus"], "cpu": m["cpu"],
                 "memory": m["memory"], "rack": "r0"}]  # fmt: skip
    found = re.fullmatch(r"(\d+)x(\d+)", spec)
    if not found or int(found.group(1)) < 1:
        raise LayoutError(f"--nodes: expected NxG such as 4x8 (got {spec!r})")
    n, g = int(found.group(1)), int(found.group(2))
    # A virtual node is shaped like a GPU server (DGX-like: 16 CPUs and 128 GiB per
    # GPU), never smaller than this machine, so Slurm-style requests fit as they would.
    cpu = max(m["cpu"], 16_000 * g)
    mem = max(m["memory"], (128 << 30) * g)
    return [
        {
            "name": f"node{i}",
            "gpus": g,
            "cpu": cpu,
            "memory": mem,
            "rack": f"r{i // 8}",
        }
        for i in range(n)
    ]


def cluster(specs: list[dict[str, Any]], states: dict[str, Any] | None = None) -> Cluster:
    """The nodes of ``specs``; ``states`` (node → {"state": drain|down, "reason"}) sets
    their condition (drained nodes run what they have and take nothing new)."""
    states = states or {}
    conditions = {"drain": NodeCondition.DRAINING, "down": NodeCondition.DOWN}
    nodes = [
        Node(
            s["name"],
            Resources({GPU: s["gpus"] * 1000, CPU: s["cpu"], MEMORY: s["memory"]}),
            MappingProxyType(
                {RACK: s["rack"], **({"features": s["features"]} if s.get("features") else {})}
            ),
            conditions.get(states.get(s["name"], {}).get("state", ""), NodeCondition.UP),
        )
        for s in specs
    ]
    return Cluster(nodes, (RACK,))


def queue_config(cl: Cluster, manifests: list[list[Any]] | None, teams: set[str]) -> QueueConfig:
    """The applied manifests' queues. Without a ClusterQueue among them: one
    ClusterQueue ``default`` holding the whole cluster and a LocalQueue per team (and
    ``default``), with the manifests' priority classes."""
    classes: list[PriorityClass] = []
    if manifests:
        docs = [(str(f), int(i), d) for f, i, d in manifests]
        config = load_documents(docs).config
        if any(isinstance(d, dict) and d.get("kind") == "ClusterQueue" for _, _, d in docs):
            return config
        classes = list(config.priority_classes.values())
    res = (GPU, CPU, MEMORY)
    quotas = {("default", r): Quota(max(cl.capacity[r], 1)) for r in res}
    cq = ClusterQueue("default", (ResourceGroup(res, ("default",)),), quotas)
    lqs = [LocalQueue(t, "default", NAMESPACE) for t in sorted(teams | {"default"})]
    return QueueConfig(
        flavors=[ResourceFlavor("default")], cluster_queues=[cq], local_queues=lqs,
        priority_classes=classes,
    )  # fmt: skip
