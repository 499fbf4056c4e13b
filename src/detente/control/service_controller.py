"""The service controller: load → decide → apply, every ``period`` (0.5 s).

1. **Load** the services and their replica jobs; a replica seen running before that
   has ended and was not stopped on purpose is a crash: its slot's restart count
   grows (`detente.core.replicas.after_exit`) — unless its node was lost
   (NODE_FAIL): then it is recreated at once elsewhere.
2. **Probe** running replicas (readiness: the spec's HTTP path, else a TCP connect
   to ``$PORT``; liveness: the spec's path), in parallel, each at its period. A
   replica failing liveness ``failureThreshold`` times in a row is stopped and
   replaced, as a crash.
3. **Scale**: the KPA (`detente.core.kpa`) on the gateway's concurrency (or RPS),
   sampled each tick, or the fixed ``replicas``.
4. **Reconcile** (`detente.core.replicas.reconcile`): create replica jobs (one pod,
   the service's queue and priority class, a fresh ``$PORT``) — the scheduler admits
   them in the same cycle as training — and stop those scale-down or a rollout
   retires. Every write is a compare-and-set; a conflict is retried next tick.
5. **Publish** ready replicas and models to the gateway's registry.

The decisions are the pure core functions; this module only loads and applies.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from detente.api.services import ServiceSpec, replica_spec
from detente.control import jobs, services, workloads
from detente.control.jobs import event
from detente.control.store.models import (
    CANCELLED,
    FAILED,
    NODE_FAIL,
    PENDING,
    RUNNING,
    STOPPING,
    Job,
    Service,
    User,
)
from detente.core import kpa
from detente.core.replicas import Phase, Replica, SlotHistory, after_exit, reconcile
from detente.gateway.registry import Registry

log = logging.getLogger("detente")


@dataclass(slots=True)
class _Probe:
    ready: bool = False
    ready_since: float | None = None
    failures: int = 0
    next_ready: float = 0.0
    next_live: float = 0.0
    last: tuple[float, bool, str] | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceController:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions, self.registry, self.wake, self.clock = sessions, registry, wake, clock
        self.probes: dict[int, _Probe] = {}
        #: Replica jobs seen active: id → (service, slot); and those stopped on purpose.
        self.known: dict[int, tuple[str, int]] = {}
        self.stopping: set[int] = set()
        self.samples: dict[str, list[kpa.Sample]] = {}
        self.kpa_state: dict[str, kpa.KpaState] = {}
        self._specs: dict[tuple[str, int], ServiceSpec] = {}
        #: In-memory view per service for the API (probes, load, restarts, back-off).
        self.live: dict[str, dict[str, Any]] = {}
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="probe")
        self.http = httpx.Client(timeout=1.0)
        #: Node → address, read once (the layout changes only when `up` starts).
        self.addrs: dict[str, str] = {}
        self._addrs_read = False

    def tick(self) -> None:
        now = self.clock()
        changed = False
        with self.sessions() as s:
            rows = {r.name: r for r in s.scalars(select(Service))}
            reps = services.replicas_of(s)
            if not self._addrs_read:
                nodes = workloads.setting(s, "nodes", []) or []
                self.addrs = {n["name"]: n["addr"] for n in nodes if n.get("addr")}
                self._addrs_read = True
            self._exits(s, rows, reps, now)  # step 1
            changed |= self._orphans(s, rows, reps, now)
            specs = {n: self._spec(r) for n, r in rows.items()}
            self._probe(specs, reps, now)  # step 2
            for name, row in rows.items():
                js = reps.get(name, [])
                changed |= self._service(s, row, specs[name], js, now)  # steps 3-4
            try:
                s.commit()
            except StaleDataError:  # a user changed a job or the service: next tick
                s.rollback()
                return
            self._publish(rows, reps)  # step 5
        if changed:
            self.wake()

    # -- step 1 -----------------------------------------------------------------------

    def _exits(self, s: Session, rows: dict[str, Service], reps: dict[str, list[Job]],
               now: float) -> None:  # fmt: skip
        active = {j.id for js in reps.values() for j in js}
        for jid in [j for j in self.known if j not in active]:
            name, slot = self.known.pop(jid)
            probe = self.probes.pop(jid, _Probe())
            if jid in self.stopping or name not in rows:
                self.stopping.discard(jid)
                continue
            row = rows[name]
            job = s.get(Job, jid)
            how = f"{job.state} (exit {job.exit_code})" if job is not None else "gone"
            if job is not None and job.state == NODE_FAIL:
                # Its node was lost: the replica is recreated at once elsewhere (as a
                # ReplicaSet recreates an evicted pod); not a crash of the slot.
                services._note(row, now, "ReplicaLost", f"slot {slot}: {how}")
                continue
            hist = _history(row)
            hist[slot] = after_exit(hist.get(slot, SlotHistory()), probe.ready_since, now)
            _set_history(row, hist)
            services._note(row, now, "ReplicaExited", f"slot {slot}: {how}; restart "
                           f"{hist[slot].restarts}")  # fmt: skip
        for js in reps.values():
            for j in js:
                if j.state != PENDING:
                    self.known[j.id] = (str(j.service), int(j.slot or 0))

    def _orphans(self, s: Session, rows: dict[str, Service], reps: dict[str, list[Job]],
                 now: float) -> bool:  # fmt: skip
        """Replicas of deleted services are stopped."""
        gone = [j for name, js in reps.items() if name not in rows for j in js]
        for j in gone:
            self._stop(s, j, now, "service deleted")
        return bool(gone)

    # -- step 2 -----------------------------------------------------------------------

    def _spec(self, row: Service) -> ServiceSpec:
        """The stored spec, parsed once per revision of the row (not each tick)."""
        key = (row.name, row.version)
        if key not in self._specs:
            self._specs = {k: v for k, v in self._specs.items() if k[0] != row.name}
            self._specs[key] = ServiceSpec.model_validate(row.spec)
        return self._specs[key]

    def _probe(self, specs: dict[str, ServiceSpec], reps: dict[str, list[Job]], now: float) -> None:
        due: list[tuple[int, str, str | None, str, float]] = []
        for name, js in reps.items():
            spec = specs.get(name)
            if spec is None:
                continue
            for j in js:
                if j.state != RUNNING or j.port is None:
                    continue
                p = self.probes.setdefault(j.id, _Probe())
                rd, lv = spec.readiness, spec.liveness
                if now >= p.next_ready:
                    p.next_ready = now + (rd.periodSeconds if rd else 0.5)
                    due.append((j.id, self._where(j), rd.path if rd else None, "ready",
                                rd.timeoutSeconds if rd else 0.5))  # fmt: skip
                if lv is not None and now >= p.next_live and p.ready_since is not None:
                    p.next_live = now + lv.periodSeconds
                    due.append((j.id, self._where(j), lv.path, "live", lv.timeoutSeconds))
        for (jid, _, _, kind, _), (ok, detail) in zip(
            due, self.pool.map(lambda d: self._check(d[1], d[2], d[4]), due), strict=True
        ):
            p = self.probes[jid]
            p.last = (now, ok, f"{kind}: {detail}")
            if kind == "ready":
                p.ready_since = (p.ready_since or now) if ok else None
                p.ready = ok
            else:
                p.failures = 0 if ok else p.failures + 1

    def _where(self, j: Job) -> str:
        """``host:port`` of a replica: its node's address (the layout's ``addr``, as
        Slurm's NodeAddr; 127.0.0.1 for the local executor's virtual nodes)."""
        node = (j.nodes or [""])[0]
        return f"{self.addrs.get(node, '127.0.0.1')}:{j.port}"

    def _check(self, where: str, path: str | None, timeout: float) -> tuple[bool, str]:
        try:
            if path is None:
                host, _, port = where.rpartition(":")
                with socket.create_connection((host, int(port)), timeout=timeout):
                    return True, "tcp ok"
            r = self.http.get(f"http://{where}{path}", timeout=timeout)
            return 200 <= r.status_code < 400, f"HTTP {r.status_code}"
        except (OSError, httpx.HTTPError) as e:
            return False, type(e).__name__

    # -- steps 3 and 4 ----------------------------------------------------------------

    def _service(
        self, s: Session, row: Service, spec: ServiceSpec, js: list[Job], now: float
    ) -> bool:
        live = [j for j in js if j.id not in self.stopping]
        for j in live:  # liveness failures are crashes: stop, then replace
            lv, p = spec.liveness, self.probes.get(j.id)
            if lv is not None and p is not None and p.failures >= lv.failureThreshold:
                self._stop(s, j, now, f"liveness failed {p.failures} times", crash=True)
        replicas = [Replica(str(j.id), int(j.slot or 0), str(j.revision), self._phase(j))
                    for j in js]  # fmt: skip
        ready = sum(r.phase == Phase.READY for r in replicas)
        self._scale(row, spec, ready, now)
        acts = reconcile(row.desired, row.revision, replicas, _history(row),
                         spec.rollout_rules(), now)  # fmt: skip
        byid = {str(j.id): j for j in js}
        for name in acts.stop:
            self._stop(s, byid[name], now, "scaled down or rolled")
        owner = s.get(User, row.owner)
        for slot, rev in acts.create:
            if owner is not None:
                self._create(s, row, spec, owner, slot, rev, now)
        self.live[row.name] = {
            **self.live.get(row.name, {}),
            "backing_off": {str(k): v for k, v in acts.backing_off.items()},
            "restarts": {str(k): h.restarts for k, h in _history(row).items()},
            "replicas": {str(j.id): {"state": self._phase(j).value, "last_probe": (
                list(p.last) if (p := self.probes.get(j.id)) and p.last else None)} for j in js},
        }  # fmt: skip
        return bool(acts.create or acts.stop)

    def _phase(self, j: Job) -> Phase:
        if j.state == PENDING:
            return Phase.PENDING
        if j.state == STOPPING or j.id in self.stopping:
            return Phase.TERMINATING
        p = self.probes.get(j.id)
        return Phase.READY if j.state == RUNNING and p is not None and p.ready else Phase.STARTING

    def _scale(self, row: Service, spec: ServiceSpec, ready: int, now: float) -> None:
        k = spec.kpa()
        conc, rps, waiting = self.registry.sample(row.name)
        self.live.setdefault(row.name, {}).update(concurrency=conc, rps=rps)
        if k is None:
            return
        value = conc if spec.autoscaling and spec.autoscaling.target.concurrency else rps
        samples = self.samples.setdefault(row.name, [])
        samples.append(kpa.Sample(now, value))
        del samples[: max(0, len(samples) - 200)]
        d = kpa.decide(k, samples, ready, now, self.kpa_state.get(row.name, kpa.KpaState()),
                       waiting)  # fmt: skip
        self.kpa_state[row.name] = d.state
        if d.replicas != row.desired:
            scaling = list((row.status or {}).get("scaling", []))[-19:]
            scaling.append({"time": now, "from": row.desired, "to": d.replicas,
                            "stable": round(d.stable, 3), "panic": round(d.panic, 3),
                            "mode": d.mode, "ready": ready, "why": d.why})  # fmt: skip
            row.status = {**(row.status or {}), "scaling": scaling}
            row.desired = d.replicas

    def _create(self, s: Session, row: Service, spec: ServiceSpec, owner: User, slot: int,
                rev: str, now: float) -> None:  # fmt: skip
        port = free_port()
        js = replica_spec(row.name, spec, row.queue, slot, port)
        _, config = workloads.cluster_and_config(s)
        try:
            (jid,) = jobs.submit(s, owner, js, config, now, commit=False)
        except jobs.JobError as e:
            services._note(row, now, "ReplicaRefused", str(e))
            return
        job = s.get(Job, jid)
        assert job is not None
        job.service, job.slot, job.revision, job.port = row.name, slot, rev, port

    def _stop(self, s: Session, j: Job, now: float, why: str, crash: bool = False) -> None:
        if j.state == PENDING:
            j.state, j.end_time, j.reason = CANCELLED, now, why
        elif j.state != STOPPING:
            j.state, j.stop_reason = STOPPING, FAILED if crash else CANCELLED
        event(s, j.id, now, "ReplicaStopped", why)
        if not crash:
            self.stopping.add(j.id)

    # -- step 5 -----------------------------------------------------------------------

    def _publish(self, rows: dict[str, Service], reps: dict[str, list[Job]]) -> None:
        models = {}
        for name, row in rows.items():
            ready = {str(j.id): self._where(j) for j in reps.get(name, [])
                     if j.port is not None and self._phase(j) == Phase.READY}  # fmt: skip
            self.registry.set_endpoints(name, ready)
            if (m := row.spec.get("model")) is not None:
                models[str(m)] = name
        self.registry.set_models(models)
        self.registry.forget(set(rows))
        for gone in [n for n in self.live if n not in rows]:
            del self.live[gone]


def _history(row: Service) -> dict[int, SlotHistory]:
    raw = (row.status or {}).get("history", {})
    return {int(k): SlotHistory(int(v[0]), v[1]) for k, v in raw.items()}


def _set_history(row: Service, hist: dict[int, SlotHistory]) -> None:
    raw = {str(k): [h.restarts, h.last_exit] for k, h in hist.items()}
    row.status = {**(row.status or {}), "history": raw}
