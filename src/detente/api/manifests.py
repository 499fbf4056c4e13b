"""The YAML documents detente reads, as pydantic models (structure only).

Kubernetes' own ``Node`` and Kueue's ``Topology``, ``ResourceFlavor``, ``ClusterQueue``,
``LocalQueue``, ``Cohort`` and ``WorkloadPriorityClass`` are accepted as Kueue writes
them: fields detente does not model are ignored. detente's own kinds (``Job``,
``NodePool``) forbid unknown fields, so a typo is an error, not a silent default.
Quantities and durations are checked by `detente.api.loader`, which knows the path.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Qty = str | int | float
KUEUE = ("kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2")
DETENTE = "detente.dev/v1"


class Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Kueue(BaseModel):
    """A part of a Kueue object. Fields Kueue has but detente does not model are listed
    in ``UNMODELLED``: they are accepted and reported as warnings (`unmodelled`); any
    other unknown field (a typo such as ``borowingLimit``) is an error at its path."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    UNMODELLED: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _known(self) -> Kueue:
        unknown = sorted(k for k in self.model_extra or {} if k not in self.UNMODELLED)
        if unknown:
            known = sorted(set(type(self).model_fields) | self.UNMODELLED)
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(known)})")  # fmt: skip
        return self


def unmodelled(model: BaseModel, path: str = "") -> list[str]:
    """``path.field`` of every Kueue field present that detente does not model."""
    out: list[str] = []
    if isinstance(model, Kueue):
        out += [f"{path}{k}" for k in sorted(model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        for i, v in enumerate(items):
            if isinstance(v, BaseModel):
                at = f"{path}{name}[{i}]." if isinstance(value, list) else f"{path}{name}."
                out += unmodelled(v, at)
    return out


class Meta(Loose):
    name: Annotated[str, Field(min_length=1)]
    namespace: str = "default"
    labels: dict[str, str] = {}


# -- Kubernetes Node ----------------------------------------------------------------


class NodeCondition(Loose):
    type: str
    status: str


class NodeStatus(Loose):
    capacity: dict[str, Qty] = {}
    allocatable: dict[str, Qty] | None = None
    conditions: list[NodeCondition] = []


class NodeSpec(Loose):
    unschedulable: bool = False


class NodeDoc(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Node"]
    metadata: Meta
    spec: NodeSpec = NodeSpec()
    status: NodeStatus


class NodePoolSpec(Strict):
    count: Annotated[int, Field(ge=1, le=1_000_000)]
    #: ``{i}`` is the node's index in the pool; ``{i/N}`` and ``{i%N}`` divide or take the
    #: remainder; ``{i:03d}`` formats. Default: ``<pool>-{i}``.
    namePattern: str | None = None
    labels: dict[str, str] = {}
    capacity: dict[str, Qty]
    unschedulable: bool = False


class NodePoolDoc(Strict):
    apiVersion: Literal["detente.dev/v1"]
    kind: Literal["NodePool"]
    metadata: Meta
    spec: NodePoolSpec


# -- Kueue ----------------------------------------------------------------------------


class TopologyLevel(Kueue):
    nodeLabel: str


class TopologySpec(Kueue):
    levels: Annotated[list[TopologyLevel], Field(min_length=1)]


class TopologyDoc(Kueue):
    UNMODELLED = frozenset({"status"})
    apiVersion: Literal[
        "kueue.x-k8s.io/v1alpha1", "kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"
    ]
    kind: Literal["Topology"]
    metadata: Meta
    spec: TopologySpec


class FlavorSpec(Kueue):
    UNMODELLED = frozenset({"nodeTaints", "tolerations"})
    nodeLabels: dict[str, str] = {}
    topologyName: str | None = None


class ResourceFlavorDoc(Kueue):
    UNMODELLED = frozenset({"status"})
    apiVersion: Literal["kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"]
    kind: Literal["ResourceFlavor"]
    metadata: Meta
    spec: FlavorSpec = FlavorSpec()


class ResourceQuota(Kueue):
    name: str
    nominalQuota: Qty
    borrowingLimit: Qty | None = None
    lendingLimit: Qty | None = None


class FlavorQuotas(Kueue):
    name: str
    resources: list[ResourceQuota]


class ResourceGroupDoc(Kueue):
    coveredResources: Annotated[list[str], Field(min_length=1)]
    flavors: Annotated[list[FlavorQuotas], Field(min_length=1)]


class PreemptionDoc(Kueue):
    UNMODELLED = frozenset({"borrowWithinCohort"})
    withinClusterQueue: Literal["Never", "LowerPriority", "LowerOrNewerEqualPriority"] = "Never"
    reclaimWithinCohort: Literal["Never", "LowerPriority", "Any"] = "Never"


class ClusterQueueSpec(Kueue):
    UNMODELLED = frozenset({"namespaceSelector", "flavorFungibility", "admissionChecks",
                            "admissionChecksStrategy", "stopPolicy", "fairSharing",
                            "admissionScope"})  # fmt: skip
    cohort: str | None = None  # v1beta1
    cohortName: str | None = None  # v1beta2
    queueingStrategy: Literal["StrictFIFO", "BestEffortFIFO"] = "BestEffortFIFO"
    resourceGroups: list[ResourceGroupDoc] = []
    preemption: PreemptionDoc | None = None


class ClusterQueueDoc(Kueue):
    UNMODELLED = frozenset({"status"})
    apiVersion: Literal["kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"]
    kind: Literal["ClusterQueue"]
    metadata: Meta
    spec: ClusterQueueSpec = ClusterQueueSpec()


class CohortSpec(Kueue):
    UNMODELLED = frozenset({"fairSharing"})
    parent: str | None = None  # v1alpha1
    parentName: str | None = None  # v1beta2
    resourceGroups: list[ResourceGroupDoc] = []


class CohortDoc(Kueue):
    UNMODELLED = frozenset({"status"})
    apiVersion: Literal[
        "kueue.x-k8s.io/v1alpha1", "kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"
    ]
    kind: Literal["Cohort"]
    metadata: Meta
    spec: CohortSpec = CohortSpec()


class FairSharing(Kueue):
    weight: Annotated[float, Field(ge=0)] = 1.0


class LocalQueueSpec(Kueue):
    UNMODELLED = frozenset({"stopPolicy"})
    clusterQueue: str
    fairSharing: FairSharing | None = None


class LocalQueueDoc(Kueue):
    UNMODELLED = frozenset({"status"})
    apiVersion: Literal["kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"]
    kind: Literal["LocalQueue"]
    metadata: Meta
    spec: LocalQueueSpec


class WorkloadPriorityClassDoc(Kueue):
    UNMODELLED = frozenset({"status"})
    apiVersion: Literal["kueue.x-k8s.io/v1beta1", "kueue.x-k8s.io/v1beta2"]
    kind: Literal["WorkloadPriorityClass"]
    metadata: Meta
    value: int
    description: str = ""
    #: detente's: the LocalQueues whose jobs may use this class (default: all).
    allowedQueues: list[str] | None = None


# -- detente Job --------------------------------------------------------------------------


class TopologyReq(Strict):
    required: str | None = None
    preferred: str | None = None

    @model_validator(mode="after")
    def _one(self) -> TopologyReq:
        if (self.required is None) == (self.preferred is None):
            raise ValueError("give exactly one of required or preferred")
        return self


class JobDocSpec(Strict):
    """The ``spec`` of a ``kind: Job`` document, as written; `detente.api.jobs.from_doc`
    reads it into the one job model (`detente.api.jobspec.JobSpec`)."""

    queue: str = "default"
    nodes: Annotated[int, Field(ge=1)] | None = None
    replicas: Annotated[int, Field(ge=1)] | None = None
    resources: dict[str, Qty] = {}
    exclusive: bool = False
    topology: TopologyReq | None = None
    priorityClass: str | None = None
    timeLimit: Qty | None = None
    command: list[str] | str | None = None
    preemptible: bool = False
    checkpointGrace: Qty = 0
    submitTime: Annotated[float, Field(ge=0)] = 0.0
    user: str = ""

    @model_validator(mode="after")
    def _shape(self) -> JobDocSpec:
        if self.nodes is not None and self.replicas is not None:
            raise ValueError("give spec.nodes or spec.replicas, not both")
        return self


class JobStatus(Strict):
    nodes: list[str] = []
    startTime: Annotated[float, Field(ge=0)] | None = None


class JobDoc(Strict):
    apiVersion: Literal["detente.dev/v1"]
    kind: Literal["Job"]
    metadata: Meta
    spec: JobDocSpec = JobDocSpec()
    status: JobStatus | None = None


# -- Kubernetes batch/v1 Job, as Kueue takes it ----------------------------------------

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


class EnvVar(Loose):
    name: str
    value: str = ""


class ContainerResources(Loose):
    requests: dict[str, Qty] = {}
    limits: dict[str, Qty] = {}


class Container(Loose):
    """A pod template's container: its command, arguments, environment and resources
    are honoured; the image is not (the command runs on the node)."""

    name: str = "main"
    image: str | None = None
    command: list[str] = []
    args: list[str] = []
    env: list[EnvVar] = []
    resources: ContainerResources = ContainerResources()


class PodSpecDoc(Loose):
    containers: Annotated[list[Container], Field(min_length=1)]


class PodTemplate(Loose):
    spec: PodSpecDoc


class BatchJobDocSpec(Loose):
    parallelism: Annotated[int, Field(ge=1)] = 1
    completions: Annotated[int, Field(ge=1)] | None = None
    activeDeadlineSeconds: Annotated[int, Field(ge=1)] | None = None
    template: PodTemplate

    @model_validator(mode="after")
    def _whole(self) -> BatchJobDocSpec:
        if self.completions is not None and self.completions != self.parallelism:
            raise ValueError("completions must equal parallelism (one gang of pods)")
        return self


class BatchJobDoc(Loose):
    """A Kubernetes Job that Kueue manages (it carries the queue-name label): its
    ``parallelism`` pods are one workload."""

    apiVersion: Literal["batch/v1"]
    kind: Literal["Job"]
    metadata: Meta
    spec: BatchJobDocSpec

    @model_validator(mode="after")
    def _queued(self) -> BatchJobDoc:
        if not self.metadata.labels.get(QUEUE_LABEL):
            raise ValueError(f"metadata.labels: {QUEUE_LABEL} is required (Kueue manages "
                             "only Jobs that name their LocalQueue)")  # fmt: skip
        return self


KINDS: dict[str, type[BaseModel]] = {
    "Node": NodeDoc,
    "NodePool": NodePoolDoc,
    "Topology": TopologyDoc,
    "ResourceFlavor": ResourceFlavorDoc,
    "ClusterQueue": ClusterQueueDoc,
    "Cohort": CohortDoc,
    "LocalQueue": LocalQueueDoc,
    "WorkloadPriorityClass": WorkloadPriorityClassDoc,
    "Job": JobDoc,
}


def model_for(doc: Any) -> type[BaseModel] | str:
    """The model for a parsed YAML document, or an error message."""
    if not isinstance(doc, dict):
        return f"a document must be a mapping, got {type(doc).__name__}"
    kind = doc.get("kind")
    if kind == "Job" and doc.get("apiVersion") == "batch/v1":
        return BatchJobDoc
    if kind == "Service":
        from detente.api.services import ServiceDoc  # it builds on this module

        return ServiceDoc
    if kind not in KINDS:
        return f"kind: unknown kind {kind!r} (known: {', '.join([*KINDS, 'Service'])})"
    return KINDS[kind]
