"""The reconciler's cache of the store: live jobs as plain records, and the cluster
and queue configuration parsed once per change (issue 11's "a cache, not a rebuild").

Each decision used to re-read every pending and running job through the ORM and
re-parse the node layout and the applied manifests. The cache keeps them between
decisions and re-reads only what changed:

* **Jobs.** One narrow query lists the live jobs' ``(id, version)``; a job whose
  version differs from the cached one (every write of a job row is a compare-and-set
  that bumps it), and a job not yet cached, is reloaded whole; a job no longer live
  is dropped. A pending reason is advisory and written without a version bump: only
  the reconciler writes it, and it updates its cache when it does (`note_reasons`).
* **Cluster and queues.** Parsed again only when what they are built from changes:
  the node layout, node states, applied manifests and teams (read as a key, cheap).

Contract: after `refresh`, `rows` and `cluster_config` are what a fresh read of the
same session would give (`tests/test_cache.py` checks it after random sequences of
submissions, cancels, holds, starts, ends, node and queue changes). Records are not
ORM rows: a decision that writes loads the rows it changes and checks their versions
against the records it decided on (a compare-and-set across the cache).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from detente.control import layout
from detente.control.store.db import plain_rows
from detente.control.store.models import ACTIVE, PENDING, Job, JobSpecRow, Setting, User
from detente.core.cluster import Cluster
from detente.core.queues import QueueConfig

LIVE = (*ACTIVE, PENDING)
#: Rows reloaded per query (SQLite's bound-parameter limit is 999 on old builds).
CHUNK = 900


@dataclass(slots=True)
class CachedJob:
    """A live job as the decision reads it: the `Job` row's columns, by the same
    names (so `detente.control.workloads` and `depends` read either)."""

    id: int
    name: str
    user: str
    team: str
    queue: str
    state: str
    reason: str | None
    spec_id: int
    spec: dict[str, Any]
    submit_time: float
    start_time: float | None
    end_time: float | None
    exit_code: int | None
    nodes: list[str] | None
    devices: list[list[int]] | None
    array_job_id: int | None
    array_task_id: int | None
    attempt: int
    stop_reason: str | None
    kill_at: float | None
    held: bool
    version: int
    service: str | None

    @classmethod
    def of(cls, job: Job) -> CachedJob:
        return cls(**{f.name: getattr(job, f.name) for f in fields(cls)})


#: The `Job` columns a record holds (all but the spec, read once per spec row).
COLUMNS = tuple(f.name for f in fields(CachedJob) if f.name != "spec")


class JobCache:
    def __init__(self, reasons: bool = False) -> None:
        #: Read pending reasons from the store at each refresh (see `refresh`).
        self.reasons = reasons
        self.rows: dict[int, CachedJob] = {}
        #: Each record's version, beside it: the listing is compared with it as sets
        #: of (id, version) pairs (a loop over every live job cost ≈ 5 ms at 5,000).
        self._versions: dict[int, int] = {}
        #: Stored specs by spec id; an array's tasks share one.
        self.specs: dict[int, dict[str, Any]] = {}
        self._cc_key: str | None = None
        self._cc: tuple[Cluster, QueueConfig] | None = None

    def reset(self) -> None:
        """Forgets everything (a new leader, or a restart): the next refresh loads all."""
        self.rows.clear()
        self._versions.clear()
        self.specs.clear()
        self._cc_key, self._cc = None, None

    def refresh(self, s: Session) -> int:
        """Brings `rows` up to date with ``s``; returns how many jobs were reloaded.
        Pending reasons, written without a version bump, are taken from the listing
        when `reasons` is set (a reader's cache; the reconciler, their only writer,
        notes its own: `note_reasons`)."""
        t: Table = Job.__table__  # type: ignore[assignment]
        rows = _listing(s, self.reasons)
        listed = {r[0]: r[1] for r in rows}
        for gone in self._versions.keys() - listed.keys():
            del self.rows[gone], self._versions[gone]
        stale = sorted(i for i, _ in listed.items() - self._versions.items())
        if self.reasons:
            for i, _, why in rows:
                if (r := self.rows.get(i)) is not None:
                    r.reason = why  # a reloaded row reads its own below
        whole = [t.c[c] for c in COLUMNS]
        for k in range(0, len(stale), CHUNK):
            ids = stale[k : k + CHUNK]
            q = select(*whole).where(t.c.id.in_(ids))
            found = {r["id"]: r for r in s.execute(q).mappings()}
            specs = self._specs(s, {r["spec_id"] for r in found.values()})
            for i in ids:
                got = found.get(i)
                if got is not None and got["state"] in LIVE:
                    self.rows[i] = CachedJob(**got, spec=specs[got["spec_id"]])
                    self._versions[i] = got["version"]
                else:  # ended between the two reads
                    self.rows.pop(i, None)
                    self._versions.pop(i, None)
        self._forget_specs()
        return len(stale)

    def _forget_specs(self) -> None:
        """Drops the specs no live job uses, once they outnumber the live jobs (a
        long-running control plane must not keep every spec it ever read)."""
        if len(self.specs) > 2 * len(self.rows) + 1000:
            used = {r.spec_id for r in self.rows.values()}
            self.specs = {i: d for i, d in self.specs.items() if i in used}

    def _specs(self, s: Session, ids: set[int]) -> dict[int, dict[str, Any]]:
        """Stored specs by id: read once each (a spec row never changes)."""
        missing = ids - self.specs.keys()
        if missing:
            q = select(JobSpecRow.id, JobSpecRow.data).where(JobSpecRow.id.in_(missing))
            self.specs.update(dict(s.execute(q).all()))
        return self.specs

    def spec_of(self, job: Job) -> dict[str, Any]:
        """``job``'s stored spec, decoded once per spec row (read now if not cached)."""
        spec = self.specs.get(job.spec_id)
        if spec is None:
            spec = self.specs[job.spec_id] = job.spec
        return spec

    def note_reasons(self, reasons: dict[int, str]) -> None:
        """The reconciler wrote these pending reasons (without a version bump)."""
        for jid, why in reasons.items():
            row = self.rows.get(jid)
            if row is not None and row.state == PENDING:
                row.reason = why

    def wrote(self, changes: Sequence[tuple[int, int, Mapping[str, Any]]]) -> None:
        """The reconciler committed these compare-and-sets (`detente.control.store.cas`):
        the records they applied to take the values and the bumped version, so the
        next refresh need not reload them (a write-through)."""
        for jid, version, values in changes:
            row = self.rows.get(jid)
            if row is not None and row.version == version:
                for k, v in values.items():
                    setattr(row, k, v)
                row.version = self._versions[jid] = version + 1

    def cluster_config(self, s: Session) -> tuple[Cluster, QueueConfig]:
        """The cluster and queue configuration, parsed again only when the node layout,
        node states, applied manifests or teams changed."""
        settings, teams, key = keyed_settings(s, ("nodes", "node_states", "manifests"))
        if key != self._cc_key or self._cc is None:
            cl = layout.cluster(settings.get("nodes", []), settings.get("node_states", {}))
            self._cc = (cl, layout.queue_config(cl, settings.get("manifests"), set(teams)))
            self._cc_key = key
        return self._cc


def keyed_settings(s: Session, keys: Sequence[str]) -> tuple[dict[str, Any], list[str], str]:
    """The settings ``keys`` (those stored), the teams, and a key that changes when any
    of them does: what a parsed configuration is kept under (two queries, no parsing)."""
    settings = {r.key: r.value for r in s.scalars(select(Setting).where(Setting.key.in_(keys)))}
    teams = sorted(set(s.scalars(select(User.team))))
    return settings, teams, json.dumps([settings, teams], sort_keys=True, default=str)


#: The live jobs' ids and versions (and reasons), as constant SQL: read through the
#: session's own connection with a plain DB-API cursor, it costs a tenth of a Core
#: select building a Row per job (≈ 16 ms for 6,000 live jobs at every decision).
_LISTING = "SELECT id, version{} FROM jobs WHERE state IN ({})".format(
    "{}", ", ".join(f"'{state}'" for state in LIVE)
)


def _listing(s: Session, reasons: bool) -> list[tuple[Any, ...]]:
    return plain_rows(s, _LISTING.format(", reason" if reasons else ""))
