"""What a real Slurm says of its jobs: ``scontrol -o show job`` parsed (pure
functions, tested on recorded output) and a `Tracker` that asks at most once per
``period`` seconds, for the Slurm executor (`detente.executors.slurm`).

Contracts: `Tracker.jobs` is the last answer Slurm gave (None before the first);
while slurmctld does not answer, `Tracker.reachable` is False and the last answer is
kept — a job is never taken for ended because Slurm could not be asked.
"""

from __future__ import annotations

import subprocess
import threading
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
#: Seconds without an answer after which Slurm counts as not answering.
STALE = 2.0
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
    all of them, however many are tracked). Started (`start`), a thread of its own
    asks, so that no caller ever waits on a slurmctld that does not answer (its
    clients retry for ``MessageTimeout``); not started, `jobs` asks when due."""

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
        self._answered = clock()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_change: Callable[[], None], also: Callable[[], None]) -> None:
        """Asks in a thread from now on; ``on_change`` is called when a job's state
        changed, ``also`` after every answer (the executor's other readings)."""

        def run() -> None:
            while True:
                before = self._jobs
                self.ask()
                if self._jobs is not None and before is not None and _changed(before, self._jobs):
                    on_change()
                also()
                self._due.wait(self.period)
                self._due.clear()

        self._thread = threading.Thread(target=run, name="slurm-tracker", daemon=True)
        self._thread.start()

    @property
    def fresh(self) -> bool:
        """Slurm answered, and lately: a client waiting on a dead slurmctld has not
        said so yet, but its silence for `STALE` seconds says it."""
        if self.reachable and self.clock() - self._answered > STALE:
            self.error = f"no answer for {self.clock() - self._answered:.0f} s"
            return False
        return self.reachable

    @property
    def threaded(self) -> bool:
        return self._thread is not None

    def expire(self) -> None:
        """Asks again soon (after a change detente made)."""
        self._asked = -float("inf")
        self._due.set()

    def jobs(self) -> dict[int, SlurmJob] | None:
        if self._thread is None and self.clock() - self._asked >= self.period:
            self.ask()
        return self._jobs

    def get(self, job_id: int) -> SlurmJob | None:
        return (self.jobs() or {}).get(job_id)

    def by_tag(self, tag: str) -> SlurmJob | None:
        """The job detente submitted with ``tag`` (`TAG` in its comment)."""
        self.jobs()
        return self._tags.get(tag)

    def ask(self) -> None:
        """One ``scontrol -o show job`` now (may wait for slurmctld's timeout)."""
        self._asked = self.clock()
        try:
            p = subprocess.run(["scontrol", "-o", "show", "job"], env=self.env,
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            self.reachable, self.error = False, str(e)
            return
        if p.returncode != 0 and "No jobs in the system" not in p.stdout + p.stderr:
            self.reachable, self.error = False, p.stderr.strip()[:500]
            return
        jobs = parse_jobs(p.stdout)
        self._tags = {tag_of(j.comment): j for j in jobs.values() if tag_of(j.comment)}
        self._jobs = jobs  # one assignment: readers see the old answer or the new one
        self.reachable, self.error, self._answered = True, "", self.clock()


def _changed(before: dict[int, SlurmJob], after: dict[int, SlurmJob]) -> bool:
    return any(before.get(i) is None or before[i].state != j.state for i, j in after.items())


def tag_of(comment: str) -> str:
    """The detente tag in a Slurm job's comment ('' for a job detente did not submit)."""
    return comment.split(":")[1] if comment.startswith(TAG) and ":" in comment[len(TAG) :] else ""
