"""The ``Service`` manifest (``apiVersion: detente.dev/v1``): an inference service on
the shared pool — replicas of one command, each listening on ``$PORT``, probed,
routed to by the gateway, and scaled by a fixed count or by the KPA.

```yaml
metadata: {name: llm}
spec:
  queue: serve                   # LocalQueue; default: the caller's team queue
  command: python3 server.py     # must listen on $PORT
  resources: {nvidia.com/gpu: 1, cpu: 4, memory: 32Gi}   # per replica
  model: llama-3-8b              # OpenAI-style name the gateway routes by
  replicas: 2                    # fixed, or:
  autoscaling: {min: 0, max: 8, target: {concurrency: 4}, scaleToZeroAfter: 60s}
  readiness: {path: /healthz, periodSeconds: 1}
  liveness: {path: /healthz, periodSeconds: 5, failureThreshold: 3}
  priorityClass: serving
  rollout: {maxSurge: 1, maxUnavailable: 0}
  env: {KEY: value}
  workingDir: /abs/path          # default: where `detente apply` ran
```
Changing ``command``, ``resources`` or ``env`` rolls the replicas (`revision`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from detente.api.jobs import script_of
from detente.api.jobspec import Ident, JobSpec, Name
from detente.api.manifests import Meta, Qty, Strict
from detente.api.quantity import canonical, parse_duration
from detente.core.kpa import KpaSpec
from detente.core.replicas import Rollout
from detente.core.resources import CPU, GPU, MEMORY

Path = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^/[!-~]*$")]
Seconds = Annotated[float, Field(gt=0, le=3600)]


class Probe(Strict):
    path: Path = "/healthz"
    periodSeconds: Seconds = 1.0
    timeoutSeconds: Seconds = 1.0
    failureThreshold: Annotated[int, Field(ge=1, le=100)] = 3


class Target(Strict):
    concurrency: Annotated[float, Field(gt=0, le=1e6)] | None = None
    rps: Annotated[float, Field(gt=0, le=1e7)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.concurrency is None) == (self.rps is None):
            raise ValueError("give exactly one of concurrency or rps")
        return self


class Autoscaling(Strict):
    min: Annotated[int, Field(ge=0, le=1000)] = 0
    max: Annotated[int, Field(ge=1, le=1000)] = 8
    target: Target
    scaleToZeroAfter: Qty = "30s"

    @model_validator(mode="after")
    def _range(self) -> Autoscaling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        parse_duration(self.scaleToZeroAfter)
        return self


class RolloutSpec(Strict):
    maxSurge: Annotated[int, Field(ge=0, le=1000)] = 1
    maxUnavailable: Annotated[int, Field(ge=0, le=1000)] = 0

    @model_validator(mode="after")
    def _moves(self) -> RolloutSpec:
        if self.maxSurge == 0 and self.maxUnavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0")
        return self


class ServiceSpec(Strict):
    queue: Ident | None = None
    command: list[Annotated[str, Field(max_length=10_000)]] | str
    resources: dict[str, Qty] = Field(default_factory=dict)
    model: Name | None = None
    replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    autoscaling: Autoscaling | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    priorityClass: Ident | None = None
    rollout: RolloutSpec = RolloutSpec()
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict
    )
    #: Where replicas start (absolute; `detente apply` fills in the directory it runs
    #: in, as sbatch starts a job in its submit directory).
    workingDir: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^/")] | None = None

    @model_validator(mode="after")
    def _scale(self) -> ServiceSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("give replicas or autoscaling, not both")
        for k, v in self.resources.items():
            if k not in (GPU, CPU, MEMORY):
                raise ValueError(f"resources.{k}: a replica asks for {GPU}, cpu, memory")
            canonical(k, v)
        return self

    def initial_replicas(self) -> int:
        """Fixed replicas, or Knative's initial scale: one replica (at least ``min``)
        until the autoscaler decides."""
        if self.replicas is not None:
            return self.replicas
        return max(self.autoscaling.min, 1) if self.autoscaling else 1

    def kpa(self) -> KpaSpec | None:
        a = self.autoscaling
        if a is None:
            return None
        target = a.target.concurrency or a.target.rps or 1.0
        return KpaSpec(target, a.min, a.max, to_zero_after=parse_duration(a.scaleToZeroAfter))

    def rollout_rules(self) -> Rollout:
        return Rollout(self.rollout.maxSurge, self.rollout.maxUnavailable)

    def revision(self) -> str:
        """What rolls the replicas when it changes: command, resources and env."""
        key = json.dumps([self.command, self.resources, self.env, self.workingDir],
                         sort_keys=True, default=str)  # fmt: skip
        return hashlib.sha256(key.encode()).hexdigest()[:12]


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: The replica's job field behind each Service field, for error paths.
SPEC_PATH = {"script": "spec.command", "chdir": "spec.workingDir", "env": "spec.env",
             "name": "metadata.name", "gpus_per_node": "spec.resources",
             "cpus_per_task": "spec.resources", "mem_per_node": "spec.resources",
             "priority_class": "spec.priorityClass", "queue": "spec.queue"}  # fmt: skip


class ServiceDoc(Strict):
    apiVersion: Literal["detente.dev/v1"]
    kind: Literal["Service"]
    metadata: Meta
    spec: ServiceSpec

    @model_validator(mode="after")
    def _as_replica(self) -> ServiceDoc:
        """A replica must be a valid job (the one model's bounds: no NUL or control
        characters, sizes): checked here, so a bad service is refused at apply with
        its path, never later in the controller. The name is a DNS label, as a
        Kubernetes Service's: it is a path segment of the gateway's URLs."""
        if not DNS_LABEL.fullmatch(self.metadata.name):
            raise ValueError(f"metadata.name: {self.metadata.name[:80]!r} is not a DNS label "
                             "(lower-case letters, digits and '-', at most 63)")  # fmt: skip
        try:
            replica_spec(self.metadata.name, self.spec, self.spec.queue or "default", 0, 1)
        except ValidationError as e:
            raise ValueError("; ".join(
                f"{SPEC_PATH.get(str(x['loc'][0]), str(x['loc'][0]))}: {x['msg']}"
                for x in e.errors()
            )) from None  # fmt: skip
        return self


def replica_spec(name: str, spec: ServiceSpec, queue: str, slot: int, port: int) -> JobSpec:
    """A replica as the one job model: one pod, the service's resources and priority
    class, ``$PORT`` set; never requeued (a replica that stops is replaced). Its output
    stays in the daemon's per-pod log (`detente logs`), not in ``slurm-N.out`` files
    in the service's working directory."""
    req = {k: canonical(k, v) for k, v in spec.resources.items()}
    return JobSpec(
        name=f"{name}-{slot}", queue=queue, nodes=1, gpus_per_node=req.get(GPU, 0) / 1000,
        cpus_per_task=max(req.get(CPU, 1000), 1) / 1000, mem_per_node=req.get(MEMORY, 0),
        priority_class=spec.priorityClass, script=script_of(spec.command), chdir=spec.workingDir,
        output="/dev/null",
        env={**spec.env, "PORT": str(port), "DETENTE_SERVICE": name},
    )  # fmt: skip
