"""Job files kept a while after their job ended, then removed: without it a daemon
that ran millions of pods keeps a log for each, in one folder, for ever.

What goes: the daemon's own files of a pod (its log, its end record and what sits
beside them: `SUFFIXES`) once its job ended more than ``job_files_keep_days`` ago
(``up --keep-job-files``; 0 keeps them for ever, as Slurm's ``MinJobAge=0`` keeps
its records), and a stored spec's script once no job of that spec is younger. What
stays: the store's records (``history``, ``describe``) and whatever a job wrote where
it was told to (``-o``, its working directory). ``logs`` of a swept job says why it
has nothing to show.

The sweep is the leader's (standbys share its files), on a thread of its own every
`PERIOD` — never in the scheduler's step. It covers the jobs that ended between the
last sweep's cutoff (``job_files_swept_to``) and this one's, so each job is looked at
once, and a sweep that fails part-way is done again whole (removing is idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detente.control import workloads
from detente.control.cache import CHUNK
from detente.control.store.models import TERMINAL, Job, Pod

log = logging.getLogger("detente")
#: Seconds between sweeps.
PERIOD = 3600.0
#: Days a job's files are kept after it ended (``up --keep-job-files``).
DEFAULT_KEEP_DAYS = 7.0
#: A pod's files: ``pods/JOB-ATTEMPT-RANK`` with each of these (`detente.control.launch`).
SUFFIXES = (".log", ".exit", ".reason", ".oom", ".steps", ".env", ".json", ".batch",
            ".slurm", ".exit.tmp", ".batch.tmp", ".oom.tmp", ".reason.tmp")  # fmt: skip
#: Seconds the sweeping thread rests after each `CHUNK` jobs: a first sweep over a
#: home of millions of old pods would otherwise hold the interpreter against the
#: scheduler's thread for as long as it takes.
PACE = 0.02


def cutoff(s: Session, now: float) -> float | None:
    """Jobs that ended before this time have had their files removed, or will at the
    next sweep; None if files are kept for ever."""
    days = float(workloads.setting(s, "job_files_keep_days", DEFAULT_KEEP_DAYS))
    return None if days <= 0 else now - days * 86400.0


def swept(s: Session, job: Job) -> bool:
    """Whether ``job``'s files were removed by a sweep."""
    done = workloads.setting(s, "job_files_swept_to")
    end = job.end_time
    return job.state in TERMINAL and end is not None and done is not None and end < float(done)


def sweep(s: Session, state_dir: Path, now: float, pace: float = 0.0) -> int:
    """Removes the files of the jobs that ended since the last sweep's cutoff and
    before this one's, resting ``pace`` seconds after each `CHUNK` jobs; records the
    new cutoff (committed). Returns how many files went."""
    until = cutoff(s, now)
    since = float(workloads.setting(s, "job_files_swept_to", 0.0))
    if until is None or until <= since:
        return 0
    ended = (Job.state.in_(TERMINAL), Job.end_time >= since, Job.end_time < until)
    removed, last, old_specs = 0, 0, set[int]()
    while batch := s.execute(
        select(Job.id, Job.spec_id).where(*ended, Job.id > last).order_by(Job.id).limit(CHUNK)
    ).all():
        last = batch[-1][0]
        ids = [jid for jid, _ in batch]
        old_specs |= {spec for _, spec in batch}
        pods = s.execute(select(Pod.job_id, Pod.attempt, Pod.rank).where(Pod.job_id.in_(ids)))
        removed += sum(_remove(state_dir / "pods" / f"{j}-{a}-{r}") for j, a, r in pods)
        if pace:
            time.sleep(pace)
    specs = sorted(old_specs)
    for k in range(0, len(specs), CHUNK):
        chunk = specs[k : k + CHUNK]
        young = select(Job.spec_id).where(Job.spec_id.in_(chunk))
        young = young.where(Job.state.not_in(TERMINAL) | (Job.end_time >= until))
        for spec in set(chunk) - set(s.scalars(young)):
            removed += _remove_file(state_dir / "specs" / f"{spec}.sh")
    workloads.put_setting(s, "job_files_swept_to", until)
    s.commit()
    return removed


def _remove(stem: Path) -> int:
    return sum(_remove_file(Path(f"{stem}{suffix}")) for suffix in SUFFIXES)


def _remove_file(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as e:  # kept (no later sweep looks at this job again): said once
        log.warning("job files: could not remove %s: %s", path, e.strerror)
        return 0


class Janitor:
    """The sweeping thread: a sweep every ``period`` seconds while ``leads()``, the
    first one ``period / 60`` after start (not in the start-up's rush)."""

    def __init__(self, sessions: sessionmaker[Session], state_dir: Path,
                 leads: Callable[[], bool], period: float = PERIOD,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.sessions, self.state_dir, self.leads = sessions, state_dir, leads
        self.period, self.clock = period, clock
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="janitor", daemon=True)

    def _run(self) -> None:
        wait = self.period / 60
        while not self.stop.wait(wait):
            wait = self.period
            if not self.leads():
                continue
            try:
                with self.sessions() as s:
                    n = sweep(s, self.state_dir, self.clock(), PACE)
                if n:
                    log.info("job files: removed %d of jobs past their retention", n)
            except Exception:  # the store is the truth: the next sweep covers these jobs
                log.exception("sweeping job files failed")
