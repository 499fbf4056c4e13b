"""Which active jobs a settle must look at (issue 11: a settle without reading every
active job's rows, pods and files at every step).

A job needs settling when one of its pods ended, when it is stopping (signals to
escalate, a kill deadline), when its time limit or ``--signal`` time has come, or
while a pod of it is gone without an exit file (`LOST_GRACE`). The executor says which
processes ended (`LocalExecutor.ended`: the pidfds its exit watcher saw close); one
narrow query lists the active jobs' states and start times, another their live pods'
pids. Everything is looked at every `SWEEP` seconds regardless, and at every step
when the executor cannot say what ended (an engine's, or no pidfd here).

Contract: a job that is not returned has, as far as the store and the executor can
tell, nothing to settle now; a pid reported ended stays pending until the step that
looked at it commits (`committed`), so a settle lost to a compare-and-set is not lost.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from detente.control.cache import CHUNK
from detente.control.store.db import plain_rows
from detente.control.store.models import ACTIVE, RUNNING, STOPPING, JobSpecRow, Pod

#: Seconds between full settles (every active job read).
SWEEP = 5.0
#: Spec offsets kept (spec rows never change).
KEPT = 100_000


class Due:
    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self._pids: set[int] = set()  # reported ended, not yet settled by a commit
        self._seen: set[int] = set()  # those the last answer covered
        self._swept = -math.inf
        #: Spec id → seconds after its start a job is due (limit less --signal time).
        self._offsets: dict[int, float | None] = {}

    def jobs(self, s: Session, now: float, gone: dict[int, int]) -> set[int] | None:
        """The ids of the active jobs to settle now; None for every one. ``gone``: pod
        id → job id of the pods seen gone without an exit file."""
        read = getattr(type(self.executor), "ended", None)
        pids = read(self.executor) if callable(read) else None
        if pids is not None:
            self._pids |= pids
        self._seen = set(self._pids)
        if pids is None or now - self._swept >= SWEEP:
            self._swept = now
            return None
        rows = _active(s)
        due = {i for i, state, _, _ in rows if state == STOPPING} | set(gone.values())
        running = [(i, start, spec) for i, state, start, spec in rows
                   if state == RUNNING and start is not None]  # fmt: skip
        offsets = self._offsets_of(s, {spec for _, _, spec in running})
        due.update(i for i, start, spec in running
                   if (off := offsets.get(spec)) is not None and now >= start + off)  # fmt: skip
        if self._seen:
            due |= self._jobs_of(s, [i for i, *_ in rows], self._seen)
        return due

    def committed(self) -> None:
        """The step that used the last answer committed: its ended pids are settled."""
        self._pids -= self._seen
        self._seen = set()

    def _jobs_of(self, s: Session, active: list[int], pids: set[int]) -> set[int]:
        p: Table = Pod.__table__  # type: ignore[assignment]
        out: set[int] = set()
        for k in range(0, len(active), CHUNK):
            q = select(p.c.job_id, p.c.pid).where(
                p.c.job_id.in_(active[k : k + CHUNK]), p.c.done.is_(False)
            )
            out.update(jid for jid, pid in s.execute(q) if pid in pids)
        return out

    def _offsets_of(self, s: Session, specs: set[int]) -> dict[int, float | None]:
        missing = sorted(specs - self._offsets.keys())
        if len(self._offsets) + len(missing) > KEPT:
            self._offsets.clear()
            missing = sorted(specs)
        for k in range(0, len(missing), CHUNK):
            q = select(JobSpecRow.id, JobSpecRow.data).where(
                JobSpecRow.id.in_(missing[k : k + CHUNK])
            )
            for sid, data in s.execute(q):
                self._offsets[sid] = _offset(data)
        return self._offsets


def _offset(spec: dict[str, Any]) -> float | None:
    limit = spec.get("time_limit")
    if limit is None:
        return None
    warn = spec.get("signal")
    return float(limit) - (float(warn["seconds"]) if warn else 0.0)


#: The active jobs' ids, states, start times and specs, as constant SQL on a plain
#: DB-API cursor (as the cache's listing): a Core select built a Row per job, ≈ 2 ms
#: a step at 900 running jobs.
_ACTIVE = "SELECT id, state, start_time, spec_id FROM jobs WHERE state IN ({})".format(
    ", ".join(f"'{state}'" for state in ACTIVE)
)


def _active(s: Session) -> list[tuple[Any, ...]]:
    return plain_rows(s, _ACTIVE)
