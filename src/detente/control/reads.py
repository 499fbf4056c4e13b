"""The API's reads from a cache (issue 11): `queue` without re-reading and re-parsing
every job.

`GET /v1/jobs` used to load every live job through the ORM, rebuild each one's spec
as a `JobSpec` and let FastAPI walk the result to encode it: ≈ 110 ms for 2,000 jobs,
taken from the reconciler's share of the interpreter. Here the API keeps its own
`JobCache` (the reconciler's is its thread's alone), brought up to date at each read
by one narrow ``(id, version, reason)`` query — so a read sees every write committed
before it, on a standby too — and the rows are rendered from the records with their
spec's facts computed once per stored spec.

Contract: `live` answers what `detente.control.views.job` would on a fresh read of
the store's live jobs, in id order, filtered as the route asks; `decide` gives what
`detente.control.workloads.load` would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from detente.control import views, workloads
from detente.control.cache import CachedJob, JobCache
from detente.control.jobs import seer
from detente.control.running import RunningSnapshot
from detente.control.store.models import User
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload

T = TypeVar("T")

#: Spec facts kept (a spec row never changes; an array's tasks share one).
FACTS_KEPT = 100_000


class Reads:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache = JobCache(reasons=True)
        self._facts: dict[int, views.SpecFacts] = {}
        #: For `decide`: workloads by job id (for the configuration they were built
        #: under) and the running jobs' snapshot, kept between reads.
        self._workloads: dict[int, Workload] = {}
        self._built_for: object = None
        self._running = RunningSnapshot()
        #: An encoded row by id: (version, reason, fields, JSON), kept while the row
        #: cannot change with time: a pending job's, or one whose ``fields`` leave out
        #: the time-dependent keys (a running job's elapsed time grows).
        self._encoded: dict[int, tuple[int, str | None, Fields, bytes]] = {}

    def facts(self, spec_id: int, data: dict[str, Any]) -> views.SpecFacts:
        f = self._facts.get(spec_id)
        if f is None:
            if len(self._facts) >= FACTS_KEPT:
                self._facts.clear()
            f = self._facts[spec_id] = views.SpecFacts.of(data)
        return f

    def live(self, s: Session, actor: User, filters: Filters, keep: Fields,
             now: float) -> bytes:  # fmt: skip
        """The live jobs ``actor`` may see (`detente.control.jobs.visible`), filtered
        (owners, queues, states: None for any), as a JSON array of `views.job` rows in
        id order, with only the ``keep`` keys if given."""
        with self._lock:
            self._cache.refresh(s)
            for gone in self._encoded.keys() - self._cache.rows.keys():
                del self._encoded[gone]
            wanted = _wanted(actor, filters)
            rows = sorted(self._cache.rows.items())
            out = [self._row(r, keep, now) for _, r in rows if wanted(r)]
        return b"[" + b",".join(out) + b"]"

    def decide(self, s: Session, profile: Profile, now: float,
               read: Callable[[Snapshot, QueueManager, dict[int, Any]], T],
               queue: bool = True) -> T:  # fmt: skip
        """``read(snapshot, queue, rows)`` on what `workloads.load` gives for the
        store now — the running jobs charged, the eligible pending ones queued — built
        from this cache (`nodes`, `describe`'s and `sprio`'s priority terms, `sshare`),
        not from every live job's row; without ``queue``, the queue comes back empty
        (the running jobs suffice). ``read`` runs under this cache's lock and may
        change what it is given (priorities are set on the workloads)."""
        with self._lock:
            self._cache.refresh(s)
            config = self._cache.cluster_config(s)
            if config is not self._built_for:
                self._workloads.clear()
                self._built_for = config
            loaded = workloads.load(s, profile, self._workloads, None, now, live=self._cache,
                                    queue=queue, base=self._running)  # fmt: skip
            return read(*loaded)

    def _row(self, r: CachedJob, keep: Fields, now: float) -> bytes:
        hit = self._encoded.get(r.id)
        if hit is not None and hit[:3] == (r.version, r.reason, keep):
            return hit[3]
        data = encode(views.job(r, now, self.facts(r.spec_id, r.spec)), keep)
        if r.start_time is None or (keep is not None and TIMED.isdisjoint(keep)):
            self._encoded[r.id] = (r.version, r.reason, keep, data)
        return data


Fields = tuple[str, ...] | None
#: The keys of a job's row that change with time alone (`views.job`).
TIMED = frozenset({"elapsed", "gpu_hours"})
Filters = tuple[set[str] | None, set[str] | None, set[str] | None]


def _wanted(actor: User, filters: Filters) -> Callable[[CachedJob], bool]:
    """The rows a read keeps, as one test: `seer` and the filters, each looked at
    once per read rather than once per row (thousands of rows a read)."""
    owners, queues, states = filters
    tests: list[Callable[[CachedJob], bool]] = []
    if (see := seer(actor)) is not None:
        tests.append(lambda r: see(r.user, r.team))
    if owners is not None:
        tests.append(lambda r: r.user in owners)
    if queues is not None:
        tests.append(lambda r: r.queue in queues)
    if states is not None:
        tests.append(lambda r: r.state in states)
    if not tests:
        return lambda r: True
    return lambda r: all(t(r) for t in tests)


def encode(row: dict[str, Any], keep: Fields) -> bytes:
    """One row as compact JSON, only the ``keep`` keys if given."""
    if keep:
        row = {k: row[k] for k in keep}
    return json.dumps(row, separators=(",", ":")).encode()
