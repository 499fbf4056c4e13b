"""Kubernetes Node documents and detente NodePools → core `Node`s."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import TYPE_CHECKING

from detente.api import manifests as m
from detente.core.cluster import Node, NodeCondition

if TYPE_CHECKING:
    from detente.api.problems import Problems, Source

_PLACEHOLDER = re.compile(r"\{i(?:\s*([/%])\s*(\d+))?(?::([0-9a-z]+))?\}")


def render(pattern: str, i: int) -> str:
    """Fills ``{i}``, ``{i/N}`` (floor division), ``{i%N}`` and ``{i:03d}`` in ``pattern``."""

    def sub(mo: re.Match[str]) -> str:
        op, n, fmt = mo.group(1), mo.group(2), mo.group(3)
        v = i
        if op == "/":
            v = i // int(n)
        elif op == "%":
            v = i % int(n)
        return format(v, fmt or "")

    return _PLACEHOLDER.sub(sub, pattern)


def node_from_doc(src: Source, doc: m.NodeDoc, problems: Problems) -> list[Node]:
    from detente.api.problems import resources

    raw, path = doc.status.allocatable, "status.allocatable"
    if raw is None:
        raw, path = doc.status.capacity, "status.capacity"
    cap = resources(src, path, raw, problems)
    cond = NodeCondition.UP
    if doc.spec.unschedulable:
        cond = NodeCondition.DRAINING
    if any(c.type == "Ready" and c.status != "True" for c in doc.status.conditions):
        cond = NodeCondition.DOWN
    return [Node(doc.metadata.name, cap, MappingProxyType(dict(doc.metadata.labels)), cond)]


def expand_pool(src: Source, doc: m.NodePoolDoc, problems: Problems) -> list[Node]:
    from detente.api.problems import resources

    s = doc.spec
    cap = resources(src, "spec.capacity", s.capacity, problems)
    pattern = s.namePattern or f"{doc.metadata.name}-{{i}}"
    for path, text in [
        ("spec.namePattern", pattern),
        *((f"spec.labels.{k}", v) for k, v in s.labels.items()),
    ]:
        try:
            render(text, 0)
        except ValueError as e:
            problems.add(src, path, f"bad pattern: {e}", text)
            return []
    cond = NodeCondition.DRAINING if s.unschedulable else NodeCondition.UP
    return [
        Node(
            render(pattern, i),
            cap,
            MappingProxyType({k: render(v, i) for k, v in s.labels.items()}),
            cond,
        )
        for i in range(s.count)
    ]
