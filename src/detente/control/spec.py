"""What a user submits: a job's parsed request, validated at the API edge (pydantic)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Dependency(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: Literal["afterok", "afterany", "afternotok"]
    job_id: int


class JobSpec(BaseModel):
    """A batch job: ``nodes`` pods (one per node), each running ``tasks_per_node``
    copies of the script. Quantities are per node; memory in bytes; times in seconds."""

    model_config = ConfigDict(extra="forbid")

    name: str = "script"
    queue: str | None = None
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(1, ge=1)
    mem_per_node: int = Field(0, ge=0)
    time_limit: float | None = Field(None, gt=0)
    priority_class: str | None = None
    exclusive: bool = False
    #: May be preempted and requeued (sbatch ``--requeue``); it restarts from scratch
    #: unless its script checkpoints on SIGTERM.
    requeue: bool = False
    array: list[int] | None = None
    array_limit: int | None = Field(None, ge=1)
    dependencies: list[Dependency] = []
    output: str | None = None
    error: str | None = None
    chdir: str | None = None
    #: Variables the job sees besides detente's: the submitter's (``--export=ALL``),
    #: listed ones, or none.
    env: dict[str, str] = {}
    script: str
    args: list[str] = []
