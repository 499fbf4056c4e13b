"""Manifests: Kueue's YAML as is, detente's own kinds, and errors that name the spot."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detente.api.loader import ManifestError, load_files
from detente.core.queues import QueueingStrategy
from detente.core.resources import GPU

EXAMPLES = Path(__file__).parent.parent / "examples"


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_examples_load_every_kind() -> None:
    man = load_files([EXAMPLES / f for f in ("cluster.yaml", "queues.yaml", "jobs.yaml")])
    assert len(man.nodes) == 16
    assert man.levels[:2] == ("topology.detente.dev/block", "topology.detente.dev/rack")
    assert man.cluster().levels == man.levels[:2]  # the hostname level is implicit
    assert man.nodes[15].capacity["cpu"] == 95_500  # allocatable wins over capacity
    assert man.nodes[4].labels["topology.detente.dev/rack"] == "r1"
    assert set(man.config.cluster_queues) == {"training", "inference"}
    assert man.config.priority_classes["high"].value == 1000
    running = [j for j in man.jobs if j.running_nodes]
    assert [j.workload.name for j in running] == ["pretrain-a"]
    assert man.jobs[1].workload.priority == 1000
    assert man.jobs[1].workload.time_limit == 4 * 3600


KUEUE_V1BETA2 = """\
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {name: a100}
spec:
  nodeLabels: {gpu: a100}
  nodeTaints: [{key: k, value: v, effect: NoSchedule}]
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {name: cq}
spec:
  cohortName: lab
  namespaceSelector: {}
  queueingStrategy: StrictFIFO
  preemption: {reclaimWithinCohort: Any}
  flavorFungibility: {whenCanBorrow: MayStopSearch}
  resourceGroups:
  - coveredResources: [nvidia.com/gpu]
    flavors:
    - name: a100
      resources:
      - {name: nvidia.com/gpu, nominalQuota: 8, lendingLimit: 2}
---
apiVersion: kueue.x-k8s.io/v1alpha1
kind: Topology
metadata: {name: t}
spec:
  levels: [{nodeLabel: rack}]
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {namespace: ml, name: lq}
spec: {clusterQueue: cq}
"""


def test_kueue_v1beta2_documents_are_accepted_as_is(tmp_path: Path) -> None:
    man = load_files([write(tmp_path, KUEUE_V1BETA2)])
    cq = man.config.cluster_queues["cq"]
    assert cq.cohort == "lab" and cq.strategy == QueueingStrategy.STRICT_FIFO
    assert cq.quotas[("a100", GPU)].lending_limit == 2000
    assert man.config.local_queues["ml/lq"].cluster_queue == "cq"
    assert man.levels == ("rack",)


BAD = {
    "bad quantity": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {resources: {cpu: lots}}
        """,
        "m.yaml: document 0 (Job j): spec.resources.cpu: not a quantity: 'lots'",
    ),
    "typo in a detente field": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {node: 2}
        """,
        "m.yaml: document 0 (Job j): spec.node: Extra inputs are not permitted (got 2)",
    ),
    "unknown kind": (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
        "m.yaml: document 0 (Pod p): kind: unknown kind 'Pod'",
    ),
    "dangling cluster queue": (
        """\
        apiVersion: kueue.x-k8s.io/v1beta1
        kind: LocalQueue
        metadata: {name: lq}
        spec: {clusterQueue: nope}
        """,
        "m.yaml: document 0 (LocalQueue lq): spec.clusterQueue: unknown ClusterQueue (got 'nope')",
    ),
    "bad time limit in second document": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: ok}
        ---
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {timeLimit: soon}
        """,
        "m.yaml: document 1 (Job j): spec.timeLimit: not a duration: 'soon'",
    ),
    "unknown priority class": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {priorityClass: urgent}
        """,
        "spec.priorityClass: unknown WorkloadPriorityClass (got 'urgent')",
    ),
    "running on an unknown node": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        status: {nodes: [ghost], startTime: 5}
        """,
        "status.nodes[0]: unknown node (got 'ghost')",
    ),
    "nodes and replicas together": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {nodes: 2, replicas: 2}
        """,
        "spec: Value error, give spec.nodes or spec.replicas, not both",
    ),
    "fractional multi gpu": (
        """\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {resources: {nvidia.com/gpu: 1.5}}
        """,
        "spec.resources.nvidia.com/gpu: GPU requests above 1 must be whole GPUs, got 1.5",
    ),
    "not yaml": ("a: [1, 2\n", "m.yaml: not valid YAML"),
}


@pytest.mark.parametrize("text,want", BAD.values(), ids=BAD.keys())
def test_bad_input_names_file_document_path_and_value(tmp_path: Path, text: str, want: str) -> None:
    with pytest.raises(ManifestError) as e:
        load_files([write(tmp_path, textwrap.dedent(text))])
    assert any(want in p for p in e.value.problems), e.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
    apiVersion: detente.dev/v1
    kind: Job
    metadata: {name: a}
    spec: {timeLimit: never}
    ---
    apiVersion: detente.dev/v1
    kind: Job
    metadata: {name: b}
    spec: {resources: {memory: x}}
    """
    with pytest.raises(ManifestError) as e:
        load_files([write(tmp_path, text)])
    assert len(e.value.problems) == 2


def test_node_pool_patterns(tmp_path: Path) -> None:
    text = """\
    apiVersion: detente.dev/v1
    kind: NodePool
    metadata: {name: p}
    spec:
      count: 1000
      namePattern: "node-{i:04d}"
      labels: {block: "b{i/256}", rack: "r{i/32}", slot: "{i%32}"}
      capacity: {nvidia.com/gpu: 8}
    """
    man = load_files([write(tmp_path, text)])
    n = man.nodes[999]
    assert n.name == "node-0999"
    assert dict(n.labels) == {"block": "b3", "rack": "r31", "slot": "7"}
    assert n.capacity[GPU] == 8000


def test_duplicate_node_names_are_rejected(tmp_path: Path) -> None:
    node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {capacity: {cpu: 1}}\n"
    with pytest.raises(ManifestError, match="duplicate Node name 'n1'"):
        load_files([write(tmp_path, node + "---\n" + node)])


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.yaml: cannot read"):
        load_files([tmp_path / "nope.yaml"])


QUEUE_WITH = """
apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: default}
spec:
  nodeTaints: [{key: gpu, value: "true", effect: NoSchedule}]
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: cq}
spec:
  namespaceSelector: {}
  flavorFungibility: {whenCanBorrow: Borrow}
  admissionChecks: [prov]
  resourceGroups:
  - coveredResources: [nvidia.com/gpu]
    flavors:
    - name: default
      resources:
      - name: nvidia.com/gpu
        nominalQuota: 8
        BORROW: 4
"""


def test_unmodelled_kueue_fields_warn_with_their_path(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text(QUEUE_WITH.replace("        BORROW: 4\n", ""))
    got = [w.removesuffix(": not modelled by detente; ignored") for w in load_files([f]).warnings]
    assert got == [
        f"{f}: document 0 (ResourceFlavor default): spec.nodeTaints",
        f"{f}: document 1 (ClusterQueue cq): spec.admissionChecks",
        f"{f}: document 1 (ClusterQueue cq): spec.flavorFungibility",
        f"{f}: document 1 (ClusterQueue cq): spec.namespaceSelector",
    ]


def test_a_typo_in_a_kueue_field_is_an_error_at_its_path(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text(QUEUE_WITH.replace("BORROW", "borowingLimit"))
    with pytest.raises(ManifestError) as e:
        load_files([f])
    (problem,) = e.value.problems
    assert problem.startswith(
        f"{f}: document 1 (ClusterQueue cq): spec.resourceGroups.0.flavors.0.resources.0: "
    )
    assert "unknown field(s) 'borowingLimit'" in problem and "borrowingLimit" in problem


BATCH_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: sample
  labels: {kueue.x-k8s.io/queue-name: team}
spec:
  parallelism: 3
  completions: 3
  template:
    spec:
      containers:
      - name: main
        image: registry.example/train:1
        command: [bash, -c]
        args: ["echo $GREETING from $RANK"]
        env: [{name: GREETING, value: hello}]
        resources:
          requests: {cpu: 500m, memory: 2Gi}
          limits: {nvidia.com/gpu: 1}
      - name: sidecar
        resources:
          requests: {cpu: "1"}
"""


def test_a_kueue_managed_batch_job_is_one_workload_of_its_parallelism(tmp_path: Path) -> None:
    (job,) = load_files([write(tmp_path, BATCH_JOB)]).jobs
    w = job.workload
    (ps,) = w.pod_sets
    assert (w.name, w.queue, ps.count) == ("sample", "default/team", 3)
    assert (ps.request[GPU], ps.request["cpu"], ps.request["memory"]) == (1000, 1500, 2 << 30)
    assert job.spec.script == "#!/bin/bash\nbash -c 'echo $GREETING from $RANK'\n"
    assert job.spec.env == {"GREETING": "hello"}
    # A gang of 3 pods that may share nodes (Kueue admits a Job's pods as one workload).
    assert (job.spec.ntasks, ps.one_per_node) == (3, False)


def test_a_batch_job_without_the_queue_label_is_refused(tmp_path: Path) -> None:
    text = BATCH_JOB.replace("  labels: {kueue.x-k8s.io/queue-name: team}\n", "")
    with pytest.raises(ManifestError, match=r"document 0 \(Job sample\): .*queue-name is required"):
        load_files([write(tmp_path, text)])
