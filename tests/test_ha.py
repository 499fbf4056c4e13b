"""High availability on PostgreSQL: two `detente up` on one store elect one leader by
the lease row; the standby serves reads, refuses writes naming the leader, and takes
over when the leader is killed — ten times, under load, with no job lost or run twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from detente.testing.live import Live

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


@pytest.fixture
def fresh_pg(pg_url: str) -> str:
    eng = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.begin() as c:
        c.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    return pg_url


def _role(live: Live) -> str | None:
    try:
        return str(httpx.get(live.url + "/healthz", timeout=2).json().get("role"))
    except (httpx.HTTPError, OSError, ValueError):
        return None


def _wait_role(live: Live, role: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _role(live) == role:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{live.home.name} is not {role} after {timeout} s")


def _submit(live: Live, token: str, runs: Path, n: int) -> list[int]:
    script = f'#!/bin/bash\nsleep 0.3\necho "$SLURM_JOB_ID $SLURM_RESTART_COUNT" >> {runs}\n'
    body = {"jobs": [{"script": script, "name": "ha", "nodes": 1, "gpus_per_node": 1,
                      "output": "/dev/null"} for _ in range(n)]}  # fmt: skip
    r = live.api("POST", "/v1/jobs/batch", token=token, json=body)
    assert r.status_code == 201, r.text
    return [i for one in r.json()["ids"] for i in one]


def test_the_standby_takes_over_ten_times_and_no_job_is_lost_or_run_twice(
    tmp_path: Path, fresh_pg: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Live(tmp_path / "a", db=fresh_pg), Live(tmp_path / "b", db=fresh_pg)
    runs = tmp_path / "runs.txt"
    a.up("--nodes", "4x8")
    token = a.token
    b.up()
    try:
        assert _role(a) == "leader" and _role(b) == "standby"
        assert not (b.home / "admin.token").exists()  # the admin was not re-keyed...
        assert a.api("GET", "/v1/jobs", token=token).status_code == 200  # ...its token works
        # The standby serves reads and refuses writes, naming the leader.
        assert b.api("GET", "/v1/jobs", token=token).status_code == 200
        refused = b.api("POST", "/v1/jobs/batch", token=token, json={"jobs": [
            {"script": "#!/bin/bash\ntrue\n", "nodes": 1}]})  # fmt: skip
        assert refused.status_code == 503 and a.url in refused.json()["detail"]

        ids = _submit(a, token, runs, 20)
        leader, standby = a, b
        takeovers = []
        for _ in range(10):
            os.kill(int((leader.home / "detente.pid").read_text()), signal.SIGKILL)
            takeovers.append(_wait_role(standby, "leader", 15))
            ids += _submit(standby, token, runs, 8)
            leader.cli("down", check=False)  # clears the dead one's pid file
            leader.up()
            assert _wait_role(leader, "standby", 10) >= 0
            leader, standby = standby, leader
        print(f"takeovers (s): {[round(t, 1) for t in takeovers]}")
        assert max(takeovers) <= 10, takeovers

        jobs = leader.wait(lambda js: all(js[i]["state"] in ENDED for i in ids), 180)
        assert {jobs[i]["state"] for i in ids} == {"COMPLETED"}
        seen = Counter(int(line.split()[0]) for line in runs.read_text().splitlines())
        assert set(seen) == set(ids) and set(seen.values()) == {1}  # each ran once
    finally:
        for live in (a, b):
            pid = live.home / "detente.pid"
            if pid.exists():
                live.down()
