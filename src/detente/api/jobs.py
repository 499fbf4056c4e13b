"""The one job model's conversions: manifest → `JobSpec` → `Workload`.

`from_doc` reads a ``kind: Job`` and `from_batch` a Kueue-managed ``batch/v1`` Job
into the same `JobSpec` that ``sbatch`` and the API produce; `to_workload` is the one
place a job becomes the core's `Workload`, for `plan`, the live control plane and the
simulator alike, so the three see every job the same way.
"""

from __future__ import annotations

import shlex
from typing import Any

from detente.api import manifests as m
from detente.api.jobspec import JobSpec, Topology
from detente.api.problems import Problems, Source, duration, resources
from detente.api.quantity import parse_quantity
from detente.core.queues import QueueConfig
from detente.core.resources import CPU, GPU, MEMORY, Resources
from detente.core.workload import NodeFilter, PodSet, TopologyMode, TopologyRequest, Workload


def pod_request(spec: JobSpec) -> Resources:
    """What each pod asks: GPUs and memory per pod, CPUs for all its tasks."""
    return Resources(
        {GPU: round(spec.gpus_per_node * 1000), CPU: round(spec.cpus_per_pod() * 1000),
         MEMORY: spec.mem_per_node, **spec.extra_resources}
    )  # fmt: skip


def to_workload(
    spec: JobSpec,
    *,
    name: str,
    queue: str,
    seq: int,
    submit_time: float,
    config: QueueConfig,
    user: str = "",
    grace: float = 0.0,
) -> Workload:
    """``queue`` is namespaced (``ns/name``); ``grace`` is the profile's default
    checkpoint grace for a spec that declares none."""
    pc = config.priority_classes.get(spec.priority_class or "")
    pods = PodSet("main", spec.pods, pod_request(spec), one_per_node=spec.one_per_node)
    return Workload(
        name, queue, (pods,), seq=seq, submit_time=submit_time,
        priority=pc.value if pc else 0, priority_class=spec.priority_class or "",
        time_limit=spec.time_limit, exclusive=spec.exclusive, user=user or spec.user,
        preemptible=spec.requeue, checkpoint_grace=spec.checkpoint_grace or grace,
        topology=_topology(spec.topology), node_filter=node_filter(spec),
    )  # fmt: skip


def node_filter(spec: JobSpec) -> NodeFilter | None:
    """sbatch's ``-w``, ``-x`` and ``-C`` as the core's filter (None: any node)."""
    if not (spec.nodelist or spec.exclude or spec.constraint):
        return None
    features = tuple(frozenset(alt.split("&")) for alt in (spec.constraint or "").split("|") if alt)
    return NodeFilter(frozenset(spec.nodelist), frozenset(spec.exclude), features)


def _topology(t: Topology | dict[str, str] | None) -> TopologyRequest | None:
    """A stored spec (`detente.api.jobspec.stored`) keeps its topology as a mapping."""
    if t is None:
        return None
    mode, level = (t["mode"], t["level"]) if isinstance(t, dict) else (t.mode, t.level)
    return TopologyRequest(
        TopologyMode.REQUIRED if mode == "required" else TopologyMode.PREFERRED, level
    )


def script_of(command: list[str] | str | None) -> str:
    cmd = [command] if isinstance(command, str) else list(command or ["true"])
    return "#!/bin/bash\n" + (cmd[0] if len(cmd) == 1 else shlex.join(cmd)) + "\n"


def _shape(req: Resources) -> dict[str, Any]:
    return {
        "gpus_per_node": req[GPU] / 1000, "cpus_per_task": req[CPU] / 1000,
        "mem_per_node": req[MEMORY],
        "extra_resources": {k: v for k, v in req.items() if k not in (GPU, CPU, MEMORY)},
    }  # fmt: skip


def from_doc(src: Source, doc: m.JobDoc, problems: Problems) -> JobSpec:
    """A ``kind: Job`` as the one `JobSpec`; bad quantities are reported with their path."""
    s = doc.spec
    req = resources(src, "spec.resources", s.resources, problems)
    limit = duration(src, "spec.timeLimit", s.timeLimit, problems) if s.timeLimit else None
    grace = duration(src, "spec.checkpointGrace", s.checkpointGrace, problems) or 0.0
    topo = None
    if s.topology is not None:
        mode = "required" if s.topology.required else "preferred"
        topo = {"mode": mode, "level": s.topology.required or s.topology.preferred}
    return JobSpec.model_validate(
        {"name": doc.metadata.name, "queue": s.queue, "nodes": s.nodes or 1,
         "replicas": s.replicas, **_shape(req), "time_limit": limit,
         "priority_class": s.priorityClass, "exclusive": s.exclusive,
         "requeue": s.preemptible, "checkpoint_grace": grace, "topology": topo,
         "script": script_of(s.command), "submit_time": s.submitTime or None, "user": s.user}
    )  # fmt: skip


def from_batch(src: Source, doc: m.BatchJobDoc, problems: Problems) -> JobSpec:
    """A Kueue-managed ``batch/v1`` Job: its ``parallelism`` pods as one gang that may
    share nodes (``ntasks``), each asking what its containers request (limits where a
    request is missing, as Kubernetes defaults them); the first container's command,
    arguments and environment."""
    tmpl = doc.spec.template.spec
    total: dict[str, m.Qty] = {}
    for c in tmpl.containers:
        for name, qty in {**c.resources.limits, **c.resources.requests}.items():
            total[name] = _add(total.get(name), qty)
    req = resources(src, "spec.template.spec.containers[].resources", total, problems)
    labels = doc.metadata.labels
    first = tmpl.containers[0]
    limit = doc.spec.activeDeadlineSeconds
    return JobSpec.model_validate(
        {"name": doc.metadata.name, "queue": labels[m.QUEUE_LABEL],
         "ntasks": doc.spec.parallelism, **_shape(req),
         "time_limit": float(limit) if limit else None,
         "priority_class": labels.get(m.PRIORITY_LABEL) or None,
         "script": script_of([*first.command, *first.args]),
         "env": {e.name: e.value for e in first.env}}
    )  # fmt: skip


def _add(a: m.Qty | None, b: m.Qty) -> m.Qty:
    """Two Kubernetes quantities summed ("500m" + 1 → "1.5"); a bad one is left for
    `resources` to report with its path."""
    if a is None:
        return b
    try:
        return str(parse_quantity(a) + parse_quantity(b))
    except ValueError:
        return b
