"""The REST API (FastAPI): thin routers over `detente.control.jobs` and the store.

Every route but ``/healthz`` needs ``Authorization: Bearer TOKEN``. The reconciler
runs in a background thread for the app's lifetime; a submit or cancel wakes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from detente.control import auth, jobs, launch, manifests, views, workloads
from detente.control import nodes as nodes_admin
from detente.control.metrics import Metrics
from detente.control.reconciler import Reconciler
from detente.control.spec import JobSpec
from detente.control.store.models import TERMINAL, Event, Job, Pod, User

log = logging.getLogger("detente")


class Loop:
    """The reconciler's thread: a step every ``period`` seconds, or sooner when woken."""

    def __init__(self, rec: Reconciler, metrics: Metrics, period: float = 0.2) -> None:
        self.rec, self.metrics, self.period = rec, metrics, period
        self.wake, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def _run(self) -> None:
        log.info("recovered after start: %s", self.rec.recover())
        while not self.stop.is_set():
            try:
                self.metrics.observe(self.rec.step())
            except Exception:  # keep scheduling; the store is the truth, retry next step
                log.exception("reconciler step failed")
            self.wake.wait(self.period)
            self.wake.clear()


class CancelRequest(BaseModel):
    ids: list[int]


class UserRequest(BaseModel):
    name: str
    team: str
    role: str = "user"


class NodeStateRequest(BaseModel):
    state: str
    reason: str = ""


class ApplyRequest(BaseModel):
    documents: list[tuple[str, int, Any]]
    dry_run: bool = False


def _db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as s:
        yield s


def _actor(request: Request, s: Annotated[Session, Depends(_db)]) -> User:
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    try:
        return auth.authenticate(s, token)
    except auth.AuthError as e:
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
#: Routes that change jobs or queues wake the reconciler (after the response).
Wakes = Depends(_wake)
router = APIRouter()


def create_app(
    sessions: sessionmaker[Session], rec: Reconciler, start_loop: bool = True
) -> FastAPI:
    """The app: routes, the store's sessions, and the reconciler's loop (started with
    the app unless ``start_loop`` is False)."""
    metrics = Metrics()
    loop = Loop(rec, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_loop:
            loop.thread.start()
        yield
        loop.stop.set()
        loop.wake.set()

    app = FastAPI(title="detente", version="0.1", lifespan=lifespan)
    app.state.sessions, app.state.rec, app.state.loop = sessions, rec, loop
    app.state.metrics = metrics
    app.include_router(router)

    @app.exception_handler(jobs.JobError)
    def _job_error(_: Request, e: jobs.JobError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(manifests.ApplyError)
    @app.exception_handler(auth.AuthError)
    def _bad_request(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    return app


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(request: Request, _: Actor) -> PlainTextResponse:
    data = generate_latest(request.app.state.metrics.registry)
    return PlainTextResponse(data, media_type=CONTENT_TYPE_LATEST)


@router.post("/v1/jobs", status_code=201, dependencies=[Wakes])
def submit(spec: JobSpec, s: DB, user: Actor) -> dict[str, list[int]]:
    cl, config = workloads.cluster_and_config(s)
    queues = {lq.name for lq in config.local_queues.values()}
    if (why := workloads.never_fits(cl, config, spec)) is not None:
        raise HTTPException(400, why)
    return {"ids": jobs.submit(s, user, spec, queues, time.time())}


@router.get("/v1/jobs")
def list_jobs(
    s: DB, user: Actor, all: bool = False, owner: str | None = None,
    queue: str | None = None, state: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Jobs the caller may see; not ended ones unless ``all``; filtered like squeue's
    ``-u``, ``-p`` and ``-t`` (comma-separated states)."""
    q = jobs.visible(user)
    if not all and state is None:
        q = q.where(Job.state.not_in(TERMINAL))
    if owner:
        q = q.where(Job.user.in_(owner.split(",")))
    if queue:
        q = q.where(Job.queue.in_(queue.split(",")))
    if state:
        q = q.where(Job.state.in_(state.upper().split(",")))
    now = time.time()
    return [views.job(j, now) for j in s.scalars(q.order_by(Job.id))]


@router.get("/v1/history")
def history(s: DB, user: Actor) -> list[dict[str, Any]]:
    q = jobs.visible(user).where(Job.state.in_(TERMINAL)).order_by(Job.id)
    now = time.time()
    return [views.job(j, now) for j in s.scalars(q)]


@router.get("/v1/jobs/{job_id}")
def describe(job_id: int, s: DB, user: Actor, rec: Rec) -> dict[str, Any]:
    j = jobs.get(s, user, job_id)
    pods = list(s.scalars(select(Pod).where(Pod.job_id == j.id, Pod.attempt == j.attempt)))
    events = list(s.scalars(select(Event).where(Event.job_id == j.id).order_by(Event.id)))
    prio = manifests.priority_terms(s, rec.profile, j) if j.state == "PENDING" else None
    return views.describe(j, pods, events, time.time(), prio)


@router.post("/v1/jobs/cancel", dependencies=[Wakes])
def cancel(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.cancel(s, user, body.ids, time.time())


@router.post("/v1/jobs/hold", dependencies=[Wakes])
def hold(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.hold(s, user, body.ids, True, time.time())


@router.post("/v1/jobs/release", dependencies=[Wakes])
def release(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
    return jobs.hold(s, user, body.ids, False, time.time())


@router.get("/v1/jobs/{job_id}/logs")
def logs(
    job_id: int, s: DB, user: Actor, rec: Rec, offset: int = 0, pod: int | None = None
) -> dict[str, Any]:
    j = jobs.get(s, user, job_id)
    data, end = launch.read_logs(rec.state_dir, j, offset, pod)
    return {"data": data, "offset": end, "done": j.state in TERMINAL}


@router.get("/v1/nodes")
def nodes(s: DB, _: Actor, rec: Rec) -> list[dict[str, Any]]:
    snap, _q, _j = workloads.load(s, rec.profile)
    return views.nodes(snap, workloads.setting(s, "node_states", {}) or {})


@router.post("/v1/nodes/{node}/state", dependencies=[Wakes])
def node_state(node: str, body: NodeStateRequest, s: DB, user: Actor) -> dict[str, str]:
    return nodes_admin.set_state(s, user, node, body.state, body.reason, time.time())


@router.post("/v1/users", status_code=201)
def create_user(body: UserRequest, s: DB, user: Actor) -> dict[str, str]:
    if user.role != "admin":
        raise HTTPException(403, "only the admin creates users")
    return {"name": body.name, "token": auth.create_user(s, body.name, body.team, body.role)}


@router.post("/v1/apply", dependencies=[Wakes])
def apply(body: ApplyRequest, s: DB, user: Actor, rec: Rec) -> dict[str, Any]:
    now = time.time()
    return manifests.apply(s, user, body.documents, body.dry_run, rec.profile, now)
