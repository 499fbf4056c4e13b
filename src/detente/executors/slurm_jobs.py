"""What a real Slurm says of its jobs: ``scontrol -o show job`` parsed (pure
functions, tested on recorded output) and a `Tracker` that asks at most once per
``period`` seconds, for the Slurm executor (`detente.executors.slurm`).

Contracts: `Tracker.jobs` is the last answer Slurm gave (None before the first);
while slurmctld does not answer, `Tracker.reachable` is False and the last answer is
kept — a job is never taken for ended because Slurm could not be asked.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from detente.api.hostlist import expand
from detente.executors.slurm_nodes import fields

#: Slurm job states after which nothing of the job runs.
TERMINAL = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})  # fmt: skip
#: What the executor puts in ``--comment``: ``detente:<token base>:<pods>:<b|p>``.
TAG = "detente:"


@dataclass(frozen=True, slots=True)
class SlurmJob:
    id: int
    state: str
    #: The batch script's exit status as a shell reports it (128+N for signal N);
    #: None while it runs.
    exit_code: int | None
    start: float | None
    end: float | None
    nodes: tuple[str, ...]
    comment: str
    reason: str

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL


def timestamp(text: str) -> float | None:
    """Slurm's local ``YYYY-MM-DDTHH:MM:SS`` as epoch seconds; None for Unknown/None."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def exit_status(code: str, state: str) -> int | None:
    """``ExitCode=X:Y`` (status X, signal Y) as one shell-style code. A job cancelled
    before its script could exit (``0:0``) counts as killed by SIGTERM, never as a
    success."""
    status, _, sig = code.partition(":")
    if not status.isdigit() or state not in TERMINAL:
        return None
    if sig.isdigit() and int(sig):
        return 128 + int(sig)
    if state in ("CANCELLED", "DEADLINE", "TIMEOUT", "PREEMPTED") and status == "0":
        return 128 + 15
    return int(status)


def parse_jobs(text: str) -> dict[int, SlurmJob]:
    """Jobs of ``scontrol -o show job`` output by id (array tasks under their own)."""
    out = {}
    for line in text.splitlines():
        f = fields(line)
        if not f.get("JobId", "").isdigit():
            continue
        state = f.get("JobState", "")
        nodes = f.get("NodeList", "")
        out[int(f["JobId"])] = SlurmJob(
            id=int(f["JobId"]), state=state, exit_code=exit_status(f.get("ExitCode", ""), state),
            start=timestamp(f.get("StartTime", "")) if state != "PENDING" else None,
            end=timestamp(f.get("EndTime", "")) if state in TERMINAL else None,
            nodes=tuple(expand(nodes)) if nodes and nodes != "(null)" else (),
            comment=f.get("Comment", ""), reason=f.get("Reason", ""),
        )  # fmt: skip
    return out


class Tracker:
    """Slurm's jobs, asked at most every ``period`` seconds (one ``scontrol`` call for
    all of them, however many are tracked)."""

    def __init__(
        self, env: Mapping[str, str], clock: Callable[[], float] = time.monotonic,
        period: float = 0.5,
    ) -> None:  # fmt: skip
        self.env, self.clock, self.period = dict(env), clock, period
        self.reachable = True
        self.error = ""
        self._jobs: dict[int, SlurmJob] | None = None
        self._tags: dict[str, SlurmJob] = {}
        self._asked = -float("inf")

    def expire(self) -> None:
        """The next `jobs` asks Slurm again (after a change detente made)."""
        self._asked = -float("inf")

    def jobs(self) -> dict[int, SlurmJob] | None:
        if self.clock() - self._asked >= self.period:
            self._asked = self.clock()
            self._ask()
        return self._jobs

    def get(self, job_id: int) -> SlurmJob | None:
        return (self.jobs() or {}).get(job_id)

    def by_tag(self, tag: str) -> SlurmJob | None:
        """The job detente submitted with ``tag`` (`TAG` in its comment)."""
        self.jobs()
        return self._tags.get(tag)

    def _ask(self) -> None:
        try:
            p = subprocess.run(["scontrol", "-o", "show", "job"], env=self.env,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            self.reachable, self.error = False, str(e)
            return
        if p.returncode != 0 and "No jobs in the system" not in p.stdout + p.stderr:
            self.reachable, self.error = False, p.stderr.strip()[:500]
            return
        self.reachable, self.error = True, ""
        self._jobs = parse_jobs(p.stdout)
        self._tags = {tag_of(j.comment): j for j in self._jobs.values() if tag_of(j.comment)}


def tag_of(comment: str) -> str:
    """The detente tag in a Slurm job's comment ('' for a job detente did not submit)."""
    return comment.split(":")[1] if comment.startswith(TAG) and ":" in comment[len(TAG) :] else ""
