"""Inference services live, end to end: real processes (examples/serve/fake_llm.py),
real HTTP on loopback through the gateway. Measured times are printed, not asserted
(the targets live in bench/service_bench.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from detente.testing.live import Live

SERVER = Path(__file__).resolve().parent.parent / "examples" / "serve" / "fake_llm.py"


def service(name: str = "llm", scale: str = "replicas: 2", env: str = "TOKEN_RATE: '50'",
            extra: str = "") -> str:  # fmt: skip
    return f"""apiVersion: detente.dev/v1
kind: Service
metadata: {{name: {name}}}
spec:
  command: exec python3 {SERVER}
  resources: {{nvidia.com/gpu: 1, cpu: 1}}
  model: fake-{name}
  {scale}
  readiness: {{path: /healthz, periodSeconds: 0.2}}
  liveness: {{path: /healthz, periodSeconds: 1, failureThreshold: 3}}
  env: {{{env}, MODEL: fake-{name}}}
{extra}"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path / "home")
    lv.home.mkdir()
    lv.up("--nodes", "2x8")
    yield lv
    lv.down()


def apply(live: Live, tmp_path: Path, text: str) -> str:
    f = tmp_path / f"s{time.monotonic_ns()}.yaml"
    f.write_text(text)
    return live.cli("apply", "-y", "-f", str(f)).stdout


def ready(n: int):  # type: ignore[no-untyped-def]
    return lambda s: s["ready"] == n and len(s["replicas"]) == n


def test_a_service_serves_through_the_gateway_and_heals(live: Live, tmp_path: Path) -> None:
    assert "service llm: created" in apply(live, tmp_path, service())
    svc = live.wait_service("llm", ready(2))
    assert live.services()["llm"]["url"] == f"{live.gateway}/llm/"
    seen = {httpx.get(f"{live.gateway}/llm/who").json()["replica"] for _ in range(6)}
    assert len(seen) == 2  # both replicas take traffic
    r = httpx.post(f"{live.gateway}/v1/chat/completions", json={"model": "fake-llm",
                                                                "max_tokens": 2})  # fmt: skip
    assert r.status_code == 200 and r.json()["model"] == "fake-llm"
    assert httpx.get(f"{live.gateway}/v1/models").json()["data"][0]["id"] == "fake-llm"
    assert httpx.get(f"{live.gateway}/nope/x").status_code == 404
    # Kill one replica's server process: it is replaced; the service answers meanwhile.
    who = httpx.get(f"{live.gateway}/llm/who").json()
    victim = next(r for r in svc["replicas"] if who["replica"].endswith(f":{r['port']}"))
    t0 = time.monotonic()
    os.kill(who["pid"], signal.SIGKILL)
    codes = [httpx.get(f"{live.gateway}/llm/x").status_code for _ in range(20)]
    assert set(codes) == {200}
    svc = live.wait_service("llm", lambda s: ready(2)(s) and all(
        r["id"] != victim["id"] for r in s["replicas"]))  # fmt: skip
    print(f"replica killed -> replaced and ready: {time.monotonic() - t0:.2f} s")
    assert any(r["restarts"] == 1 for r in svc["replicas"])
    assert any(e[1] == "ReplicaExited" for e in svc["events"])


def test_scale_to_zero_then_the_first_request_is_held_and_served(
    live: Live, tmp_path: Path
) -> None:
    scale = "autoscaling: {min: 0, max: 3, target: {concurrency: 1}, scaleToZeroAfter: 2s}"
    apply(live, tmp_path, service(scale=scale))
    # Knative's initial scale is 1; with no traffic it goes to zero after the grace.
    live.wait_service("llm", lambda s: bool(s["scaling"]) and s["scaling"][-1]["to"] == 0
                      and not s["replicas"], 30)  # fmt: skip
    t0 = time.monotonic()
    r = httpx.get(f"{live.gateway}/llm/first", timeout=60)
    cold = time.monotonic() - t0
    print(f"cold start from zero: {cold:.2f} s")
    assert r.status_code == 200 and r.json()["path"] == "/first"
    svc = live.wait_service("llm", lambda s: s["desired"] >= 1)
    # The held request counts as load: the autoscaler went from zero on it.
    assert any(x["from"] == 0 and x["to"] >= 1 for x in svc["scaling"])


@contextmanager
def steady_load(gateway: str, clients: int) -> Iterator[None]:
    """``clients`` threads posting completions to the llm service until the block ends."""
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                c.post(f"{gateway}/llm/v1/completions", json={"max_tokens": 10})

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_load_scales_up_and_back_down(live: Live, tmp_path: Path) -> None:
    scale = "autoscaling: {min: 1, max: 4, target: {concurrency: 1}, scaleToZeroAfter: 2s}"
    apply(live, tmp_path, service(scale=scale, env="TOKEN_RATE: '20'"))
    live.wait_service("llm", ready(1))
    t0 = time.monotonic()
    with steady_load(live.gateway, 4):
        live.wait_service("llm", lambda s: s["ready"] >= 3, 30)
        print(f"load step (4 clients) -> 3 replicas ready: {time.monotonic() - t0:.2f} s")
    # Down again, at most half per tick, within the 60-s stable window and a little.
    live.wait_service("llm", lambda s: s["desired"] == 1, 90)


def test_a_streamed_response_reaches_the_client_before_it_ends(live: Live, tmp_path: Path) -> None:
    apply(live, tmp_path, service(scale="replicas: 1", env="TOKEN_RATE: '5'"))
    live.wait_service("llm", ready(1))
    body = {"model": "fake-llm", "max_tokens": 10, "stream": True}
    t0 = time.monotonic()
    with httpx.stream("POST", f"{live.gateway}/v1/chat/completions", json=body,
                      timeout=30) as r:  # fmt: skip
        chunks = r.iter_raw()
        first = next(chunks)
        t_first = time.monotonic() - t0
        rest = b"".join(chunks)
    total = time.monotonic() - t0
    print(f"streaming: first chunk {t_first:.2f} s, whole response {total:.2f} s")
    assert first.startswith(b"data: ") and b"[DONE]" in rest
    assert total >= 1.8 and t_first < total / 2  # 10 tokens at 5/s: ~2 s in all


def test_a_rolling_update_under_steady_load_fails_no_request(live: Live, tmp_path: Path) -> None:
    extra = "  rollout: {maxSurge: 1, maxUnavailable: 0}\n"
    apply(live, tmp_path, service(extra=extra))
    old = live.wait_service("llm", ready(2))["revision"]
    codes: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                codes.append(c.get(f"{live.gateway}/llm/x").status_code)
                time.sleep(0.01)

    t = threading.Thread(target=client)
    t.start()
    try:
        out = apply(live, tmp_path, service(env="TOKEN_RATE: '60'", extra=extra))
        assert "changed (rolls replicas)" in out
        live.wait_service("llm", lambda s: ready(2)(s) and s["revision"] != old and all(
            r["state"] == "Ready" for r in s["replicas"]), 60)  # fmt: skip
        time.sleep(1)
    finally:
        stop.set()
        t.join()
    assert len(codes) > 20 and set(codes) == {200}, f"{len(codes)} requests: {set(codes)}"


def test_a_node_failure_moves_the_replicas_and_service_resumes(live: Live, tmp_path: Path) -> None:
    apply(live, tmp_path, service())
    svc = live.wait_service("llm", ready(2))
    node = svc["replicas"][0]["node"]
    t0 = time.monotonic()
    live.cli("node", "fail", node)
    svc = live.wait_service("llm", lambda s: ready(2)(s) and all(
        r["node"] != node for r in s["replicas"]), 30)  # fmt: skip
    while httpx.get(f"{live.gateway}/llm/x").status_code != 200:
        time.sleep(0.05)
    print(f"node fail -> served again on other nodes: {time.monotonic() - t0:.2f} s")
    states = {n["name"]: n["state"] for n in live.api("GET", "/v1/nodes").json()}
    assert states[node] == "down"
    live.cli("node", "restore", node)
    states = {n["name"]: n["state"] for n in live.api("GET", "/v1/nodes").json()}
    assert states[node] != "down"


def test_the_example_service_applies_and_serves_by_model(live: Live) -> None:
    """examples/serve/service.yaml as shipped (its command is relative: `apply` gives it
    the directory it runs in); without queues applied, it goes to the caller's queue."""
    root = SERVER.parent.parent.parent
    text = (root / "examples" / "serve" / "service.yaml").read_text()
    f = live.home / "service.yaml"
    f.write_text(text.replace("  queue: serving", "  # queue: serving"))
    assert "service llm: created" in live.cli("apply", "-y", "-f", str(f), cwd=root).stdout
    live.wait_service("llm", ready(1))  # Knative's initial scale
    body = {"model": "fake-llm", "max_tokens": 3}
    r = httpx.post(f"{live.gateway}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].count("tok") == 3
