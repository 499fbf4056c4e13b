"""A pod's cgroups: its memory limit (``--mem``) and CPU quota, one group per
controller named after the pod's token, under the control plane's own group (v1: each
controller's hierarchy; v2: the unified one, where it offers the controller).

`prepare` creates the groups and writes their limits — in the control plane for the
bash launcher (a ``mkdir`` and a ``grep`` were processes per pod there, doubling its
cost), in the Python shim for itself — and the pod's first process joins them; `remove`
takes them away once the pod has ended. For a pod the spawner starts as its task,
`plan` says what to make, and the spawner makes (or reuses) and joins them. Only
root can; elsewhere a limit is not enforced and the pod's log says so.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

PERIOD_US = 100_000
#: The controllers a pod's limits use.
CONTROLLERS = ("memory", "cpu")


def base_dir(controller: str) -> Path | None:
    """This process's cgroup folder for ``controller``, or None."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
        if ctrls == "" and controller in read("/sys/fs/cgroup/cgroup.controllers").split():
            return Path("/sys/fs/cgroup") / path.lstrip("/")
    return None


def read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def limits(memory: int, cpu_milli: int) -> dict[str, dict[str, str]]:
    """controller → {v2 file: value, v1 file: value} for a pod's limits."""
    out: dict[str, dict[str, str]] = {}
    if memory:
        out["memory"] = {"memory.max": str(memory), "memory.limit_in_bytes": str(memory)}
    if cpu_milli:
        quota = max(1000, cpu_milli * PERIOD_US // 1000)
        out["cpu"] = {"cpu.max": f"{quota} {PERIOD_US}", "cpu.cfs_quota_us": str(quota)}
    return out


#: A group to make: its folder, and its limit files with their values (v1 and v2
#: names alike: those the controller has are written).
Plan = tuple[str, list[tuple[str, str]]]


def plan(
    folder: str, memory: int, cpu_milli: int, base: Callable[[str], Path | None] = base_dir
) -> tuple[list[Plan], list[str]]:
    """The pod's groups (folders called ``folder`` under ``base(controller)``) and the
    limit files to write in them, without making them (`prepare` makes them; the pod
    spawner makes or reuses a simple pod's: `detente.executors.spawner`), and a warning
    for each limit no controller here can enforce. Nothing but as root."""
    if os.geteuid() != 0:
        return [], []
    out: list[Plan] = []
    warnings: list[str] = []
    for controller, files in limits(memory, cpu_milli).items():
        try:
            parent = base(controller)
            if parent is None:
                raise OSError(f"no {controller} cgroup controller")
        except OSError as e:
            warnings.append(f"detente: {controller} limit not enforced: {e}")
            continue
        out.append((str(parent / folder), list(files.items())))
    return out, warnings


def prepare(
    folder: str, memory: int, cpu_milli: int, base: Callable[[str], Path | None] = base_dir
) -> tuple[list[Path], list[str]]:
    """`plan`'s groups, created with their limits written (not joined), and a warning
    for each limit that cannot be enforced. Nothing but as root."""
    planned, warnings = plan(folder, memory, cpu_milli, base)
    made: list[Path] = []
    for d, files in planned:
        try:
            Path(d).mkdir(exist_ok=True)
            for name, value in files:
                if (Path(d) / name).exists():
                    (Path(d) / name).write_text(value)
            made.append(Path(d))
        except OSError as e:
            controller = files[0][0].partition(".")[0]  # memory.max → memory
            warnings.append(f"detente: {controller} limit not enforced: {e}")
    return made, warnings


def out_of_memory(groups: list[Path]) -> bool:
    """Whether a memory group among ``groups`` saw the kernel kill a task."""
    for d in groups:
        events = read(d / "memory.events") or read(d / "memory.oom_control")
        if any(ln.split()[0] == "oom_kill" and int(ln.split()[1]) > 0
               for ln in events.splitlines() if len(ln.split()) == 2):  # fmt: skip
            return True
    return False


def remove(groups: list[Path]) -> None:
    """Removes the groups; one a stray process still holds stays."""
    for d in groups:
        with contextlib.suppress(OSError):
            d.rmdir()


def sweep(parents: list[Path], older_than: float) -> int:
    """Removes the pods' groups (``detente-*``) under ``parents`` made more than
    ``older_than`` seconds ago that no process is in (the kernel refuses the others);
    how many. A group is joined within milliseconds of being made, so one this old
    and empty is a leftover."""
    removed = 0
    cutoff = time.time() - older_than
    for parent in parents:
        with contextlib.suppress(OSError):
            for d in parent.glob("detente-*"):
                with contextlib.suppress(OSError):
                    if d.stat().st_mtime < cutoff:
                        d.rmdir()
                        removed += 1
    return removed
