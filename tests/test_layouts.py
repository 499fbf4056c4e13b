"""One shared pool against the split: the layout search, preemptible training with
checkpoints, several services and real inference loads, and the live autoscaler's
agreement with the simulator's."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from detente.core.profiles import build
from detente.core.resources import CPU, GPU, Resources
from detente.core.workload import PodSet, Workload
from detente.sim import loads, services
from detente.sim.driver import Simulation
from detente.sim.layouts import Search, Slo, compare, fewest
from detente.sim.run import Part, SimConfig, simulate
from detente.sim.traces import TraceError
from detente.testing.builders import World, a_cluster_queue, racks

# -- the search --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "lo", "hi", "answer", "start", "expected"),
    [
        ("answer inside, start at the top", 1, 16, 11, None, 11),
        ("answer inside, start below it", 1, 16, 11, 3, 11),
        ("answer is the lower bound", 4, 16, 2, 9, 4),
        ("answer is the upper bound", 1, 16, 16, 5, 16),
        ("nothing in range holds", 1, 16, 17, 8, None),
        ("a one-point range that holds", 5, 5, 5, None, 5),
    ],
)
def test_fewest_finds_the_smallest_size_that_holds(
    case: str, lo: int, hi: int, answer: int, start: int | None, expected: int | None
) -> None:
    calls: list[int] = []

    def ok(n: int) -> bool:
        calls.append(n)
        return n >= answer

    assert fewest(lo, hi, ok, start) == expected, case
    assert len(calls) <= 2 * (hi - lo + 1).bit_length() + 2, case  # logarithmic


def test_fewest_near_its_start_costs_few_runs() -> None:
    calls: list[int] = []
    assert fewest(1, 64, lambda n: calls.append(n) or n >= 17, start=18) == 17
    assert calls == [18, 17, 15, 16]  # down by 1, then 2; then the bracket (15, 17)


def _philly(path: Path, rows: list[tuple[str, int, int]]) -> Path:
    lines = ["timestamp,duration,num_gpus,gpu_time,cluster"]
    lines += [f"{ts},{d},{g},{d * g},vc" for ts, d, g in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_small_case_sized_by_hand(tmp_path: Path) -> None:
    """Two 8-GPU jobs of 1,000 s at once and one 8-GPU replica wanted all along.

    Training alone on the reference 2×8: both run at once, JCT 1,000; the bound is
    1.1 × 1,000. On one node the second waits: JCT (1,000 + 2,000) / 2 = 1,500 > bound.
    So split = 2 training nodes + 1 inference node. A shared pool of 2 nodes gives the
    replica one node and training the other (JCT 1,500): too few; 3 nodes hold both."""
    trace = _philly(tmp_path / "t.csv", [("2017-10-02 00:00:00", 1000, 8)] * 2)
    cfg = SimConfig(trace=str(trace), cluster="2x8", services="diurnal:1,gpus=8,max=1")
    out = compare("detente", cfg, ("shared", "split"), True, Slo())
    assert out["train_jct_bound"] == pytest.approx(1100.0)
    split, shared = out["split"], out["shared"]
    assert (split["train_gpus"], split["infer_gpus"], split["gpus"]) == (16, 8, 24)
    assert split["jct_avg"] == pytest.approx(1000.0) and split["svc_availability"] == 1.0
    assert shared["gpus"] == 24 and shared["meets_slo"] and out["shared_found"]
    assert 0 < split["gpu_util"] <= 1 and 0 < shared["gpu_util"] <= 1
    two = next(r for r in out["trail"] if r["layout"] == "shared" and r["nodes"] == 2)
    assert two["jct_avg"] == pytest.approx(1500.0) and not two["training_ok"]


def test_the_search_needs_an_nxg_cluster_and_a_load() -> None:
    with pytest.raises(ValueError, match="NxG"):
        Search("detente", SimConfig(cluster="openb", services="diurnal:2"), Slo())
    with pytest.raises(ValueError, match="--services"):
        Search("detente", SimConfig(cluster="2x8"), Slo()).infer_ceiling()


# -- preemptible training with checkpoints ---------------------------------------------


def _pool(gpus: int) -> Simulation:
    world = World(racks({"r0": 1}, gpus=gpus)).queue(services.QUEUE, a_cluster_queue("cq"))
    world.queue("team", a_cluster_queue("cq"))
    return Simulation(world.snapshot(), build("detente"), checkpoint_every=1000.0)


def test_a_preempted_job_loses_the_work_since_its_last_checkpoint() -> None:
    sim = _pool(gpus=8)
    job = Workload(
        "train", "default/team", (PodSet("main", 1, Resources({GPU: 8000, CPU: 1000})),),
        time_limit=7200.0, preemptible=True, checkpoint_grace=30.0,
    )  # fmt: skip
    sim.submit(job, 3600.0)
    svc = services.Service("serve", target=10.0, max_replicas=1, gpus_per_replica=8,
                           utilization=1.0)  # fmt: skip
    sim.add_service(svc, [(2500.0, 5.0), (5000.0, 5.0)])
    rec = sim.run()["train"]
    # Preempted at 2,500, gone at 2,530 (its grace): 2,000 s were checkpointed, 530 s
    # of 8 GPUs are lost; it resumes when the replica leaves at 5,000 with 1,600 s left.
    assert rec.preempted_at == [2530.0]
    assert rec.lost_gpu_seconds == pytest.approx(530 * 8)
    assert rec.end == pytest.approx(5000.0 + 1600.0)
    assert sim.jobs["serve-r0"].first_start == 2530.0


def test_without_preemptible_training_the_shared_pool_loses_its_advantage() -> None:
    """The direction the shared pool's advantage rests on: services take GPUs only from
    preemptible training. Same trace and load, all training preemptible against none."""
    base = SimConfig(trace="synthetic:300", cluster="3x8", services="diurnal:12", seed=1)
    spot = compare("detente", _share(base, 1.0), ("shared", "split"), True, Slo())
    none = compare("detente", _share(base, 0.0), ("shared", "split"), True, Slo())
    assert spot["split"]["gpus"] == none["split"]["gpus"]  # split never preempts
    assert spot["shared"]["gpus"] <= spot["split"]["gpus"] < none["shared"]["gpus"]
    assert none["shared"]["preemptions"] == 0 and spot["shared"]["preemptions"] > 0
    # At one size, without preemptible training the replicas wait for jobs to end.
    one = simulate("detente", _share(base, 1.0))["metrics"]
    zero = simulate("detente", _share(base, 0.0))["metrics"]
    assert one["svc_wait_p99"] < zero["svc_wait_p99"]
    assert one["gpu_hours_lost"] > 0  # checkpoints every 30 min: the rest is counted


def _share(cfg: SimConfig, share: float) -> SimConfig:
    from dataclasses import replace

    return replace(cfg, preemptible_share=share)


# -- services and loads ---------------------------------------------------------------


def test_several_services_each_with_its_gpus_and_priority() -> None:
    spec = "diurnal:4,name=chat,gpus=2,priority=5;azure-llm-code,name=code,throughput=4000"
    (chat, _), (code, load) = services.parse_spec(spec, 7200.0)
    assert (chat.name, chat.gpus_per_replica, chat.priority) == ("chat", 2.0, 5)
    assert (code.name, code.target, code.priority) == ("code", 4000.0, services.PRIORITY)
    assert code.max_replicas == -(-max(v for _, v in load) // (4000 * 0.7))
    out = simulate("detente", SimConfig(trace="synthetic:50", cluster="4x8", services=spec))
    m = out["metrics"]
    assert m["svc_replicas_max"] >= 1 and 0 < m["svc_availability"] <= 1.0
    assert m["svc_gpu_hours"] > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("diurnal:4,gpu=2", "is not one of name, gpus"),
        ("diurnal:4,gpus=two", "gpus='two' is not a number"),
        ("diurnal:4,gpus=0", "must be at least"),
        ("diurnal:4;diurnal:2,name=serve", "names repeat"),
        ("diurnal:0.5", "at least 1 replica"),
        ("nonsense", "no such file"),
        (" ; ", "no service given"),
    ],
)
def test_bad_service_specs_name_the_bad_value(spec: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        services.parse_spec(spec, 3600.0)


def test_the_genai_trace_gives_requests_in_flight(tmp_path: Path) -> None:
    f = tmp_path / "lora.csv"
    f.write_text(
        "gmt_create,exec_time_seconds,checkpoint_model_version_id\n"
        "2024-11-15 00:00:00,90,M1\n2024-11-15 00:00:30,30,M1\n2024-11-15 00:00:10,60,M2\n"
    )
    # M1: one request busy 0–90 s, one 30–60 s → 90 s in minute 0 (1.5), 30 s in minute 1.
    curve = loads.from_genai(f, "M1", span=180.0)
    assert curve[:3] == [(0.0, 1.5), (60.0, 0.5), (120.0, 1.5)]  # tiled: period 2 min
    both = loads.from_genai(f, None, span=60.0)
    assert both[0] == (0.0, pytest.approx((60 + 30 + 50) / 60))
    with pytest.raises(TraceError, match="no requests for model 'M9'"):
        loads.from_genai(f, "M9", span=60.0)


def test_the_bundled_azure_traces_are_the_public_ones() -> None:
    shared = Path(__file__).parents[2] / "shared/traces/azure_llm_inference_2023"
    for name, file in [("azure-llm-code", "AzureLLMInferenceTrace_code.csv"),
                       ("azure-llm-conv", "AzureLLMInferenceTrace_conv.csv")]:  # fmt: skip
        bundled = loads.load_curve(name, 3600.0)
        assert len(bundled) == 61 and max(v for _, v in bundled) > 1000
        if (shared / file).exists():
            assert bundled == loads.from_requests(shared / file, 3600.0)
            raw = (shared / file).read_bytes()
            ours = gzip.decompress(Path(loads.bundled(loads.AZURE[name])).read_bytes())
            assert ours == raw


# -- the live autoscaler agrees with the simulator's -----------------------------------


class _Registry:
    """A fake of the gateway's registry: reports the load the test sets."""

    def __init__(self) -> None:
        self.value = 0.0

    def sample(self, service: str) -> tuple[float, float, int]:
        return self.value, self.value, 0


def test_the_same_load_gives_the_same_replicas_live_and_simulated() -> None:
    from detente.api.services import ServiceSpec
    from detente.control.service_controller import ServiceController
    from detente.control.store.models import Service as Row

    curve = [(0.0, 3.0), (60.0, 30.0), (120.0, 31.0), (180.0, 12.0), (240.0, 2.0),
             (300.0, 2.0), (360.0, 0.5), (420.0, 0.5)]  # fmt: skip
    world = World(racks({"r0": 16}, gpus=1)).queue(services.QUEUE, a_cluster_queue("cq"))
    sim = Simulation(world.snapshot(), build("detente"))
    svc = services.Service("serve", target=10.0, min_replicas=1, max_replicas=8)
    sim.add_service(svc, curve)
    sim.run()
    simulated = sim.services["serve"].desired[:-1]  # the last is the curve's end (0)
    assert max(n for _, n in simulated) == 5  # ceil(31 / 7): not a flat curve

    registry = _Registry()
    live = ServiceController(None, registry)  # type: ignore[arg-type]
    spec = ServiceSpec.model_validate({
        "command": "serve", "autoscaling": {"min": 1, "max": 8, "target": {"concurrency": 7}},
    })  # fmt: skip
    row = Row(name="serve", desired=0, status={})
    got = []
    for t, _ in simulated:
        registry.value = next(v for ts, v in reversed(curve) if ts <= t)
        live._scale(row, spec, row.desired, t)  # every replica wanted is ready, as in the sim
        got.append((t, row.desired))
    live.pool.shutdown()
    assert got == simulated


# -- the command ------------------------------------------------------------------------


def test_simulate_layouts_writes_both_layouts(tmp_path: Path) -> None:
    trace = _philly(tmp_path / "t.csv", [("2017-10-02 00:00:00", 1000, 8)] * 2)
    proc = subprocess.run(
        [sys.executable, "-m", "detente", "simulate", "--trace", str(trace), "--cluster", "2x8",
         "--services", "diurnal:1,gpus=8,max=1", "--layout", "shared,split", "--gpus-search",
         "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "r/results.json").read_text())
    assert set(doc["layouts"]) == {"shared", "split"}
    for key in ("gpus", "svc_availability", "svc_wait_p99", "jct_avg", "gpu_util",
                "preemptions", "gpu_hours_lost"):  # fmt: skip
        assert key in doc["layouts"]["shared"]
    for key in ("gpus", "train_gpus", "infer_gpus", "svc_availability", "jct_avg", "gpu_util"):
        assert key in doc["layouts"]["split"]
    assert (tmp_path / "r/layouts.png").stat().st_size > 1000
    assert "one pool against the split" in proc.stdout


def test_simulate_layouts_refuses_a_bad_layout() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "detente", "simulate", "--services", "diurnal:2",
         "--layout", "hybrid"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown layout" in proc.stderr


def test_part_runs_training_or_services_alone() -> None:
    cfg = SimConfig(trace="synthetic:40", cluster="2x8", services="diurnal:2")
    train = simulate("detente", cfg, part=Part(training=True, services=False))["metrics"]
    infer = simulate("detente", cfg, part=Part(training=False, services=True))["metrics"]
    assert train["jobs"] == 40 and "svc_availability" not in train
    assert infer["jobs"] == 0 and infer["svc_availability"] == 1.0
