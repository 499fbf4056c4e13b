"""Runs the conformance cases (`detente.conformance.cases`) on one system — real
Slurm through its own ``sbatch``/``squeue``/``scontrol``, or detente through its CLI
and API — and compares two runs field by field.

Every case runs in a folder of its own; all are submitted first, then waited for
together. What a case printed is normalized so the two systems compare: its job id
in file names becomes ``JOBID``, node names ``N0``, ``N1``, … in the job's node order.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from detente.api.hostlist import expand
from detente.conformance.cases import Case

_FIELD = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


class System(Protocol):
    name: str

    def sbatch(self, cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]: ...

    def ended(self, ids: set[int]) -> bool: ...

    def states(self, job_id: int) -> list[tuple[str, str]]:
        """(state, exit code) of the job, or of each task of an array, in task order."""
        ...


@dataclass
class Submitted:
    case: Case
    cwd: Path
    job: int | None
    pre: int | None
    answer: subprocess.CompletedProcess[str]


def _parsable(out: str) -> int | None:
    head = out.strip().split(";")[0]
    return int(head) if head.isdigit() else None


def submit(system: System, case: Case, cwd: Path) -> Submitted:
    cwd.mkdir(parents=True, exist_ok=True)
    for name, text in case.files.items():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text(text)
    (cwd / "job.sh").write_text("#!/bin/bash\n" + case.script)
    pre = None
    if case.pre is not None:
        (cwd / "pre.sh").write_text("#!/bin/bash\n" + case.pre)
        pre = _parsable(system.sbatch(cwd, ["--parsable", *case.pre_args, "pre.sh"]).stdout)
    args = [a.replace("{pre}", str(pre)) for a in case.args]
    script = [] if "--wrap" in args else ["job.sh"]
    answer = system.sbatch(cwd, ["--parsable", *args, *script])
    job = None if case.submit_only else _parsable(answer.stdout)
    return Submitted(case, cwd, job, pre, answer)


def wait(system: System, subs: list[Submitted], timeout: float = 180) -> None:
    ids = {i for s in subs for i in (s.job, s.pre) if i is not None}
    deadline = time.time() + timeout
    while not system.ended(ids):
        if time.time() > deadline:
            raise TimeoutError(f"{system.name}: jobs not ended after {timeout:.0f} s")
        time.sleep(0.5)


def fields(system: System, sub: Submitted) -> dict[str, str]:
    """What the case showed, normalized."""
    if sub.case.submit_only:
        return _answer(sub.answer)
    assert sub.job is not None, f"{sub.case.name}: not submitted: {sub.answer.stderr}"
    states = system.states(sub.job)
    out: dict[str, list[str]] = {}
    for task, text in _outputs(sub, len(states)):
        for line in text.splitlines():
            if m := _FIELD.match(line.strip()):
                out.setdefault(m.group(1), []).append(m.group(2))
        out.setdefault("FILES", []).append(task)
    got = {k: "|".join(v) for k, v in out.items()}
    got["STATE"] = ",".join(s for s, _ in states)
    got["EXIT"] = ",".join(e for _, e in states)
    return _normalize(got)


def _outputs(sub: Submitted, tasks: int) -> list[tuple[str, str]]:
    out = []
    for pattern in sub.case.outputs:
        for t in range(tasks if "{task}" in pattern else 1):
            task = _first_task(sub) + t if "{task}" in pattern else 0
            name = pattern.format(id=sub.job, task=task)
            try:
                out.append((pattern.format(id="JOBID", task=task), (sub.cwd / name).read_text()))
            except OSError:
                out.append((pattern.format(id="JOBID", task=task) + ":missing", ""))
    return out


def _first_task(sub: Submitted) -> int:
    m = re.search(r"--array=(\d+)", " ".join(sub.case.args))
    return int(m.group(1)) if m else 0


def _normalize(got: dict[str, str]) -> dict[str, str]:
    """Node names as ``N0``, ``N1``, … in the job's node order (``NODELIST``). Job ids
    appear only in file names, already written ``JOBID``."""
    names = expand(got.pop("NODELIST", "").split("|")[0]) if got.get("NODELIST") else []
    out = {}
    for k, v in got.items():
        for i, n in enumerate(names):
            v = re.sub(rf"\b{re.escape(n)}\b", f"N{i}", v)
        out[k] = v
    return out


def _answer(p: subprocess.CompletedProcess[str]) -> dict[str, str]:
    text = (p.stderr + p.stdout).strip()
    shape = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "TIME", text.splitlines()[0] if text else "")
    shape = re.sub(r"\bJob \d+", "Job JOBID", shape)
    return {"RC": "0" if p.returncode == 0 else "error", "SAYS": shape[:120]}


def run(system: System, cases: tuple[Case, ...], root: Path) -> dict[str, dict[str, str]]:
    """Every case on ``system``: case name → normalized fields."""
    subs = [submit(system, c, root / f"case{i:02d}") for i, c in enumerate(cases)]
    wait(system, subs)
    return {s.case.name: fields(system, s) for s in subs}


def compare(
    slurm: dict[str, dict[str, str]], det: dict[str, dict[str, str]], cases: tuple[Case, ...]
) -> list[dict[str, Any]]:
    """One row per case: each system's fields, the fields that differ, and why (the
    case's ``known`` reasons; a difference without one is a failure)."""
    rows = []
    for c in cases:
        a, b = slurm.get(c.name, {}), det.get(c.name, {})
        diff = sorted(k for k in set(a) | set(b) if k != "SAYS" and a.get(k) != b.get(k))
        rows.append({
            "case": c.name, "slurm": a, "detente": b, "differs": diff,
            "why": {k: c.known[k] for k in diff if k in c.known},
            "same": not [k for k in diff if k not in c.known],
        })  # fmt: skip
    return rows


def env_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}
