"""The one job model: what a user submits, by ``sbatch``/``submit`` (`detente.api.
sbatch`), by a ``kind: Job`` manifest (`detente.api.jobs.from_doc`) or over the API,
validated at the edge (pydantic). `detente.api.jobs.to_workload` turns it into the
core's `Workload` for `plan`, the live control plane and the simulator alike.

Every field is bounded here, so nothing a client sends can stop the control plane
later: strings carry no NUL or control characters (the script may hold tabs and line
ends) and no lone surrogates, numbers are finite and fit in 64 bits, environment names
are what exec(2) can pass, and sizes are capped (`MAX_SCRIPT_BYTES`, `MAX_ARRAY_SIZE`
are the defaults; the control plane may be configured lower or higher per install).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

INT64 = 2**63 - 1
#: sbatch's MaxArraySize default: task ids 0 … 1000.
MAX_ARRAY_SIZE = 1001
#: The largest batch script taken by default (sbatch itself stops at 4 MiB by default).
MAX_SCRIPT_BYTES = 4 << 20
#: Hard ceilings, whatever an install configures (memory per request stays bounded).
ARRAY_CEILING = 100_000
SCRIPT_CEILING = 64 << 20
#: What exec(2) can pass: no ``=``, NUL or control characters (``BASH_FUNC_f%%`` is fine).
ENV_NAME = re.compile(r"[^=\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCRIPT_BAD = re.compile(r"[\x00]")


def _text(v: str) -> str:
    """No NUL or control characters, and valid UTF-8 (no lone surrogates)."""
    if _CONTROL.search(v):
        raise ValueError("must not contain NUL or control characters")
    return _utf8(v)


def _utf8(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 (no lone surrogates)") from None
    return v


def _utf8_ok(v: str) -> bool:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _no_nul(v: str) -> str:
    if _SCRIPT_BAD.search(v):
        raise ValueError("must not contain NUL")
    return _utf8(v)


Text = Annotated[str, AfterValidator(_text)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_text)]
Ident = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
PathText = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_text)]
Arg = Annotated[str, Field(max_length=131072), AfterValidator(_no_nul)]
JobId = Annotated[int, Field(ge=1, le=INT64)]
NodeName = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_text)]
_FEATURE = r"[A-Za-z0-9._:/=-]+"
Constraint = Annotated[str, Field(max_length=1000, pattern=rf"^{_FEATURE}([&|]{_FEATURE})*$")]


class Dependency(BaseModel):
    """One of sbatch's ``--dependency`` conditions: ``KIND:ID`` (a job, or every task of
    an array by its id), ``KIND:ID_TASK`` (one task), ``after:ID+MINUTES``, or
    ``singleton`` (no id: after earlier jobs of the same name and user)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["after", "afterany", "afterok", "afternotok", "aftercorr", "singleton"]
    job_id: JobId | None = None
    task: int | None = Field(None, ge=0, lt=ARRAY_CEILING)
    #: ``after``'s delay past the start, seconds.
    delay: float = Field(0.0, ge=0, le=1e9)

    @model_validator(mode="after")
    def _shape(self) -> Dependency:
        if (self.kind == "singleton") != (self.job_id is None):
            raise ValueError("singleton takes no job id; every other kind needs one")
        if self.delay and self.kind != "after":
            raise ValueError("+time is for after only")
        return self


class JobSignal(BaseModel):
    """sbatch ``--signal=[B:]SIG[@SECONDS]``: ``signal`` (a number) sent this many
    seconds before the time limit or a preemption (Slurm's default: 60)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    signal: int = Field(ge=1, le=64)
    seconds: int = Field(60, ge=0, le=65535)
    #: ``B:``: the batch shell alone; otherwise every job step (not the batch shell),
    #: as Slurm. A manifest's pods (no batch shell) get it in every process.
    batch: bool = False


class Topology(BaseModel):
    """Place the job's pods within one domain of ``level`` (a node label key such as
    ``topology.detente.dev/rack``): ``required``, or ``preferred`` when possible."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Literal["required", "preferred"]
    level: Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_text)]


def _milli(v: float) -> float:
    if abs(v * 1000 - round(v * 1000)) > 1e-6:
        raise ValueError("must be a multiple of 1/1000")
    return round(v * 1000) / 1000


Milli = Annotated[float, Field(ge=0, le=1_000_000), AfterValidator(_milli)]
ResourceName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9./_-]+$")]


class JobSpec(BaseModel):
    """A job: ``nodes`` pods, one per node, each running ``tasks_per_node`` copies of
    the script — or, with ``replicas``, that many independent pods that may share
    nodes and are not a gang. Quantities are per pod (a GPU fraction shares one
    device: plan and simulator only); memory in bytes; times in seconds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Name = "script"
    queue: Ident | None = None
    nodes: int = Field(1, ge=1, le=100_000)
    #: A gang of this many pods that may share nodes (a ``batch/v1`` Job's parallelism
    #: as Kueue admits it), instead of one pod on each of ``nodes``.
    ntasks: int | None = Field(None, ge=1, le=100_000)
    #: Independent pods instead of a gang of ``nodes`` (plan and simulator only yet;
    #: the core admits a workload's pods together, so plan treats them as ``ntasks``).
    replicas: int | None = Field(None, ge=1, le=100_000)
    tasks_per_node: int = Field(1, ge=1, le=4096)
    #: sbatch semantics: the script runs once, on the first pod's node, and the other
    #: pods hold their nodes for the job's ``srun`` steps. Otherwise (a manifest's
    #: pods) every pod runs ``tasks_per_node`` copies of it.
    batch: bool = False
    #: sbatch ``--ntasks`` where it is not pods × ``tasks_per_node`` (``-N2 -n3``: two
    #: nodes, three tasks, laid out 2,1); each node is sized for ``tasks_per_node``.
    total_tasks: int | None = Field(None, ge=1, le=10_000_000)
    #: sbatch ``--gpus-per-task``: the GPUs each ``srun`` task sees by default.
    gpus_per_task: int | None = Field(None, ge=1, le=4096)
    #: sbatch ``-w/--nodelist``: only these nodes (with ``nodes``, exactly these).
    nodelist: list[NodeName] = Field([], max_length=10_000)
    #: sbatch ``-x/--exclude``: never these nodes.
    exclude: list[NodeName] = Field([], max_length=10_000)
    #: sbatch ``-C/--constraint``: node features, ``a&b`` (all) and ``|`` (any).
    constraint: Constraint | None = None
    #: sbatch ``--open-mode``. None: Slurm's default (JobFileAppend=0): a batch job's
    #: first run truncates its output files, a requeued run appends; a manifest's pods,
    #: which share one file, always append.
    open_mode: Literal["append", "truncate"] | None = None
    gpus_per_node: Milli = 0
    #: CPUs per task (0 for a manifest that requests none, as Kubernetes allows).
    cpus_per_task: Milli = 1
    mem_per_node: int = Field(0, ge=0, le=2**62)
    #: Other resources per pod, in their canonical units (`detente.api.quantity`).
    extra_resources: dict[ResourceName, Annotated[int, Field(ge=0, le=2**62)]] = Field(
        {}, max_length=100
    )
    time_limit: float | None = Field(None, gt=0, le=1e10)
    priority_class: Ident | None = None
    exclusive: bool = False
    #: May be preempted and requeued (sbatch ``--requeue``); it restarts from scratch
    #: unless its script checkpoints on SIGTERM.
    requeue: bool = False
    #: Seconds between SIGTERM and SIGKILL when preempted (0: the profile's grace).
    checkpoint_grace: float = Field(0.0, ge=0, le=1e7)
    topology: Topology | None = None
    array: list[Annotated[int, Field(ge=0, lt=ARRAY_CEILING)]] | None = Field(
        None, min_length=1, max_length=ARRAY_CEILING
    )
    array_limit: int | None = Field(None, ge=1, le=ARRAY_CEILING)
    dependencies: list[Dependency] = Field([], max_length=1000)
    #: sbatch's ``?`` separator: any one dependency releases the job (``,``: all).
    dependency_any: bool = False
    #: ``--kill-on-invalid-dep=yes``: a dependency that can never be met cancels the job
    #: (reason ``DependencyNeverSatisfied``); otherwise it stays pending with that reason.
    kill_on_invalid_dep: bool = False
    #: sbatch ``-H/--hold``: submitted held (reason JobHeldUser) until released.
    hold: bool = False
    #: sbatch ``--begin``: not eligible before this time (epoch seconds; reason BeginTime).
    begin_time: float | None = Field(None, ge=0, le=1e11)
    #: sbatch ``--signal``: warn the job before its time limit.
    signal: JobSignal | None = None
    #: sbatch ``-A/--account``: the team charged (the submitter's own, or refused).
    account: Ident | None = None
    output: PathText | None = None
    error: PathText | None = None
    chdir: PathText | None = None
    #: Where it was submitted from (sbatch's ``SLURM_SUBMIT_DIR``; ``chdir`` may differ).
    submit_dir: PathText | None = None
    #: Variables the job sees besides detente's: those ``--export`` named (all of the
    #: submitter's with ``ALL``, sbatch's default); visible to the owner and admins only.
    env: dict[str, Annotated[str, Field(max_length=131072), AfterValidator(_no_nul)]] = Field(
        {}, max_length=10_000
    )
    script: Annotated[str, Field(max_length=SCRIPT_CEILING), AfterValidator(_no_nul)]
    args: list[Arg] = Field([], max_length=10_000)
    #: When it was submitted (a manifest's ``submitTime``: plan and simulator only;
    #: a live job is submitted when it arrives).
    submit_time: float | None = Field(None, ge=0, le=1e11)
    #: Whose job it is, for fair share in plan (live: the caller).
    user: Annotated[str, Field(max_length=100), AfterValidator(_text)] = ""

    @model_validator(mode="after")
    def _shape(self) -> JobSpec:
        if (self.replicas is not None or self.ntasks is not None) and self.nodes != 1:
            raise ValueError("give one of nodes, ntasks or replicas")
        if self.replicas is not None and self.ntasks is not None:
            raise ValueError("give one of nodes, ntasks or replicas")
        return self

    @property
    def pods(self) -> int:
        return self.replicas or self.ntasks or self.nodes

    @property
    def one_per_node(self) -> bool:
        """Each pod on its own node (``nodes``), or pods may share nodes."""
        return self.replicas is None and self.ntasks is None

    def cpus_per_pod(self) -> float:
        return self.tasks_per_node * self.cpus_per_task

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for k in env:
            if not ENV_NAME.fullmatch(k) or len(k) > 1000 or not _utf8_ok(k):
                raise ValueError(f"environment variable name {k[:80]!r} is not valid")
        return env

    @property
    def array_span(self) -> tuple[int, int, int] | None:
        """The array's (task count, lowest id, highest id); None if not an array.
        Computed once per spec (every task's environment names them) and kept with
        the list it was computed from: a copy given another array computes its own."""
        arr = self.array
        if not arr:
            return None
        memo: tuple[list[int], tuple[int, int, int]] | None = self.__dict__.get("_array_span")
        if memo is None or memo[0] is not arr:
            memo = self.__dict__["_array_span"] = (arr, (len(arr), min(arr), max(arr)))
        return memo[1]

    def check_limits(self, max_array: int, max_script: int) -> list[str]:
        """What this spec exceeds of an install's limits: ``field: message`` lines."""
        out = []
        if self.array is not None and max(self.array) >= max_array:
            out.append(
                f"array: task id {max(self.array)} is at or above MaxArraySize ({max_array})"
            )
        if (size := len(self.script.encode())) > max_script:
            out.append(f"script: {size} bytes is over the limit ({max_script} bytes)")
        return out


def stored(data: dict[str, Any]) -> JobSpec:
    """A spec read back from the store: validated when it was submitted, so it is not
    validated again (a spec stored by an older, laxer version must not stop the
    scheduler); missing fields take their defaults. Dependencies stay mappings."""
    return JobSpec.model_construct(**data)
