"""Services over HTTP, and the services runtime: the controller's loop and the gateway.

Routes: ``GET /v1/services``, ``GET /v1/services/{name}``, ``DELETE
/v1/services/{name}`` (apply and ``delete -f`` go through ``/v1/apply`` and
``/v1/delete``). `ServicesRuntime` runs `ServiceController.tick` every ``period``
and the gateway (uvicorn, its own thread and event loop) on ``gateway_port``.

(No ``from __future__ import annotations`` here: FastAPI resolves the route
parameters' annotations, which name the app's ``Actor`` dependency passed in.)
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from sqlalchemy.orm import Session, sessionmaker

from detente.control import errors, services
from detente.control.jobs import JobError
from detente.control.lease import Lease
from detente.control.service_controller import ServiceController
from detente.control.store.models import Service, User
from detente.gateway.app import create_gateway
from detente.gateway.registry import Registry

log = logging.getLogger("detente")
Name = Annotated[str, PathParam(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]


class ServicesRuntime:
    """The controller's thread and the gateway's server; ``start`` returns once the
    gateway listens."""

    def __init__(
        self, sessions: sessionmaker[Session], wake: Callable[[], None], gateway_port: int,
        period: float = 0.5, lease: Lease | None = None,
    ) -> None:  # fmt: skip
        self.lease = lease
        self.registry = Registry()
        self.controller = ServiceController(sessions, self.registry, wake)
        self.port, self.period = gateway_port, period
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="services", daemon=True)
        config = uvicorn.Config(create_gateway(self.registry), host="127.0.0.1",
                                port=gateway_port, log_level="warning", loop="uvloop",
                                http="httptools")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.gateway = threading.Thread(target=self.server.run, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.gateway.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.server.should_exit = True

    def _run(self) -> None:
        while not self.stop_event.is_set():
            if self.lease is not None and not self.lease.leader:
                self.stop_event.wait(self.period)  # a standby: the leader's controller runs
                continue
            try:
                self.controller.tick()
            except Exception:  # the store is the truth: log and tick again
                log.exception("service controller tick failed")
            self.stop_event.wait(self.period)


def _db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as s:
        yield s


def _live(request: Request, name: str) -> dict[str, Any]:
    rt: ServicesRuntime | None = request.app.state.services
    return rt.controller.live.get(name, {}) if rt is not None else {}


def _url(request: Request) -> str:
    rt: ServicesRuntime | None = request.app.state.services
    return rt.url if rt is not None else ""


def _view(request: Request, s: Session, row: Service) -> dict[str, Any]:
    reps = services.replicas_of(s, [row.name]).get(row.name, [])
    return services.view(row, reps, _live(request, row.name), _url(request))


def routes(actor: Any) -> APIRouter:
    """A new router (one per app: a module-level one would gain the routes again at
    every app made), with the app's authentication dependency (``Actor``)."""
    DB = Annotated[Session, Depends(_db)]
    router = APIRouter(responses=errors.RESPONSES)

    @router.get("/v1/services")
    def list_services(request: Request, s: DB, user: actor) -> dict[str, Any]:  # type: ignore[valid-type]
        return {"services": [_view(request, s, r) for r in services.visible(s, user)],
                "gateway": _url(request)}  # fmt: skip

    @router.get("/v1/services/{name}")
    def describe_service(request: Request, name: Name, s: DB, user: actor) -> dict[str, Any]:  # type: ignore[valid-type]
        row = next((r for r in services.visible(s, user) if r.name == name), None)
        if row is None:
            raise HTTPException(404, f"no service {name}")
        return _view(request, s, row)

    @router.delete("/v1/services/{name}")
    def delete_service(request: Request, name: Name, s: DB, user: actor) -> dict[str, Any]:  # type: ignore[valid-type]
        u: User = user
        try:
            found = services.remove(s, u, name, time.time())
        except JobError as e:
            raise HTTPException(e.status, str(e)) from None
        if not found:
            raise HTTPException(404, f"no service {name}")
        s.commit()
        return {"deleted": name}

    return router
