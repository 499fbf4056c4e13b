"""A live control plane for tests: ``detente up`` in a temporary home, driven through
the real CLI and HTTP API on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


class Live:
    def __init__(self, home: Path, db: str | None = None) -> None:
        self.home, self.db = home, db
        self.env = {**os.environ, "DETENTE_HOME": str(home)}
        self.env.pop("DETENTE_TOKEN", None)
        self.env.pop("DETENTE_URL", None)
        if db:
            self.env["DETENTE_DB"] = db

    def cli(self, *args: str, check: bool = True, cwd: Path | None = None,
            token: str | None = None, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        env = dict(self.env)
        if token is not None:
            env["DETENTE_TOKEN"] = token
        cmd = [str(Path(sys.executable).parent / "detente"), *args]
        p = subprocess.run(cmd, env=env, cwd=cwd or self.home, capture_output=True, text=True,
                           timeout=120, input=stdin)  # fmt: skip
        if check and p.returncode != 0:
            raise AssertionError(f"detente {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
        return p

    def up(self, *args: str, multi_user: bool = False) -> None:
        """``detente up``; single-user unless ``multi_user`` (tests run as root, where
        multi-user mode would need a Unix account for every token)."""
        self.cli("up", *args, *(() if multi_user else ("--single-user",)))

    def down(self) -> None:
        """Deletes services and cancels what still runs (so a test leaves no processes
        behind), then stops."""
        try:
            for svc in self.api("GET", "/v1/services").json().get("services", []):
                self.api("DELETE", f"/v1/services/{svc['name']}")
            active = [j["id"] for j in self.api("GET", "/v1/jobs").json()]
            if active:
                self.api("POST", "/v1/jobs/cancel", json={"ids": active})
                self.wait(lambda js: all(j["state"] in _ENDED for j in js.values()), 30)
        except (OSError, httpx.HTTPError, AssertionError, ValueError):
            pass  # not running, or it did not answer: stop it anyway
        self.cli("down", check=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{(self.home / 'detente.port').read_text().strip()}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{(self.home / 'detente.gateway').read_text().strip()}"

    def services(self) -> dict[str, dict[str, Any]]:
        out = json.loads(self.cli("services", "-o", "json").stdout)["services"]
        return {s["name"]: s for s in out}

    def wait_service(
        self, name: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """Polls ``GET /v1/services/NAME`` until ``done(service)``."""
        svc: dict[str, Any] = {}
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.api("GET", f"/v1/services/{name}")
            svc = r.json() if r.status_code == 200 else {}
            if svc and done(svc):
                return svc
            time.sleep(0.2)
        raise AssertionError(f"timed out; service: {json.dumps(svc, indent=1)[:3000]}")

    @property
    def token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def jobs(self) -> dict[int, dict[str, Any]]:
        out = json.loads(self.cli("queue", "-o", "json").stdout)
        out += json.loads(self.cli("history", "-o", "json").stdout)
        return {j["id"]: j for j in out}

    def wait(
        self, done: Callable[[dict[int, dict[str, Any]]], bool], timeout: float = 90
    ) -> dict[int, dict[str, Any]]:
        """Polls the API until ``done(jobs by id)``; AssertionError with the jobs if not."""
        jobs: dict[int, dict[str, Any]] = {}
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.api("GET", "/v1/jobs", params={"all": True})
            jobs = {j["id"]: j for j in r.json()}
            if done(jobs):
                return jobs
            time.sleep(0.2)
        raise AssertionError(f"timed out; jobs: {json.dumps(jobs, indent=1)[:3000]}")
