"""Pollux/Sia 160-job workloads: detection, run-time model, errors, against Pollux's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detente.sim import pollux, traces

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces" / "philly_pollux"
HEADER = "name,time,application,num_replicas,batch_size\n"


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "workload-1.csv"
    p.write_text(HEADER + body)
    return p


def test_workload_detected_and_run_times_from_profiles(tmp_path: Path) -> None:
    path = _write(tmp_path, "cifar10-0,107,cifar10,6,2048\nncf-2,135,ncf,1,32768\n")
    jobs = traces.load(str(path))
    assert [j.name for j in jobs] == ["cifar10-0", "ncf-2"]
    assert [j.submit for j in jobs] == [0.0, 28.0]
    assert jobs[0].gpus == 6.0 and jobs[1].gpus == 1.0
    # 100 epochs × ceil(50,048 / 2,048) steps × measured step time for 6 replicas at 341.
    step = pollux.iteration_time("cifar10", 6, 2048 / 6)
    assert jobs[0].duration == pytest.approx(100 * 25 * step)


def test_more_replicas_train_faster_per_job() -> None:
    assert pollux.run_time("cifar10", 16, 4096) < pollux.run_time("cifar10", 6, 4096)


def test_unknown_application_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "cifar10-0,107,cifar10,6,2048\nx-1,110,gpt5,6,320\n")
    with pytest.raises(traces.TraceError, match=r"workload-1.csv:3: column 'application'.*'gpt5'"):
        traces.load(str(path))


def test_bad_replicas_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "c-0,1,cifar10,abc,2048\n")
    with pytest.raises(traces.TraceError, match=r":2: column 'num_replicas'"):
        traces.load(str(path))


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/traces is not present")
def test_run_times_never_exceed_pollux_tiresias_jcts_except_bert() -> None:
    """A job's run time cannot exceed its JCT in Pollux's own Tiresias run (fixed
    replicas, as here). bert is the known exception: Pollux stops it at a target
    metric inside its second epoch; we run both epochs."""
    summary = json.loads(
        (SHARED / "pollux_results" / "jobload_tiresias-1.0_summary.json").read_text()
    )
    over = []
    for w in range(1, 9):
        path = SHARED / "pollux_workloads" / "workloads" / f"workload-{w}.csv"
        for j in traces.load(str(path)):
            if j.duration > summary["jcts"][f"workload-{w}"][j.name]:
                over.append(j.name)
    assert over and all(name.startswith("bert") for name in over)
