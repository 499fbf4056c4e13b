"""The simulator: engine, trace loaders, workload conversion, runs, metrics, report."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detente.sim import clusters, metrics, services, traces
from detente.sim.driver import Simulation
from detente.sim.engine import Engine
from detente.sim.run import SimConfig, simulate, workloads

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"


def test_engine_fires_in_time_then_schedule_order() -> None:
    eng, log = Engine(), []
    eng.at(2.0, lambda t: log.append(("b", t)))
    eng.at(1.0, lambda t: log.append(("a", t)))
    eng.at(2.0, lambda t: log.append(("c", t)))
    eng.run()
    assert log == [("a", 1.0), ("b", 2.0), ("c", 2.0)]
    with pytest.raises(ValueError, match="before now"):
        eng.at(1.5, lambda t: None)


def test_bundled_philly_sample_and_full_trace() -> None:
    sample = traces.load("philly-sample")
    assert len(sample) == 1692 and sample[0].submit == 0.0
    assert all(a.submit <= b.submit for a, b in itertools.pairwise(sample))
    assert len(traces.load("philly", limit=100)) == 100


def test_detects_formats_from_headers() -> None:
    assert traces.detect(["timestamp", "duration", "num_gpus", "gpu_time", "cluster"]) == "philly"
    assert traces.detect(["job_id", "submission_time", "duration", "num_gpu"]) == "itp"
    assert traces.detect(["name", "num_gpu", "gpu_milli", "creation_time"]) == "openb"
    assert traces.detect(["a", "b"]) is None


def test_bad_trace_row_names_file_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("job_id,submission_time,duration,num_gpu\nj1,0,100,1\nj2,5,soon,1\n")
    with pytest.raises(
        traces.TraceError, match=r"t\.csv:3: column 'duration': not a number: 'soon'"
    ):
        traces.load(str(f))


def test_unknown_format_asks_for_trace_format(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("x,y\n1,2\n")
    with pytest.raises(traces.TraceError, match="--trace-format"):
        traces.load(str(f))


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/traces is not present")
def test_real_itp_and_openb_traces_load() -> None:
    itp = traces.load(str(SHARED / "microsoft_itp_elasticflow" / "raw" / "cluster02.csv"))
    assert len(itp) == 5778 and itp[0].queue == "cluster02"
    openb = traces.load(str(SHARED / "alibaba_gpu_v2023_openb" / "openb_pod_list_default.csv"))
    assert len(openb) == 8152
    assert any(0 < j.gpus < 1 for j in openb)  # fractional GPU shares survive


def test_jobs_above_the_node_size_become_gangs_with_over_asked_limits() -> None:
    jobs = [
        traces.TraceJob("big", 0, 100.0, 24.0),
        traces.TraceJob("odd", 0, 100.0, 12.0),
        traces.TraceJob("share", 0, 10.0, 0.5),
        traces.TraceJob("huge", 0, 100.0, 4096.0),
    ]
    work, dropped = workloads(jobs, clusters.grid(8, 8), SimConfig(over_estimate=3.0))
    by = {w.name: w for w, _ in work}
    assert by["big"].pod_sets[0].count == 3 and by["big"].pod_sets[0].one_per_node
    assert by["odd"].pod_sets[0].count == 2 and by["odd"].total.gpu_milli == 12_000
    assert by["share"].total.gpu_milli == 500
    assert by["big"].time_limit == 300.0 and by["share"].time_limit == 60.0
    assert dropped == 1


def test_cluster_shorthands() -> None:
    assert clusters.build("24x8").cluster.total_gpus == 192
    assert clusters.build("openb").cluster.total_gpus == 6212
    lj = clusters.build("lingjun").cluster
    assert len(lj.nodes) == 847 and len(lj.levels) == 2
    with pytest.raises(clusters.ClusterError):
        clusters.build("nope.yaml")


def test_same_seed_same_metrics_and_sane_ranges() -> None:
    cfg = SimConfig(trace="synthetic:300", cluster="8x8", seed=3)
    a = simulate("detente", cfg)["metrics"]
    b = simulate("detente", cfg)["metrics"]
    for k in ("jct_avg", "wait_avg", "gpu_util", "preemptions", "cycles"):
        assert a[k] == b[k]
    assert a["finished"] == 300 and 0 < a["gpu_util"] <= a["alloc_ratio"] <= 1
    assert a["jct_norm_avg"] >= 1.0 and a["jct_p50"] <= a["jct_p99"]


def test_node_failures_requeue_and_everything_still_finishes() -> None:
    cfg = SimConfig(trace="synthetic:200", cluster="8x8", seed=1, mtbf_hours=24)
    m = simulate("slurm", cfg)["metrics"]
    assert m["finished"] == 200
    assert m["preemptions"] > 0 and m["gpu_hours_lost"] > 0


def test_simulate_cli_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    cmd = [
        sys.executable, "-m", "detente", "simulate", "--trace", "synthetic:150", "--cluster", "6x8",
        "--profile", "slurm,detente", "--out", str(out), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["profiles"]) == {"slurm", "detente"}
    keys = "jobs jct_avg jct_p50 jct_p99 wait_avg wait_p50 wait_p99 gpu_util alloc_ratio"
    for key in [*keys.split(), "preemptions", "wall_seconds", "jobs_per_s"]:
        assert key in doc["profiles"]["detente"]
    for name in (
        "report.md",
        "report.html",
        "jct_cdf.png",
        "queue.png",
        "utilization.png",
        "bars.png",
    ):
        assert (out / name).stat().st_size > 0
    assert "| detente |" in (out / "report.md").read_text()


def test_simulate_cli_rejects_unknown_profile() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "detente", "simulate", "--profile", "lsf"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown profile" in proc.stderr


# -- services (load change events) ---------------------------------------------------


def _service_sim(nodes: int) -> tuple[Simulation, services.Service]:
    from detente.core.profiles import build
    from detente.testing.builders import World, a_cluster_queue, racks

    world = World(racks({"r0": nodes}, gpus=1)).queue(services.QUEUE, a_cluster_queue("cq"))
    world.queue("team", a_cluster_queue("cq"))
    svc = services.Service("serve", target=10.0, min_replicas=1, max_replicas=4, utilization=1.0)
    return Simulation(world.snapshot(), build("detente")), svc


def test_service_scales_up_and_down_with_load() -> None:
    sim, svc = _service_sim(nodes=4)
    sim.add_service(svc, [(0.0, 5.0), (100.0, 35.0), (200.0, 12.0), (300.0, 12.0)])
    jobs = sim.run()
    reps = {n: j for n, j in jobs.items() if j.service}
    assert sorted(reps) == ["serve-r0", "serve-r1", "serve-r2", "serve-r3"]
    assert reps["serve-r0"].first_start == 0.0 and reps["serve-r3"].first_start == 100.0
    # 35 → 4 replicas, 12 → 2: the two newest stop at 200, the rest at the end.
    assert reps["serve-r3"].end == 200.0 and reps["serve-r2"].end == 200.0
    assert reps["serve-r0"].end == 300.0
    m = metrics.services(jobs, list(sim.services.values()))
    assert m["svc_availability"] == pytest.approx(1.0)
    assert m["svc_replicas_max"] == 4


def test_pending_replicas_withdraw_before_serving_ones_stop() -> None:
    sim, svc = _service_sim(nodes=2)  # room for two replicas only
    sim.add_service(svc, [(0.0, 40.0), (100.0, 25.0), (200.0, 25.0)])
    jobs = sim.run()
    assert jobs["serve-r2"].first_start is None and jobs["serve-r3"].first_start is None
    assert jobs["serve-r1"].end == 200.0  # still serving after the scale-down at 100
    m = metrics.services(jobs, list(sim.services.values()))
    # Wanted 4 then 3 replicas for 100 s each, served 2: availability 400 / 700.
    assert m["svc_availability"] == pytest.approx(400 / 700)


def test_diurnal_load_and_request_trace_curves(tmp_path: Path) -> None:
    load = services.diurnal(86400.0, peak=8.0)
    assert load[0] == (0.0, 1.0) and max(v for _, v in load) == pytest.approx(8.0)
    trace = tmp_path / "req.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,100,20\n2023-11-16 18:18:10.0000000,50,10\n"
    )
    curve = services.from_requests(trace, span=240.0)
    assert curve[:4] == [(0.0, 2.0), (60.0, 1.0), (120.0, 2.0), (180.0, 1.0)]  # tiled
    with pytest.raises(traces.TraceError, match="no such file"):
        services.parse_spec(str(tmp_path / "missing.csv"), 100.0)


def test_simulate_with_a_diurnal_service_reports_service_metrics() -> None:
    out = simulate("detente", SimConfig(trace="synthetic:200", cluster="4x8", services="diurnal:4"))
    m = out["metrics"]
    assert m["jobs"] == 200 and m["unfinished"] == 0
    # diurnal:4 at the KPA's 70 % target: at most ceil(4 / 0.7) = 6 replicas.
    assert 0.5 < m["svc_availability"] <= 1.0 and 1 <= m["svc_replicas_max"] <= 6
