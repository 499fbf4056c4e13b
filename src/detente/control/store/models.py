"""Tables of the control plane. The store is the source of truth: the scheduler's
snapshot is rebuilt from it, and every executor action is recorded before it happens
(state ``LAUNCHING``) and confirmed after (``RUNNING`` with pid and start time)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


#: Job states, as Slurm names them. Terminal ones never change again.
PENDING, LAUNCHING, RUNNING, STOPPING = "PENDING", "LAUNCHING", "RUNNING", "STOPPING"
COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
)
OUT_OF_MEMORY = "OUT_OF_MEMORY"
#: A stop reason only: stopped by ``scontrol requeue``, to pend again.
REQUEUED = "REQUEUED"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY})
ACTIVE = frozenset({LAUNCHING, RUNNING, STOPPING})
SHORT = {
    PENDING: "PD", LAUNCHING: "CF", RUNNING: "R", STOPPING: "CG", COMPLETED: "CD",
    FAILED: "F", CANCELLED: "CA", TIMEOUT: "TO", NODE_FAIL: "NF", OUT_OF_MEMORY: "OOM",
}  # fmt: skip


class JobSpecRow(Base):
    """A submission's parsed request, stored once: every task of an array shares it
    (revision 0003), so a 1,000-task array stores its script once."""

    __tablename__ = "job_specs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: `detente.api.jobspec.JobSpec` as JSON.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Job(Base):
    """A job (or one array task). Every change is a compare-and-set on ``version``
    (SQLAlchemy's version counter: ``UPDATE … WHERE id = ? AND version = ?``), so the
    API's cancel and the scheduler's admission can never overwrite each other: the
    second writer gets `sqlalchemy.orm.exc.StaleDataError` and must re-read."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    user: Mapped[str] = mapped_column(String(100), index=True)
    #: The submitter's team at submission: whose team admin may manage the job.
    team: Mapped[str] = mapped_column(String(100), index=True)
    queue: Mapped[str] = mapped_column(String(100), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True, default=PENDING)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("job_specs.id"), index=True)
    spec_row: Mapped[JobSpecRow] = relationship(lazy="selectin")
    submit_time: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Node names of the current run, rank order.
    nodes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: GPU device indices per node of the current run.
    devices: Mapped[list[list[int]] | None] = mapped_column(JSON, nullable=True)
    array_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    array_task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Runs started so far; a requeued job's next run has a new attempt number.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: Why the control plane is stopping it (CANCELLED, TIMEOUT, PREEMPTED, FAILED,
    #: NODE_FAIL): recorded before the signal, so a restart knows how it ends.
    stop_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    #: When SIGKILL follows the SIGTERM sent at stop (epoch seconds).
    kill_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: Held by its user or an admin: stays pending until released (revision 0002).
    held: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(Integer, default=0)
    #: A service's replica (revision 0004): its service, slot, revision and the port
    #: it serves on ($PORT); None for batch jobs.
    service: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revision: Mapped[str | None] = mapped_column(String(40), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    @property
    def spec(self) -> dict[str, Any]:
        """The parsed submission (shared by an array's tasks: do not mutate)."""
        return self.spec_row.data


class Pod(Base):
    """One process group of one run of a job on one node (a Slurm job step's node)."""

    __tablename__ = "pods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(200))
    #: Put in the process's environment: found again in /proc after a crash.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: /proc/PID/stat start time (clock ticks since boot): guards against pid reuse.
    pid_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    done: Mapped[bool] = mapped_column(default=False)


class Step(Base):
    """A job step ``srun`` ran inside a batch job (revision 0006): sacct's JOBID.N
    rows, recorded from the batch pod's steps file when the run ends."""

    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    nodes: Mapped[str] = mapped_column(Text)
    ntasks: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[float] = mapped_column(Float)
    end_time: Mapped[float] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(20))


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    time: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: The LocalQueue the user submits to by default; team admins manage its jobs.
    team: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))  # user | team-admin | admin
    #: SHA-256 of the bearer token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The Unix account the user's jobs run as (multi-user mode); revision 0003.
    unix_user: Mapped[str | None] = mapped_column(String(100), nullable=True)


class Audit(Base):
    """Who did what, when: token creation, apply, node changes, cancels by an admin,
    and refused authorizations (revision 0003). Readable by admins only."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))


class Service(Base):
    """An inference service (revision 0004): its applied spec, the replicas it wants,
    and the controller's state (slot restart history, the autoscaler's state and last
    decision). Every change is a compare-and-set on ``version``."""

    __tablename__ = "services"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    team: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(100))
    #: `detente.api.services.ServiceSpec` as JSON.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Hash of what rolls the replicas (command, resources, env).
    revision: Mapped[str] = mapped_column(String(40))
    desired: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, default=0)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class Setting(Base):
    """Cluster-wide settings: the node layout, the applied manifests, the profile."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Lease(Base):
    """Who leads the control plane (revision 0005): one row per lease. ``epoch`` is the
    fencing token, raised at every change of holder; a leader's every commit checks
    it still holds the row at its epoch (`detente.control.lease`)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(300))
    epoch: Mapped[int] = mapped_column(Integer)
    expires: Mapped[float] = mapped_column(Float)
    #: The leader's API, for standbys to name when they refuse a write.
    address: Mapped[str] = mapped_column(String(300), default="")
