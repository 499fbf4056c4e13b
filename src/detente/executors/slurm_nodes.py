"""A Slurm partition's nodes as detente's node layout (issue 14's first piece).

`read` asks a real Slurm (its clients, found through ``SLURM_CONF`` and ``PATH``)
for ``scontrol -o show nodes`` and ``scontrol show topology`` and returns what
`detente.control.layout` consumes: one spec per node (name, GPUs from its ``gpu``
GRES, CPUs, memory, its leaf switch as the rack, its features) and the node states
Slurm gives (DRAIN/DOWN with their reason). The parsers are pure functions of the
clients' text, so they are tested on recorded output and on a live local Slurm.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from detente.api.hostlist import expand

_PAIR = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_]*)=")
#: Slurm states that take no new work, and the detente state they map to.
_DOWN = {"DOWN", "FAIL", "FAILING", "NOT_RESPONDING", "POWERED_DOWN", "FUTURE"}
_DRAIN = {"DRAIN", "DRAINING", "DRAINED", "MAINT", "RESERVED"}


def fields(line: str) -> dict[str, str]:
    """``Key=value Key=value …`` of one ``-o`` line; a value runs to the next key (so
    ``Reason=bad fan [root@…]`` keeps its spaces)."""
    keys = list(_PAIR.finditer(line))
    out: dict[str, str] = {}
    for k, nxt in zip(keys, [*keys[1:], None], strict=False):
        end = nxt.start() if nxt is not None else len(line)
        out[k.group(1)] = line[k.end() : end].strip()
    return out


def gpus(gres: str) -> int:
    """GPUs in a ``Gres=`` value: ``gpu:8``, ``gpu:a100:4(S:0-1)``, ``gpu:2,shard:8``."""
    total = 0
    for part in gres.split(","):
        bits = part.split("(")[0].split(":")
        if bits[0] == "gpu" and len(bits) > 1 and bits[-1].isdigit():
            total += int(bits[-1])
    return total


def leaves(topology: str) -> dict[str, str]:
    """Node → its leaf switch (``Level=0``), from ``scontrol show topology``."""
    out: dict[str, str] = {}
    for line in topology.splitlines():
        f = fields(line)
        if f.get("Level") == "0" and f.get("Nodes"):
            for n in expand(f["Nodes"]):
                out[n] = f["SwitchName"]
    return out


def parse(nodes: str, topology: str = "", partition: str | None = None) -> tuple[
    list[dict[str, Any]], dict[str, dict[str, str]]
]:  # fmt: skip
    """(node specs, node states) of ``scontrol -o show nodes`` output, the nodes of
    ``partition`` only if given; racks from ``topology`` (else one rack)."""
    racks = leaves(topology)
    specs, states = [], {}
    for line in nodes.splitlines():
        f = fields(line)
        if "NodeName" not in f:
            continue
        if partition and partition not in f.get("Partitions", "").split(","):
            continue
        name = f["NodeName"]
        feats = f.get("AvailableFeatures", "")
        specs.append({
            "name": name, "gpus": gpus(f.get("Gres", "")),
            "cpu": int(f.get("CPUEfctv") or f.get("CPUTot") or 0) * 1000,
            "memory": int(f.get("RealMemory") or 0) << 20, "rack": racks.get(name, "r0"),
            **({"features": feats} if feats and feats != "(null)" else {}),
            # Where its services are reached (the gateway and the probes).
            **({"addr": f["NodeAddr"]} if f.get("NodeAddr") else {}),
        })  # fmt: skip
        if (state := _state(f.get("State", ""))) is not None:
            states[name] = {"state": state, "reason": f.get("Reason", "") or f"Slurm: {state}"}
    return specs, states


def _state(text: str) -> str | None:
    words = set(text.upper().replace("*", "").split("+"))
    if words & _DOWN:
        return "down"
    return "drain" if words & _DRAIN else None


def read(env: Mapping[str, str] | None = None, partition: str | None = None) -> tuple[
    list[dict[str, Any]], dict[str, dict[str, str]]
]:  # fmt: skip
    """The nodes of a running Slurm (``scontrol`` with ``env``'s ``SLURM_CONF``);
    RuntimeError with scontrol's words if it cannot answer."""

    def run(*args: str) -> str:
        p = subprocess.run(["scontrol", *args], env=env, capture_output=True, text=True,
                           timeout=60)  # fmt: skip
        if p.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)}: {p.stderr.strip()[:500]}")
        return p.stdout

    topo = ""
    with contextlib.suppress(RuntimeError):  # no topology plugin: one rack
        topo = run("show", "topology")
    return parse(run("-o", "show", "nodes"), topo, partition)
