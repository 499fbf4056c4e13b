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
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse
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


DB = Annotated[Session, Depends(_db)]
Actor = Annotated[User, Depends(_actor)]


def create_app(
    sessions: sessionmaker[Session], rec: Reconciler, start_loop: bool = True
) -> FastAPI:
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
    app.state.sessions = sessions

    def fail(e: jobs.JobError) -> HTTPException:
        return HTTPException(e.status, str(e))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus(_: Actor) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/jobs", status_code=201)
    def submit(spec: JobSpec, s: DB, user: Actor) -> dict[str, list[int]]:
        cl, config = workloads.cluster_and_config(s)
        queues = {lq.name for lq in config.local_queues.values()}
        if (why := workloads.never_fits(cl, config, spec)) is not None:
            raise HTTPException(400, why)
        try:
            ids = jobs.submit(s, user, spec, queues, time.time())
        except jobs.JobError as e:
            raise fail(e) from None
        loop.wake.set()
        return {"ids": ids}

    @app.get("/v1/jobs")
    def list_jobs(s: DB, user: Actor, all: bool = False) -> list[dict[str, Any]]:
        q = jobs.visible(user)
        if not all:
            q = q.where(Job.state.not_in(TERMINAL))
        now = time.time()
        return [views.job(j, now) for j in s.scalars(q.order_by(Job.id))]

    @app.get("/v1/history")
    def history(s: DB, user: Actor) -> list[dict[str, Any]]:
        q = jobs.visible(user).where(Job.state.in_(TERMINAL)).order_by(Job.id)
        now = time.time()
        return [views.job(j, now) for j in s.scalars(q)]

    @app.get("/v1/jobs/{job_id}")
    def describe(job_id: int, s: DB, user: Actor) -> dict[str, Any]:
        try:
            j = jobs.get(s, user, job_id)
        except jobs.JobError as e:
            raise fail(e) from None
        pods = list(s.scalars(select(Pod).where(Pod.job_id == j.id, Pod.attempt == j.attempt)))
        events = list(s.scalars(select(Event).where(Event.job_id == j.id).order_by(Event.id)))
        prio = manifests.priority_terms(s, rec.profile, j) if j.state == "PENDING" else None
        return views.describe(j, pods, events, time.time(), prio)

    @app.post("/v1/jobs/cancel")
    def cancel(body: CancelRequest, s: DB, user: Actor) -> dict[int, str]:
        try:
            out = jobs.cancel(s, user, body.ids, time.time())
        except jobs.JobError as e:
            raise fail(e) from None
        loop.wake.set()
        return out

    @app.get("/v1/jobs/{job_id}/logs")
    def logs(
        job_id: int, s: DB, user: Actor, offset: int = 0, pod: int | None = None
    ) -> dict[str, Any]:
        try:
            j = jobs.get(s, user, job_id)
        except jobs.JobError as e:
            raise fail(e) from None
        data, end = launch.read_logs(rec.state_dir, j, offset, pod)
        return {"data": data, "offset": end, "done": j.state in TERMINAL}

    @app.get("/v1/nodes")
    def nodes(s: DB, _: Actor) -> list[dict[str, Any]]:
        snap, _q, _j = workloads.load(s, rec.profile)
        return views.nodes(snap, workloads.setting(s, "node_states", {}) or {})

    @app.post("/v1/nodes/{node}/state")
    def node_state(node: str, body: NodeStateRequest, s: DB, user: Actor) -> dict[str, str]:
        try:
            out = nodes_admin.set_state(s, user, node, body.state, body.reason, time.time())
        except jobs.JobError as e:
            raise fail(e) from None
        loop.wake.set()
        return out

    @app.post("/v1/users", status_code=201)
    def create_user(body: UserRequest, s: DB, user: Actor) -> dict[str, str]:
        if user.role != "admin":
            raise HTTPException(403, "only the admin creates users")
        try:
            return {
                "name": body.name,
                "token": auth.create_user(s, body.name, body.team, body.role),
            }
        except auth.AuthError as e:
            raise HTTPException(400, str(e)) from None

    @app.post("/v1/apply")
    def apply(body: ApplyRequest, s: DB, user: Actor) -> dict[str, Any]:
        try:
            now = time.time()
            return manifests.apply(s, user, body.documents, body.dry_run, rec.profile, now)
        except manifests.ApplyError as e:
            raise HTTPException(400, str(e)) from None
        finally:
            loop.wake.set()

    app.state.loop = loop
    app.state.state_dir = Path(rec.state_dir)
    return app
