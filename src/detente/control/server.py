"""The REST API (FastAPI): thin routers over `detente.control.jobs` and the store.

Every route but ``/healthz`` needs ``Authorization: Bearer TOKEN``. The reconciler
runs in a background thread for the app's lifetime; a submit or cancel wakes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detente.api.jobspec import (
    INT64,
    MAX_SCRIPT_BYTES,
    Ident,
    JobId,
    Text,
)
from detente.control import (
    accounting,
    audit,
    auth,
    errors,
    jobs,
    launch,
    manifests,
    retention,
    service_routes,
    submit_routes,
    views,
    workloads,
)
from detente.control import nodes as nodes_admin
from detente.control.lease import Keeper, Lease
from detente.control.loop import Loop
from detente.control.metrics import Metrics
from detente.control.reads import Reads, encode
from detente.control.reconciler import Reconciler, usage_from_json
from detente.control.store.models import SHORT, TERMINAL, Event, Job, Pod, User
from detente.core.fairshare import Usage
from detente.executors.local import LocalExecutor
from detente.executors.slurm import SlurmExecutor

log = logging.getLogger("detente")


IdList = Annotated[list[JobId], Field(min_length=1, max_length=100_000)]
QueryText = Annotated[str | None, Query(max_length=10_000, pattern=r"^[A-Za-z0-9._,-]*$")]


FileName = Annotated[Text, Field(max_length=4096)]
DocIndex = Annotated[int, Field(ge=0, le=INT64)]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: IdList


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Ident
    team: Ident
    role: Literal["user", "team-admin", "admin"] = "user"
    #: The Unix account the user's jobs run as (default: the name; multi-user mode).
    unix_user: Ident | None = None


class NodeStateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["drain", "down", "fail", "resume"]
    reason: Annotated[Text, Field(max_length=1000)] = ""


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: Annotated[list[tuple[FileName, DocIndex, Any]], Field(max_length=10_000)]
    dry_run: bool = False
    #: Remove LocalQueues that hold jobs (they wait for the queue to return).
    force: bool = False


def _db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as s:
        yield s


def _actor(request: Request, s: Annotated[Session, Depends(_db)]) -> User:
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    try:
        return auth.authenticate(s, token)
    except auth.AuthError as e:
        s.rollback()
        audit.record(s, "?", "authenticate", f"{request.method} {request.url.path}", "refused",
                     time.time())  # fmt: skip
        s.commit()
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None


def _rec(request: Request) -> Reconciler:
    rec: Reconciler = request.app.state.rec
    return rec


def _wake(request: Request) -> Iterator[None]:
    yield  # after the route has committed
    request.app.state.loop.wake.set()


DB = Annotated[Session, Depends(_db)]
Actor = Annotated[User, Depends(_actor)]
Rec = Annotated[Reconciler, Depends(_rec)]
JobPath = Annotated[int, PathParam(ge=1, le=INT64)]
#: Routes that change jobs or queues wake the reconciler (after the response).
Wakes = Depends(_wake)
router = APIRouter(responses=errors.RESPONSES)


def create_app(
    sessions: sessionmaker[Session], rec: Reconciler, start_loop: bool = True,
    gateway_port: int | None = None, lease: Lease | None = None,
) -> FastAPI:  # fmt: skip
    """The app: routes, the store's sessions, and the reconciler's loop (started with
    the app unless ``start_loop`` is False); with ``gateway_port``, the services
    runtime too (the service controller and the gateway). With ``lease``, the loop and
    the service controller run only while this instance leads (`detente.control.lease`)."""
    metrics = Metrics()
    loop = Loop(rec, metrics, lease=lease)
    keeper = Keeper(lease, lambda _: loop.wake.set()) if lease is not None else None
    if start_loop and isinstance(rec.executor, LocalExecutor | SlurmExecutor):
        rec.executor.watch_exits(loop.wake.set)  # a pod's end wakes the loop at once
    leads = (lambda: lease.leader) if lease is not None else (lambda: True)
    janitor = retention.Janitor(sessions, rec.state_dir, leads)
    runtime = None
    if gateway_port is not None:
        runtime = service_routes.ServicesRuntime(sessions, loop.wake.set, gateway_port, lease=lease)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_loop:
            if keeper is not None:
                lease_ok = lease is not None and lease.tick()  # lead at once if free
                log.info("lease: %s", "leader" if lease_ok else "standby")
                keeper._was = lease_ok
                keeper.thread.start()
            loop.thread.start()
            janitor.thread.start()
            if runtime is not None:
                runtime.start()
        yield
        janitor.stop.set()
        if keeper is not None:
            keeper.stop.set()
        loop.stop.set()
        loop.wake.set()
        if runtime is not None:
            runtime.stop()

    app = FastAPI(title="detente", version="0.1", lifespan=lifespan)
    app.state.sessions, app.state.rec, app.state.loop = sessions, rec, loop
    app.state.metrics, app.state.services, app.state.lease = metrics, runtime, lease
    app.state.reads = Reads()
    app.include_router(submit_routes.routes(DB, Actor, Wakes))
    app.include_router(router)
    app.include_router(service_routes.routes(Actor))
    errors.install(app, sessions)
    with sessions() as s:
        limit = 2 * int(workloads.setting(s, "max_script_bytes", MAX_SCRIPT_BYTES)) + (1 << 20)
    app.add_middleware(errors.BodyLimit, limit=limit)
    return app


@router.get("/healthz", responses={503: {"description": "the scheduler loop is stuck"}})
def healthz(request: Request) -> JSONResponse:
    """200 while the scheduler loop completes steps (or waits as a standby); 503 once
    it has not for a while. ``role``: leader or standby (with the leader's address)."""
    if request.app.state.loop.thread.is_alive() and not request.app.state.loop.healthy():
        return JSONResponse({"status": "scheduler loop stalled"}, status_code=503)
    lease: Lease | None = request.app.state.lease
    if lease is None or lease.leader:
        return JSONResponse({"status": "ok", "role": "leader"})
    return JSONResponse({"status": "ok", "role": "standby", "leader": lease.leader_address})


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(request: Request, _: Actor) -> PlainTextResponse:
    data = generate_latest(request.app.state.metrics.registry)
    return PlainTextResponse(data, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/jobs")
def list_jobs(
    request: Request, s: DB, user: Actor, all: bool = False, owner: QueryText = None,
    queue: QueryText = None, state: QueryText = None, fields: QueryText = None,
) -> Response:  # fmt: skip
    """Jobs the caller may see; not ended ones unless ``all``; filtered like squeue's
    ``-u``, ``-p`` and ``-t`` (comma-separated states, long or short names); with
    ``fields``, only those keys of each row (squeue's ``-o``). Live jobs come from the
    read cache (`detente.control.reads`); the rows are encoded here, once."""
    keep = tuple(fields.split(",")) if fields else None
    if keep and (bad := next((k for k in keep if k not in views.JOB_KEYS), None)) is not None:
        raise HTTPException(422, f"fields: unknown field {bad[:80]!r} "
                                 f"(one of {', '.join(views.JOB_KEYS)})")  # fmt: skip
    owners = set(owner.split(",")) if owner else None
    queues = set(queue.split(",")) if queue else None
    # squeue's -t takes the short names too (PD, R, CG, ...).
    long = {short: name for name, short in SHORT.items()}
    states = {long.get(x, x) for x in state.upper().split(",")} if state else None
    if states and (odd := next((x for x in states if x not in SHORT), None)) is not None:
        raise HTTPException(422, f"state: unknown job state {odd[:80]!r} "
                                 f"(one of {', '.join(SHORT)})")  # fmt: skip
    now, reads = time.time(), request.app.state.reads
    if not all and (states is None or not states & TERMINAL):
        body = reads.live(s, user, (owners, queues, states), keep, now)
    else:
        q = jobs.visible(user)
        if owners:
            q = q.where(Job.user.in_(owners))
        if queues:
            q = q.where(Job.queue.in_(queues))
        if states:
            q = q.where(Job.state.in_(states))
        body = b"[" + b",".join(
            encode(views.job(j, now, reads.facts(j.spec_id, j.spec)), keep)
            for j in s.scalars(q.order_by(Job.id))) + b"]"  # fmt: skip
    return Response(body, media_type="application/json")


@router.get("/v1/history")
def history(s: DB, user: Actor) -> list[dict[str, Any]]:
    """Ended jobs, each with the steps of its last run (sacct's JOBID.N rows)."""
    q = jobs.visible(user).where(Job.state.in_(TERMINAL)).order_by(Job.id)
    now = time.time()
    rows = list(s.scalars(q))
    steps = views.steps_of(s, rows)
    return [{**views.job(j, now), "steps": steps.get(j.id, [])} for j in rows]


@router.get("/v1/priority")
def priority(request: Request, s: DB, user: Actor, rec: Rec) -> list[dict[str, Any]]:
    """Pending jobs the caller may see, in queue order, with their priority terms."""
    mine = set(s.scalars(jobs.visible(user).with_only_columns(Job.id)))
    usage, now = _usage(s, rec), time.time()
    rows = request.app.state.reads.decide(
        s, rec.profile, now,
        lambda snap, q, jobs_: accounting.priorities(snap, q, jobs_, rec.profile, usage, now),
    )  # fmt: skip
    return [r for r in rows if r["id"] in mine]


@router.get("/v1/share")
def share(request: Request, s: DB, user: Actor, rec: Rec) -> list[dict[str, Any]]:
    """Every queue's share, decayed usage and fair-share factor."""
    usage, now = _usage(s, rec), time.time()
    return request.app.state.reads.decide(  # type: ignore[no-any-return]
        s, rec.profile, now, lambda snap, q, _: accounting.shares(snap, q, rec.profile, usage, now)
    )


def _usage(s: Session, rec: Reconciler) -> Usage:
    """The leader's decayed usage in memory, else the last saved to the store."""
    return rec.usage or usage_from_json(workloads.setting(s, "usage"))


@router.get("/v1/jobs/{job_id}")
def describe(request: Request, job_id: JobPath, s: DB, user: Actor, rec: Rec) -> dict[str, Any]:
    j = jobs.get(s, user, job_id)
    pods = list(s.scalars(select(Pod).where(Pod.job_id == j.id, Pod.attempt == j.attempt)))
    events = list(s.scalars(select(Event).where(Event.job_id == j.id).order_by(Event.id)))
    now, prio = time.time(), None
    if j.state == "PENDING":
        prio = request.app.state.reads.decide(
            s, rec.profile, now,
            lambda snap, q, _: manifests.priority_terms(snap, q, rec.profile, j, now),
        )  # fmt: skip
    # The stored environment is its owner's and the admins' to see (it may hold keys).
    env_ok = user.role == "admin" or user.name == j.user
    return views.describe(j, pods, events, time.time(), prio, env_ok)


@router.post("/v1/jobs/cancel", dependencies=[Wakes])
def cancel(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.cancel(s, user, body.ids, time.time())


@router.post("/v1/jobs/hold", dependencies=[Wakes])
def hold(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.hold(s, user, body.ids, True, time.time())


@router.post("/v1/jobs/requeue", dependencies=[Wakes])
def requeue(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.requeue(s, user, body.ids, time.time())


@router.post("/v1/jobs/release", dependencies=[Wakes])
def release(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.hold(s, user, body.ids, False, time.time())


@router.get("/v1/jobs/{job_id}/logs")
def logs(
    job_id: JobPath, s: DB, user: Actor, rec: Rec,
    offset: Annotated[int, Query(ge=0, le=INT64)] = 0,
    pod: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> dict[str, Any]:  # fmt: skip
    j = jobs.get(s, user, job_id)
    data, end = launch.read_logs(rec.state_dir, j, offset, pod)
    out: dict[str, Any] = {"data": data, "offset": end, "done": j.state in TERMINAL}
    if not data and retention.swept(s, j):
        out["removed"] = "its output was removed after its retention (up --keep-job-files)"
    return out


@router.get("/v1/nodes")
def nodes(request: Request, s: DB, _: Actor, rec: Rec) -> list[dict[str, Any]]:
    admin = workloads.setting(s, "node_states", {}) or {}
    return request.app.state.reads.decide(  # type: ignore[no-any-return]
        s, rec.profile, time.time(), lambda snap, _q, _j: views.nodes(snap, admin), queue=False
    )


@router.post("/v1/nodes/{node}/state", dependencies=[Wakes])
def node_state(
    node: Annotated[str, PathParam(max_length=200)], body: NodeStateRequest, s: DB, user: Actor
) -> dict[str, str]:
    return nodes_admin.set_state(s, user, node, body.state, body.reason, time.time())


@router.post("/v1/users", status_code=201)
def create_user(body: UserRequest, s: DB, user: Actor) -> dict[str, str]:
    """Creates (or re-keys) a user; the token is returned this once. The team must
    have a LocalQueue once queues are applied (without applied queues each team gets
    its own queue in the default ClusterQueue)."""
    if user.role != "admin":
        raise HTTPException(403, "only the admin creates users")
    if not workloads.team_known(s, body.team):
        raise HTTPException(400, f"team: no LocalQueue for team {body.team!r}")
    mode = workloads.setting(s, "mode", auth.SINGLE)
    token = auth.create_user(s, body.name, body.team, body.role, body.unix_user, mode)
    audit.record(s, user.name, "token", f"{body.name} team={body.team} role={body.role}",
                 "ok", time.time())  # fmt: skip
    s.commit()
    return {"name": body.name, "token": token}


@router.get("/v1/audit")
def audit_log(
    s: DB, user: Actor, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
) -> list[dict[str, Any]]:
    """The newest audit entries (admins only)."""
    if user.role != "admin":
        raise HTTPException(403, "only the admin reads the audit log")
    return audit.entries(s, limit)


@router.post("/v1/apply", dependencies=[Wakes])
def apply(request: Request, body: ApplyRequest, s: DB, user: Actor, rec: Rec) -> dict[str, Any]:
    now = time.time()
    out = manifests.apply(s, user, body.documents, body.dry_run, rec.profile, now, body.force)
    runtime = request.app.state.services
    if runtime is not None and not body.dry_run:  # known to the gateway at once: requests
        for line in out["plan"].get("services", []):  # are held, not 404, until ready
            runtime.registry.declare(line.split(":", 1)[0])
    return out


@router.post("/v1/delete", dependencies=[Wakes])
def delete(body: ApplyRequest, s: DB, user: Actor) -> dict[str, Any]:
    """Removes the queue objects the documents name (admin)."""
    for f, i, d in body.documents:
        if not isinstance(d, dict):
            raise HTTPException(400, f"{f}: document {i}: must be a mapping")
    return manifests.delete(s, user, body.documents, body.dry_run, time.time(), body.force)
