"""Submission routes: ``POST /v1/jobs`` (a `JobSpec`), ``POST /v1/sbatch`` (a batch
script as sbatch sends it, parsed here) and ``POST /v1/jobs/batch`` (many at once, all
or nothing). Every way in ends in `submit_one`, so the limits, the Unix-account check
and the "could never fit" refusal are the same for all.

(No ``from __future__ import annotations``: FastAPI resolves the parameters'
annotations, which name the app's dependencies passed to `routes`.)
"""

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from detente.api.jobspec import MAX_ARRAY_SIZE, MAX_SCRIPT_BYTES, SCRIPT_CEILING, JobSpec, Text
from detente.api.sbatch import SbatchError
from detente.api.sbatch import parse as parse_sbatch
from detente.control import auth, errors, jobs, layout, workloads
from detente.control.cache import keyed_settings
from detente.control.store.models import User
from detente.control.will_run import will_run
from detente.core.cluster import Cluster
from detente.core.queues import QueueConfig


class SbatchRequest(BaseModel):
    """A batch script as sbatch sends it: options, the script, its arguments, and the
    submitter's environment and directory; parsed here by `detente.api.sbatch`, so a
    client needs nothing but HTTP (the CLI's fast path)."""

    model_config = ConfigDict(extra="forbid")
    options: Annotated[list[Annotated[Text, Field(max_length=100_000)]], Field(max_length=1000)]
    script: Annotated[str, Field(max_length=SCRIPT_CEILING)]
    script_name: Annotated[Text, Field(min_length=1, max_length=4096)]
    args: Annotated[list[Annotated[str, Field(max_length=131072)]], Field(max_length=10_000)]
    env: Annotated[dict[str, Annotated[str, Field(max_length=131072)]], Field(max_length=10_000)]
    cwd: Annotated[Text, Field(min_length=1, max_length=4096, pattern=r"^/")]
    #: sbatch ``--test-only``: say when and where it would start; submit nothing.
    test_only: bool = False


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=10_000)]


@dataclass(frozen=True, slots=True)
class Limits:
    """What every submission is checked against, read once per request (a batch of
    thousands read it once per job: a quarter of its time) through `LimitsCache`."""

    max_array: int
    max_script: int
    multi_user: bool
    config: QueueConfig
    whole: Cluster


#: The settings `Limits` is made of.
_KEYS = ("nodes", "node_states", "manifests", "max_array_size", "max_script_bytes", "mode")


class LimitsCache:
    """`Limits`, made again only when a setting it is made of or the set of teams
    changed: one query each tells (parsing the cluster and queue configuration for
    every submission was a third of ``POST /v1/sbatch``'s time). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._limits: Limits | None = None

    def read(self, s: Session) -> Limits:
        got, teams, key = keyed_settings(s, _KEYS)
        with self._lock:
            if key == self._key and self._limits is not None:
                return self._limits
        nodes = got.get("nodes", [])
        cl = layout.cluster(nodes, got.get("node_states", {}))
        limits = Limits(
            int(got.get("max_array_size", MAX_ARRAY_SIZE)),
            int(got.get("max_script_bytes", MAX_SCRIPT_BYTES)),
            got.get("mode") == auth.MULTI,
            layout.queue_config(cl, got.get("manifests"), set(teams)), layout.cluster(nodes),
        )  # fmt: skip
        with self._lock:
            self._key, self._limits = key, limits
        return limits


def submit_one(
    spec: JobSpec, s: Session, user: User, lim: Limits, commit: bool = True
) -> list[int]:
    """Creates the job (its array tasks) after the install's limits ``lim``, the
    Unix-account check and the "could never fit" refusal; HTTPException or JobError
    otherwise."""
    if too_big := spec.check_limits(lim.max_array, lim.max_script):
        raise HTTPException(413 if too_big[0].startswith("script") else 400, "; ".join(too_big))
    if lim.multi_user and user.unix_user is None:
        raise HTTPException(403, f"user {user.name} has no Unix account to run jobs as "
                                 "(map one: detente token NAME --unix-user ACCOUNT)")  # fmt: skip
    if (why := workloads.never_fits(lim.whole, lim.config, spec)) is not None:
        raise HTTPException(400, why)
    return jobs.submit(s, user, spec, lim.config, time.time(), commit=commit)


def routes(db: Any, actor: Any, wakes: Any) -> APIRouter:
    """The router, with the app's session, authentication and wake dependencies."""
    router = APIRouter(responses=errors.RESPONSES)
    limits = LimitsCache()

    @router.post("/v1/jobs", status_code=201, dependencies=[wakes])
    def submit(spec: JobSpec, s: db, user: actor) -> dict[str, list[int]]:
        return {"ids": submit_one(spec, s, user, limits.read(s))}

    @router.post("/v1/sbatch", status_code=201, dependencies=[wakes])
    def sbatch(body: SbatchRequest, s: db, user: actor, request: Request) -> dict[str, Any]:
        """Parses the script's ``#SBATCH`` lines with the options overriding them, then
        submits as ``POST /v1/jobs``; the parser's warnings come back with the ids. With
        ``test_only``, nothing is submitted: the answer is when and where it would start."""
        try:
            parsed = parse_sbatch(body.script, body.script_name, body.options, body.env, body.args)
        except SbatchError as e:
            raise HTTPException(400, str(e)) from None
        spec = parsed.spec
        chdir = spec.chdir if spec.chdir and spec.chdir.startswith("/") else (
            f"{body.cwd}/{spec.chdir}" if spec.chdir else body.cwd)  # fmt: skip
        try:
            spec = JobSpec.model_validate(
                {**spec.model_dump(), "chdir": chdir, "submit_dir": body.cwd}
            )
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if body.test_only:
            profile = request.app.state.rec.profile
            lim = limits.read(s)
            out = will_run(s, lambda: submit_one(spec, s, user, lim, commit=False), profile)
            return {"test_only": out, "warnings": parsed.warnings}
        return {
            "ids": submit_one(spec, s, user, limits.read(s)),
            "warnings": parsed.warnings,
        }

    @router.post("/v1/jobs/batch", status_code=201, dependencies=[wakes])
    def submit_batch(body: BatchRequest, s: db, user: actor) -> dict[str, list[list[int]]]:
        """Many submissions in one request and one transaction: all are created or, if
        one is refused (named by its index), none."""
        out = []
        lim = limits.read(s)
        for i, spec in enumerate(body.jobs):
            try:
                out.append(submit_one(spec, s, user, lim, commit=False))
            except (HTTPException, jobs.JobError) as e:
                s.rollback()
                code = e.status_code if isinstance(e, HTTPException) else e.status
                detail = e.detail if isinstance(e, HTTPException) else str(e)
                raise HTTPException(code, f"jobs[{i}]: {detail}") from None
        s.commit()
        return {"ids": out}

    return router
