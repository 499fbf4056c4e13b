"""sbatch's options that size a job together: ``-n/--ntasks`` with ``-N`` and
``--ntasks-per-node``, ``-G/--gpus``, ``--gpus-per-task``, ``--cpus-per-gpu``,
``--mem-per-cpu`` and ``--mem-per-gpu``, resolved into the job model's per-node (or
per-task) quantities once every option is read, as sbatch resolves them.

* ``-N`` and ``-n``: ``-n`` tasks laid out over the nodes in blocks (``-N2 -n3``:
  2,1), each node sized for the most tasks it holds; fewer tasks than nodes lowers
  ``-N`` to ``-n`` with a warning, as sbatch does.
* ``-n`` with ``--ntasks-per-node``: ⌈n ÷ per node⌉ nodes.
* ``-n`` alone: ``n`` one-task pods that may share nodes.
* ``--gpus-per-task``: that many GPUs per task; ``--gpus``: the total, spread evenly
  over the nodes (or tasks), rounded up where it does not divide, with a warning.
* ``--cpus-per-gpu`` sets the CPUs per task from its GPUs; ``--mem-per-cpu`` and
  ``--mem-per-gpu`` the memory per node from its CPUs or GPUs.

Mutually exclusive options are refused, naming both (sbatch's rules).
"""

from __future__ import annotations

from typing import Any

from detente.api.sbatch_argv import SbatchError

EXCLUSIVE = (
    ("mem", "mem-per-cpu", "mem-per-gpu"),
    ("cpus-per-task", "cpus-per-gpu"),
    ("gpus-per-task", "gpus-per-node"),
    ("gpus-per-task", "gres"),
)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def check_exclusive(seen: dict[str, str]) -> None:
    """``seen``: option → where it was given. SbatchError for a forbidden pair."""
    for group in EXCLUSIVE:
        given = [o for o in group if o in seen]
        if len(given) > 1:
            where = ", ".join(f"--{o} ({seen[o]})" for o in given)
            raise SbatchError(f"{where}: these options are mutually exclusive")


def combine(d: dict[str, Any], extra: dict[str, Any], warnings: list[str]) -> None:
    """Resolves ``extra`` (the options read: ``ntasks``, ``gpus``, ``cpus_per_gpu``,
    ``mem_per_cpu``, ``mem_per_gpu``) into ``d``, the job model's fields."""
    _nodelist(d)
    _tasks(d, extra.get("ntasks"), warnings)
    _gpus(d, extra.get("gpus"), warnings)
    if (cpg := extra.get("cpus_per_gpu")) is not None:
        per_task = d.get("gpus_per_task") or _ceil(int(d.get("gpus_per_node", 0) or 0),
                                                   d.get("tasks_per_node", 1))  # fmt: skip
        if not per_task:
            raise SbatchError("--cpus-per-gpu: the job asks for no GPU")
        d["cpus_per_task"] = cpg * per_task
    cpus = d.get("tasks_per_node", 1) * d.get("cpus_per_task", 1)
    if (mpc := extra.get("mem_per_cpu")) is not None:
        d["mem_per_node"] = int(mpc * cpus)
    if (mpg := extra.get("mem_per_gpu")) is not None:
        if not d.get("gpus_per_node"):
            raise SbatchError("--mem-per-gpu: the job asks for no GPU")
        d["mem_per_node"] = int(mpg * d["gpus_per_node"])


def _tasks(d: dict[str, Any], n: int | None, warnings: list[str]) -> None:
    if n is None:
        return
    per = d.get("tasks_per_node")
    if "nodes" in d:
        nodes = d["nodes"]
        if n < nodes:
            warnings.append(f"--ntasks={n} is fewer than --nodes={nodes}: setting nodes to {n}")
            d["nodes"] = nodes = n
        if per is not None and per * nodes < n:
            raise SbatchError(f"--ntasks={n}: more than --nodes={nodes} × "
                              f"--ntasks-per-node={per}")  # fmt: skip
        d["tasks_per_node"] = per or _ceil(n, nodes)
    elif per is not None:
        d["nodes"] = _ceil(n, per)
    else:
        d["ntasks"], d["tasks_per_node"] = n, 1
        return
    if n != d["nodes"] * d["tasks_per_node"]:
        d["total_tasks"] = n


def _gpus(d: dict[str, Any], total: int | None, warnings: list[str]) -> None:
    gpt = d.get("gpus_per_task")
    if gpt is not None:
        d["gpus_per_node"] = gpt * d.get("tasks_per_node", 1)
    if total is None:
        return
    if gpt is not None:
        raise SbatchError("--gpus and --gpus-per-task: give one")
    over = d.get("ntasks") or d.get("nodes", 1)
    if total % over:
        warnings.append(f"--gpus={total} does not divide over {over}: {_ceil(total, over)} each")
    d["gpus_per_node"] = _ceil(total, over)


def _nodelist(d: dict[str, Any]) -> None:
    """``-w``: the job's nodes are exactly those named (their count is ``-N``)."""
    names = d.get("nodelist")
    if not names:
        return
    if len(set(names)) != len(names):
        raise SbatchError("--nodelist names a node twice")
    if d.get("nodes", len(names)) != len(names):
        raise SbatchError(f"--nodelist names {len(names)} node(s) but --nodes={d['nodes']}: "
                          "detente needs -w to name every node of the job")  # fmt: skip
    d["nodes"] = len(names)
