"""A Slurm partition's nodes as detente's layout (`detente.executors.slurm_nodes`):
the parsers on recorded `scontrol` output (named cases), and on a live local Slurm
(scripts/slurm), where a node drained in Slurm is a draining node here."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from detente.conformance.systems import SlurmUnavailable, local_slurm
from detente.control import layout
from detente.core.cluster import NodeCondition
from detente.executors.slurm_nodes import fields, gpus, parse, read

NODES = "\n".join([
    "NodeName=a1 Arch=x86_64 NodeAddr=10.0.0.11 CPUTot=64 CPUEfctv=62 AvailableFeatures=a100,ib "
    "ActiveFeatures=a100,ib Gres=gpu:a100:4(S:0-1) RealMemory=512000 State=IDLE+DRAIN "
    "Partitions=gpu,debug Reason=bad fan [root@2026-12-01T01:40:20]",
    "NodeName=a2 CPUTot=64 AvailableFeatures=(null) Gres=gpu:8,shard:16 RealMemory=1024 "
    "State=DOWN* Partitions=gpu Reason=Not responding [slurm@2026-12-01T00:00:00]",
    "NodeName=a3 CPUTot=32 Gres=(null) RealMemory=2048 State=MIXED Partitions=cpu",
])  # fmt: skip
TOPOLOGY = """SwitchName=s0 Level=0 LinkSpeed=1 Nodes=a[1-2]
SwitchName=s1 Level=0 LinkSpeed=1 Nodes=a3
SwitchName=root Level=1 LinkSpeed=1 Nodes=a[1-3] Switches=s[0-1]
"""


@pytest.mark.parametrize(("gres", "want"), [
    ("gpu:8", 8), ("gpu:a100:4(S:0-1)", 4), ("gpu:2,shard:8", 2), ("(null)", 0),
    ("gpu:a100:2,gpu:h100:2", 4), ("", 0),
])  # fmt: skip
def test_gpus_from_gres(gres: str, want: int) -> None:
    assert gpus(gres) == want


def test_a_reason_keeps_its_spaces() -> None:
    f = fields("NodeName=x State=DRAIN Reason=bad fan [root@t] ")
    assert f == {"NodeName": "x", "State": "DRAIN", "Reason": "bad fan [root@t]"}


def test_recorded_nodes_become_specs_and_states() -> None:
    specs, states = parse(NODES, TOPOLOGY)
    assert [(s["name"], s["gpus"], s["cpu"], s["rack"]) for s in specs] == [
        ("a1", 4, 62000, "s0"), ("a2", 8, 64000, "s0"), ("a3", 0, 32000, "s1")]  # fmt: skip
    assert specs[0]["memory"] == 512000 << 20 and specs[0]["features"] == "a100,ib"
    assert specs[0]["addr"] == "10.0.0.11" and "addr" not in specs[1]
    assert "features" not in specs[1]
    assert states["a1"] == {"state": "drain", "reason": "bad fan [root@2026-12-01T01:40:20]"}
    assert states["a2"]["state"] == "down" and states["a2"]["reason"].startswith("Not resp")
    assert set(states) == {"a1", "a2"}
    only_gpu, _ = parse(NODES, TOPOLOGY, partition="gpu")
    assert [s["name"] for s in only_gpu] == ["a1", "a2"]
    cl = layout.cluster(specs, states)
    assert [n.condition for n in cl.nodes] == [NodeCondition.DRAINING, NodeCondition.DOWN,
                                               NodeCondition.UP]  # fmt: skip
    assert "a100" in cl.nodes[0].features


def test_a_live_slurm_partition_and_its_drains(tmp_path: Path) -> None:
    try:
        with local_slurm(tmp_path / "slurm", nodes=4, gpus=8) as slurm:
            env = dict(slurm.env)
            specs, states = read(env)
            assert [(s["name"], s["gpus"]) for s in specs] == [(f"n{i}", 8) for i in range(1, 5)]
            assert states == {}
            scontrol = ["scontrol", "update", "nodename=n2"]
            subprocess.run([*scontrol, "state=drain", "reason=bad fan"], env=env, check=True)
            _, states = read(env)
            assert states["n2"]["state"] == "drain" and "bad fan" in states["n2"]["reason"]
            subprocess.run([*scontrol, "state=resume"], env=env, check=True)
            # Slurm shows it IDLE+NOT_RESPONDING until its slurmd reports: down till then.
            deadline = time.monotonic() + 30
            while read(env)[1] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert read(env)[1] == {}
    except SlurmUnavailable as e:
        pytest.skip(f"Slurm cannot run here (root and Debian's slurm packages needed): {e}")
