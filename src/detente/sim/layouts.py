"""One shared pool against the hybrid split: the same training trace and inference load
on (a) one pool, where services take GPUs from preemptible training and give them
back, and (b) two fixed clusters — training and inference — that never share.

With ``search``, each layout is sized to the fewest whole nodes that keep

* the inference SLO: wanted replica-seconds served ≥ ``availability`` (99.9 %) and the
  scale-up wait p99 ≤ ``wait_p99`` seconds, and
* equal training service: every training job finishes and the mean JCT stays within
  ``train_slack`` × the JCT of training alone on the reference cluster (``--cluster``)
  — without it the smallest "pool" would simply starve training.

For split the two clusters are independent, so the best division of a total is the
fewest training nodes meeting the training bound plus the fewest inference nodes
meeting the SLO: any other division of that total leaves one side short. Each search
is a bisection (`fewest`), which assumes more nodes never hurt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detente.sim.run import Part, SimConfig, services_of, simulate

LAYOUTS = ("shared", "split")


@dataclass(frozen=True, slots=True)
class Slo:
    availability: float = 0.999
    wait_p99: float = 120.0
    #: Training's mean JCT may be at most this × training alone on the reference cluster.
    train_slack: float = 1.1


def fewest(lo: int, hi: int, ok: Callable[[int], bool], start: int | None = None) -> int | None:
    """The smallest n in [lo, hi] with ``ok(n)``, assuming ``ok`` is monotone (false,
    then true); None if even ``hi`` fails. From ``start`` (default ``hi``) it gallops —
    steps of 1, 2, 4, … down while ``ok`` holds, or up while it fails — then bisects the
    bracket, so an answer near ``start`` costs a few calls, any answer O(log(hi − lo))."""
    start = hi if start is None else max(lo, min(start, hi))
    good: int | None = None
    bad = lo - 1
    step, n = 1, start
    if ok(n):
        good = n
        while n > lo:  # down until it fails
            n = max(lo, good - step)
            if not ok(n):
                bad = n
                break
            good, step = n, step * 2
    else:
        bad = n
        while n < hi:  # up until it holds
            n = min(hi, bad + step)
            if ok(n):
                good = n
                break
            bad, step = n, step * 2
        if good is None:
            return None
    while good - bad > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def shape(cluster: str) -> tuple[int, int]:
    """``NxG`` → (N, G); the search varies N."""
    m = re.fullmatch(r"(\d+)x(\d+)", cluster)
    if not m:
        raise ValueError(f"--cluster {cluster!r}: the layout search needs an NxG cluster")
    return int(m.group(1)), int(m.group(2))


class Search:
    """Runs (memoized by layout part and size) and the two searches."""

    def __init__(self, profile: str, cfg: SimConfig, slo: Slo) -> None:
        self.profile, self.cfg, self.slo = profile, cfg, slo
        self.nodes, self.per_node = shape(cfg.cluster)
        self.runs: dict[tuple[str, int], dict[str, Any]] = {}
        self._ceiling: int | None = None
        self._window: float | None = None

    def run(self, part: str, n: int) -> dict[str, Any]:
        key = (part, n)
        if key not in self.runs:
            p = Part(f"{n}x{self.per_node}", part != "infer", part != "train")
            self.runs[key] = simulate(self.profile, self.cfg, part=p)
        return self.runs[key]

    def window(self) -> float:
        """When the services' load ends: the window both loads run in."""
        if self._window is None:
            loads = [load for _, load in services_of(self.cfg) if load]
            self._window = max((load[-1][0] for load in loads), default=0.0)
        return self._window

    @property
    def trail(self) -> list[dict[str, Any]]:
        """Every run the search made, in order, with the figures it was judged by."""
        out = []
        for (part, n), r in self.runs.items():
            m = r["metrics"]
            out.append({
                "layout": part, "nodes": n, "gpus": n * self.per_node,
                "jct_avg": m["jct_avg"], "svc_availability": m.get("svc_availability"),
                "svc_wait_p99": m.get("svc_wait_p99"),
                "training_ok": self.train_ok(m) if part != "infer" else None,
                "slo_ok": self.svc_ok(m) if part != "train" else None,
            })  # fmt: skip
        return out

    def bound(self) -> float:
        """The training JCT bound: slack × training alone on the reference cluster."""
        return self.slo.train_slack * self.run("train", self.nodes)["metrics"]["jct_avg"]

    def train_ok(self, m: dict[str, Any]) -> bool:
        return bool(m["unfinished"] == 0 and m["jct_avg"] <= self.bound() + 1e-9)

    def svc_ok(self, m: dict[str, Any]) -> bool:
        return bool(
            m.get("svc_availability", 1.0) >= self.slo.availability
            and m.get("svc_wait_p99", 0.0) <= self.slo.wait_p99
        )

    def infer_ceiling(self) -> int:
        """Nodes that hold every service at its maximum replicas, each service on
        nodes of its own (an upper bound for the inference cluster)."""
        if not self.cfg.services:
            raise ValueError("the layouts need --services (an inference load)")
        if self._ceiling is None:
            nodes = 0
            for svc, _ in services_of(self.cfg):
                per_node = max(1, math.floor(self.per_node / svc.gpus_per_replica + 1e-9))
                nodes += -(-svc.max_replicas // per_node)
            self._ceiling = max(1, nodes)
        return self._ceiling

    def split(self) -> tuple[int | None, int | None]:
        """(training nodes, inference nodes), each the fewest meeting its side."""
        n_train = fewest(1, self.nodes, lambda n: self.train_ok(self.run("train", n)["metrics"]))
        top = self.infer_ceiling()
        n_infer = fewest(1, top, lambda n: self.svc_ok(self.run("infer", n)["metrics"]), 1)
        return n_train, n_infer

    def shared(self, lo: int, hi: int, start: int) -> int | None:
        def ok(n: int) -> bool:
            m = self.run("shared", n)["metrics"]
            return self.svc_ok(m) and self.train_ok(m)

        return fewest(lo, hi, ok, start)


def compare(
    profile: str, cfg: SimConfig, layouts: tuple[str, ...], search: bool, slo: Slo
) -> dict[str, Any]:
    """The layouts side by side: per layout its size, SLO figures, training JCT,
    utilization, preemptions and GPU-hours lost, and the runs behind them."""
    s = Search(profile, cfg, slo)
    n_train, n_infer = s.nodes, s.infer_ceiling()
    if search:
        n_train_opt, n_infer_opt = s.split()
        n_train = n_train_opt or n_train
        n_infer = n_infer_opt or n_infer
    out: dict[str, Any] = {"slo": _slo(slo)}
    out["train_jct_bound"] = s.bound()
    if "split" in layouts:
        out["split"] = _split(s, n_train, n_infer)
    if "shared" in layouts:
        n = s.nodes
        if search:
            total = n_train + n_infer  # start where split ends: the answer is near it
            found = s.shared(max(1, n_infer), 4 * total, total)
            n = found if found is not None else total
            out["shared_found"] = found is not None
        out["shared"] = _shared(s, n)
    out["trail"] = s.trail
    return out


def _slo(slo: Slo) -> dict[str, float]:
    return {"availability": slo.availability, "wait_p99": slo.wait_p99,
            "train_slack": slo.train_slack}  # fmt: skip


def _used(samples: list[dict[str, Any]], key: str, end: float) -> float:
    """GPU-seconds of ``key`` in [0, end] (samples are step functions)."""
    total = 0.0
    for a, b in zip(samples, [*samples[1:], None], strict=True):
        t0, t1 = a["time"], min(b["time"] if b is not None else end, end)
        if t1 > t0:
            total += a[key] * (t1 - t0)
    return total


def _util(s: Search, used: float, nodes: int) -> float:
    """GPU utilization over the window both loads run in (the services' span)."""
    end = s.window()
    return used / (nodes * s.per_node * end) if end > 0 and nodes else 0.0


def _shared(s: Search, n: int) -> dict[str, Any]:
    r = s.run("shared", n)
    m = r["metrics"]
    return {
        "gpus": n * s.per_node, "nodes": n, "meets_slo": s.svc_ok(m) and s.train_ok(m),
        "svc_availability": m.get("svc_availability", 1.0),
        "svc_wait_p99": m.get("svc_wait_p99", 0.0),
        "jct_avg": m["jct_avg"], "jct_p50": m["jct_p50"], "jct_p99": m["jct_p99"],
        "gpu_util": _util(s, _used(r["series"]["samples"], "running_gpus", s.window()), n),
        "preemptions": m["preemptions"],
        "svc_preemptions": m.get("svc_preemptions", 0), "gpu_hours_lost": m["gpu_hours_lost"],
        "series": r["series"]["samples"],
    }  # fmt: skip


def _split(s: Search, n_train: int, n_infer: int) -> dict[str, Any]:
    t, i = s.run("train", n_train), s.run("infer", n_infer)
    mt, mi = t["metrics"], i["metrics"]
    gpus = (n_train + n_infer) * s.per_node
    # Utilization of the two clusters together: GPU-time used over GPU-time owned.
    end = s.window()
    used = _used(t["series"]["samples"], "running_gpus", end)
    used += _used(i["series"]["samples"], "service_gpus", end)
    return {
        "gpus": gpus, "train_gpus": n_train * s.per_node, "infer_gpus": n_infer * s.per_node,
        "meets_slo": s.svc_ok(mi) and s.train_ok(mt),
        "svc_availability": mi.get("svc_availability", 1.0),
        "svc_wait_p99": mi.get("svc_wait_p99", 0.0),
        "jct_avg": mt["jct_avg"], "jct_p50": mt["jct_p50"], "jct_p99": mt["jct_p99"],
        "gpu_util": _util(s, used, n_train + n_infer), "preemptions": mt["preemptions"],
        "gpu_hours_lost": mt["gpu_hours_lost"],
        "series": _merge(t["series"]["samples"], i["series"]["samples"]),
    }  # fmt: skip


def _merge(train: list[dict[str, Any]], infer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two clusters' samples on one time line: training GPUs from the training
    cluster, service GPUs from the inference cluster (each at its last sample)."""
    times = sorted({x["time"] for x in train} | {x["time"] for x in infer})
    out, ti, ii = [], 0, 0
    last_t: dict[str, Any] = {"running_gpus": 0.0, "service_gpus": 0.0}
    last_i = dict(last_t)
    for t in times:
        while ti < len(train) and train[ti]["time"] <= t:
            last_t, ti = train[ti], ti + 1
        while ii < len(infer) and infer[ii]["time"] <= t:
            last_i, ii = infer[ii], ii + 1
        serving = last_i["service_gpus"]
        out.append({"time": t, "running_gpus": last_t["running_gpus"] + serving,
                    "service_gpus": serving})  # fmt: skip
    return out
