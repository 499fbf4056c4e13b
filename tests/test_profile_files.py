"""A profile assembled from the plugin registry by a YAML file, reachable from every
`--profile` option."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detente.api.profiles import ProfileError, load

FIFO = """apiVersion: detente.dev/v1
kind: Profile
metadata: {name: binpack-fifo}
spec:
  queueSort: FifoSort
  scores: {GpuBinpack: 1}
"""


def test_a_profile_file_assembles_plugins(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(FIFO)
    prof = load(str(f))
    assert prof.name == "binpack-fifo" and type(prof.queue_sort).__name__ == "FifoSort"
    assert [type(s.plugin).__name__ for s in prof.scores] == ["GpuBinpack"]
    assert load("slurm").name == "slurm"


@pytest.mark.parametrize(
    "change, want",
    [
        (("FifoSort", "FifoSrot"), "spec.queueSort: unknown plugin 'FifoSrot'"),
        (("GpuBinpack", "Binpak"), "spec.scores: unknown plugin 'Binpak'"),
        (("queueSort", "queueSrot"), "spec.queueSrot: Extra inputs are not permitted"),
    ],
)
def test_bad_profile_files_name_the_field(
    tmp_path: Path, change: tuple[str, str], want: str
) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(FIFO.replace(*change))
    with pytest.raises(ProfileError, match=want):
        load(str(f))


def test_plan_takes_a_profile_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(FIFO)
    examples = Path(__file__).parent.parent / "examples"
    detente = str(Path(sys.executable).parent / "detente")
    out = subprocess.run(
        [detente, "plan", "-o", "json", "--profile", str(tmp_path / "p.yaml"),
         "-f", str(examples / "backfill.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["workloads"]
