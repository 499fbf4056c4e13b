"""A job's allocation as its steps see it, and Slurm's task layouts over it.

The control plane writes the allocation into the job's environment as
``DETENTE_ALLOCATION`` (JSON: one entry per node, in the job's node order, with its
task slots, CPUs and GPU devices); `srun` reads it back. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ENV = "DETENTE_ALLOCATION"


@dataclass(frozen=True)
class NodeShare:
    """What a job holds on one node."""

    node: str
    tasks: int
    cpus: float
    gpus: tuple[int, ...]


def to_env(shares: list[NodeShare]) -> str:
    # Not `asdict`: it deep-copies each field, and every pod's environment holds this.
    return json.dumps(
        [{"node": s.node, "tasks": s.tasks, "cpus": s.cpus, "gpus": list(s.gpus)} for s in shares]
    )


def from_env(text: str) -> list[NodeShare]:
    """The allocation from ``DETENTE_ALLOCATION``; ValueError if it is not one."""
    try:
        rows = json.loads(text)
        return [NodeShare(str(r["node"]), int(r["tasks"]), float(r["cpus"]),
                          tuple(int(g) for g in r["gpus"])) for r in rows]  # fmt: skip
    except (TypeError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{ENV} is not an allocation: {e}") from None


def block(ntasks: int, nodes: int) -> list[int]:
    """Slurm's block layout of ``ntasks`` over ``nodes``: as even as can be, the first
    nodes taking one more (``-N2 -n3`` → 2,1), consecutive ranks on one node."""
    base, extra = divmod(ntasks, nodes)
    return [base + (1 if i < extra else 0) for i in range(nodes)]


def tasks_per_node(counts: list[int]) -> str:
    """Slurm's ``SLURM_TASKS_PER_NODE`` form: runs of equal counts as ``2(x3)``."""
    out: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j < len(counts) and counts[j] == counts[i]:
            j += 1
        out.append(f"{counts[i]}(x{j - i})" if j - i > 1 else str(counts[i]))
        i = j
    return ",".join(out)
