"""Manifests → core objects, all or nothing.

`load_files` reads every document of every file, validates all of them, and only
then builds the cluster, queues and workloads. Any problem raises `ManifestError`
listing *every* problem as ``FILE: document N (Kind name): field.path: message (got
value)``; nothing is returned half-built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from detente.api import jobs
from detente.api import manifests as m
from detente.api.jobspec import JobSpec
from detente.api.nodes import expand_pool, node_from_doc
from detente.api.problems import ManifestError, Problems, Source, resources
from detente.api.queues import QueueBuilder
from detente.api.services import ServiceDoc, replica_spec
from detente.core.cluster import Cluster, Node
from detente.core.queues import QueueConfig
from detente.core.workload import Workload

__all__ = ["JobEntry", "ManifestError", "Manifests", "Problems", "Source", "resources"]


@dataclass(slots=True)
class JobEntry:
    """A job document: the one `JobSpec` and its `Workload` (`detente.api.jobs`)."""

    workload: Workload
    source: Source
    spec: JobSpec
    running_nodes: list[str] = field(default_factory=list)
    start_time: float | None = None
    #: A `Service`'s replica (its service's name): planned as a one-pod job; applied
    #: live as the service, not as a job.
    service: str | None = None


@dataclass(slots=True)
class Manifests:
    nodes: list[Node]
    levels: tuple[str, ...]
    config: QueueConfig
    jobs: list[JobEntry]
    #: Kueue fields present that detente does not model (accepted, not honoured).
    warnings: list[str] = field(default_factory=list)

    def cluster(self) -> Cluster:
        return Cluster(self.nodes, self.levels)


#: Limits on one manifest file: its size, nesting depth, and the number of nodes it
#: expands to once aliases are followed (a "billion laughs" file is refused).
MAX_FILE_BYTES = 16 << 20
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit (no RecursionError on a 50,000-deep
    document) and a limit on nodes after alias expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None and _expanded(node) > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(f"expands to more than {MAX_EXPANDED_NODES:,} nodes via aliases")
        return node


def _expanded(root: yaml.Node) -> int:
    """Nodes in the document once every alias is expanded (memoized per node)."""
    size: dict[int, int] = {}
    todo: list[tuple[yaml.Node, bool]] = [(root, False)]
    while todo:
        node, done = todo.pop()
        if id(node) in size:
            continue
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [x for pair in node.value for x in pair]
        if done:
            size[id(node)] = min(1 + sum(size[id(k)] for k in kids), MAX_EXPANDED_NODES + 1)
        else:
            todo.append((node, True))
            todo += [(k, False) for k in kids if id(k) not in size]
    return size[id(root)]


def read_documents(paths: Iterable[str | Path]) -> list[tuple[str, int, Any]]:
    out: list[tuple[str, int, Any]] = []
    problems: list[str] = []
    for p in paths:
        try:
            if Path(p).stat().st_size > MAX_FILE_BYTES:
                problems.append(f"{p}: larger than {MAX_FILE_BYTES >> 20} MiB")
                continue
            text = Path(p).read_text()
            docs = list(yaml.load_all(text, Loader=_BoundedLoader))
        except OSError as e:
            problems.append(f"{p}: cannot read: {e.strerror}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{p}: not UTF-8 text")
            continue
        except yaml.YAMLError as e:
            problems.append(f"{p}: not valid YAML: {e}")
            continue
        out += [(str(p), i, d) for i, d in enumerate(docs) if d is not None]
    if problems:
        raise ManifestError(problems)
    return out


def load_files(paths: Iterable[str | Path]) -> Manifests:
    return load_documents(read_documents(paths))


def _validate(
    docs: list[tuple[str, int, Any]], problems: Problems
) -> list[tuple[Source, BaseModel]]:
    out: list[tuple[Source, BaseModel]] = []
    for file, index, doc in docs:
        model = m.model_for(doc)
        name = str((doc.get("metadata") or {}).get("name", "?")) if isinstance(doc, dict) else "?"
        src = Source(file, index, str(doc.get("kind", "?")) if isinstance(doc, dict) else "?", name)
        if isinstance(model, str):
            problems.add(src, "", model)
            continue
        try:
            out.append((src, model.model_validate(doc)))
        except ValidationError as e:
            for err in e.errors():
                path = ".".join(str(x) for x in err["loc"])
                value = err.get("input") if err["type"] != "missing" else None
                problems.add(src, path, err["msg"], value if not isinstance(value, dict) else None)
    return out


def load_documents(docs: list[tuple[str, int, Any]]) -> Manifests:
    problems = Problems()
    valid = _validate(docs, problems)
    problems.fail()
    nodes: list[Node] = []
    queues = QueueBuilder(problems)
    job_docs: list[tuple[Source, m.JobDoc | m.BatchJobDoc]] = []
    services: list[tuple[Source, ServiceDoc]] = []
    for src, doc in valid:
        if isinstance(doc, m.NodeDoc):
            nodes += node_from_doc(src, doc, problems)
        elif isinstance(doc, m.NodePoolDoc):
            nodes += expand_pool(src, doc, problems)
        elif isinstance(doc, m.JobDoc | m.BatchJobDoc):
            job_docs.append((src, doc))
        elif isinstance(doc, ServiceDoc):
            services.append((src, doc))
        else:
            queues.add(src, doc)
    _check_unique(((n.name, "Node") for n in nodes), problems)
    config = queues.build()
    problems.fail()
    assert config is not None
    node_names = {n.name for n in nodes}
    entries = [
        _job(src, doc, seq, config, node_names, problems) for seq, (src, doc) in enumerate(job_docs)
    ]
    for src, sdoc in services:
        entries += _replicas(src, sdoc, len(entries), config)
    _check_unique(((j.workload.name, "Job") for j in entries), problems)
    problems.fail()
    warnings = [
        f"{src.where(path)}: not modelled by detente; ignored"
        for src, doc in valid
        for path in m.unmodelled(doc)
    ]
    return Manifests(nodes, queues.levels, config, entries, warnings)


def _check_unique(names: Iterable[tuple[str, str]], problems: Problems) -> None:
    seen: set[str] = set()
    for name, kind in names:
        if name in seen:
            problems.items.append(f"duplicate {kind} name {name!r}")
        seen.add(name)


def _job(
    src: Source, doc: m.JobDoc | m.BatchJobDoc, seq: int, config: QueueConfig,
    node_names: set[str], problems: Problems,
) -> JobEntry:  # fmt: skip
    if isinstance(doc, m.JobDoc):
        spec, ns, pc_path = jobs.from_doc(src, doc, problems), doc.metadata.namespace, "spec"
    else:
        spec, ns = jobs.from_batch(src, doc, problems), doc.metadata.namespace
        pc_path = f"metadata.labels.{m.PRIORITY_LABEL}"
    if spec.priority_class and spec.priority_class not in config.priority_classes:
        where = f"{pc_path}.priorityClass" if pc_path == "spec" else pc_path
        problems.add(src, where, "unknown WorkloadPriorityClass", spec.priority_class)
    w = jobs.to_workload(
        spec, name=spec.name, queue=f"{ns}/{spec.queue}", seq=seq,
        submit_time=spec.submit_time or 0.0, config=config,
    )  # fmt: skip
    entry = JobEntry(w, src, spec)
    if isinstance(doc, m.JobDoc) and doc.status is not None and doc.status.nodes:
        _running(src, doc.status, entry, spec.pods, node_names, problems)
    return entry


def _replicas(src: Source, doc: ServiceDoc, seq: int, config: QueueConfig) -> list[JobEntry]:
    """A service's first replicas (its fixed count, or the autoscaler's initial scale),
    as one-pod jobs at the service's priority."""
    s = doc.spec
    out = []
    for slot in range(s.initial_replicas()):
        spec = replica_spec(doc.metadata.name, s, s.queue or "default", slot, 0)
        w = jobs.to_workload(spec, name=spec.name, queue=f"{doc.metadata.namespace}/"
                             f"{spec.queue}", seq=seq + slot, submit_time=0.0,
                             config=config)  # fmt: skip
        out.append(JobEntry(w, src, spec, service=doc.metadata.name))
    return out


def _running(
    src: Source, st: m.JobStatus, entry: JobEntry, count: int, names: set[str], problems: Problems
) -> None:
    for i, n in enumerate(st.nodes):
        if n not in names:
            problems.add(src, f"status.nodes[{i}]", "unknown node", n)
    if len(st.nodes) != count:
        problems.add(
            src, "status.nodes", f"a running job lists one node per pod ({count})", st.nodes
        )
    if st.startTime is None:
        problems.add(src, "status.startTime", "a running job needs its start time")
    entry.running_nodes = list(st.nodes)
    entry.start_time = st.startTime
