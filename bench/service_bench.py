"""Services: the gateway against calling a replica directly and against HAProxy in
front of the same replicas, and the live reaction times. Prints JSON.

* ``latency``: N sequential small GETs over one kept-alive connection each way —
  direct to a replica, through detente's gateway, through HAProxy (Debian's, when
  installed) — p50/p99 in ms, and the gateway's and HAProxy's added p50.
* ``throughput``: ``wrk`` (Debian's, when installed) for a few seconds per target:
  requests/s direct, through the gateway, through HAProxy.
* ``reaction``: from a load step to a new replica ready; from ``detente node fail``
  to served again (median of ``--node-fails``); cold start from zero.

The replicas are examples/serve/fake_llm.py under ``detente up --nodes 3x8``.
Everything runs on this machine's 2 cores at once: read the ratios.

    python bench/service_bench.py [--requests 2000] [--node-fails 10] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from detente.testing.live import Live

SERVER = Path(__file__).resolve().parent.parent / "examples" / "serve" / "fake_llm.py"
SERVICE = """apiVersion: detente.dev/v1
kind: Service
metadata: {{name: llm}}
spec:
  command: exec python3 {server}
  resources: {{nvidia.com/gpu: 1, cpu: 1}}
  {scale}
  readiness: {{path: /healthz, periodSeconds: 0.2}}
  env: {{TOKEN_RATE: "20"}}
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))] * 1000, 3)


def latency(url: str, n: int) -> dict[str, float]:
    with httpx.Client(timeout=10) as c:
        for _ in range(50):  # warm up
            c.get(url)
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.get(url).raise_for_status()
            ts.append(time.perf_counter() - t0)
    return {"p50_ms": pct(ts, 0.5), "p99_ms": pct(ts, 0.99)}


def wrk(url: str, seconds: int) -> float | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", url], capture_output=True,
                         text=True, timeout=seconds + 30).stdout  # fmt: skip
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None


def haproxy(ports: list[int], d: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    if shutil.which("haproxy") is None:
        return None
    port = _free_port()
    servers = "\n".join(f"  server r{i} 127.0.0.1:{p}" for i, p in enumerate(ports))
    (d / "haproxy.cfg").write_text(f"""global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  balance leastconn
{servers}
""")
    proc = subprocess.Popen(["haproxy", "-f", str(d / "haproxy.cfg")])
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/x", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apply(live: Live, d: Path, scale: str) -> None:
    f = d / f"s{time.monotonic_ns()}.yaml"
    f.write_text(SERVICE.format(server=SERVER, scale=scale))
    live.cli("apply", "-y", "-f", str(f))


def data_path(live: Live, d: Path, args: argparse.Namespace) -> dict[str, Any]:
    apply(live, d, "replicas: 2")
    svc = live.wait_service("llm", lambda s: s["ready"] == 2)
    ports = [r["port"] for r in svc["replicas"]]
    direct, gw = f"http://127.0.0.1:{ports[0]}/x", f"{live.gateway}/llm/x"
    out: dict[str, Any] = {"latency": {}, "throughput": {}}
    hp = haproxy(ports, d)
    targets = {"direct": direct, "gateway": gw}
    if hp is not None:
        targets["haproxy"] = f"http://127.0.0.1:{hp[1]}/x"
    try:
        for name, url in targets.items():
            out["latency"][name] = latency(url, args.requests)
        for name, url in targets.items():
            out["throughput"][f"{name}_rps"] = wrk(url, args.seconds)
    finally:
        if hp is not None:
            hp[0].send_signal(signal.SIGTERM)
            hp[0].wait()
    lat = out["latency"]
    out["gateway_added_p50_ms"] = round(lat["gateway"]["p50_ms"] - lat["direct"]["p50_ms"], 3)
    if "haproxy" in lat:
        out["haproxy_added_p50_ms"] = round(lat["haproxy"]["p50_ms"] - lat["direct"]["p50_ms"], 3)
    return out


def reaction(live: Live, d: Path, args: argparse.Namespace) -> dict[str, Any]:
    scale = "autoscaling: {min: 1, max: 4, target: {concurrency: 1}, scaleToZeroAfter: 3s}"
    apply(live, d, scale)
    live.wait_service("llm", lambda s: s["ready"] == 1 and len(s["replicas"]) == 1, 90)
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                c.post(f"{live.gateway}/llm/v1/completions", json={"max_tokens": 10})

    threads = [threading.Thread(target=client) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    live.wait_service("llm", lambda s: s["ready"] >= 2, 60)
    step = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join()
    fails = []
    for _ in range(args.node_fails):
        svc = live.wait_service("llm", lambda s: s["ready"] >= 1, 60)
        node = svc["replicas"][0]["node"]
        t0 = time.monotonic()
        live.cli("node", "fail", node)
        while time.monotonic() - t0 < 120:  # bounded: a stuck run is reported, not waited on
            r = httpx.get(f"{live.gateway}/llm/x", timeout=60)
            if r.status_code == 200 and r.json()["replica"].split(":")[0] != node:
                break
            time.sleep(0.02)
        fails.append(time.monotonic() - t0)
        live.cli("node", "restore", node)
    apply(live, d, scale.replace("min: 1", "min: 0"))
    live.wait_service("llm", lambda s: s["desired"] == 0 and not s["replicas"], 120)
    t0 = time.monotonic()
    httpx.get(f"{live.gateway}/llm/x", timeout=60).raise_for_status()
    cold = time.monotonic() - t0
    return {"load_step_to_new_replica_ready_s": round(step, 2),
            "node_fail_to_served_s": {"median": round(statistics.median(fails), 2),
                                      "max": round(max(fails), 2), "runs": len(fails)},
            "cold_start_from_zero_s": round(cold, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--node-fails", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        live = Live(d / "home")
        live.home.mkdir()
        live.up("--nodes", "3x8")
        try:
            out = {"machine": {"cores": os.cpu_count(), "load": os.getloadavg()},
                   **data_path(live, d, args)}  # fmt: skip
            live.api("DELETE", "/v1/services/llm")
            live.wait(lambda js: all(j["state"] not in ("RUNNING", "STOPPING", "PENDING")
                                     for j in js.values()), 30)  # fmt: skip
            out["reaction"] = reaction(live, d, args)
        finally:
            live.down()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
