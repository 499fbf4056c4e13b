"""An in-process API for tests: the real app over a real SQLite store, with tokens for
an admin, ana and al (team vision) and bob (team nlp), and queues applied (a
ClusterQueue, LocalQueues vision and nlp, and a priority class only nlp may use). The
scheduler loop is not started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from detente.control import auth, layout, workloads
from detente.control.reconciler import Reconciler
from detente.control.server import create_app
from detente.control.store.db import open_store
from detente.core.profiles import build

QUEUES = [
    ["q.yaml", 0, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ClusterQueue",
                   "metadata": {"name": "cq"}, "spec": {"resourceGroups": [{
                       "coveredResources": ["nvidia.com/gpu", "cpu", "memory"],
                       "flavors": [{"name": "default", "resources": [
                           {"name": "nvidia.com/gpu", "nominalQuota": 16},
                           {"name": "cpu", "nominalQuota": 1000},
                           {"name": "memory", "nominalQuota": "4Ti"}]}]}]}}],
    ["q.yaml", 1, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ResourceFlavor",
                   "metadata": {"name": "default"}}],
    ["q.yaml", 2, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue",
                   "metadata": {"name": "vision", "namespace": "vision"},
                   "spec": {"clusterQueue": "cq"}}],
    ["q.yaml", 3, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue",
                   "metadata": {"name": "nlp", "namespace": "nlp"},
                   "spec": {"clusterQueue": "cq"}}],
    ["q.yaml", 4, {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "WorkloadPriorityClass",
                   "metadata": {"name": "urgent"}, "value": 1000, "allowedQueues": ["nlp"]}],
]  # fmt: skip


class Api:
    """The app and a token per user: admin, ana and al (vision), bob (nlp)."""

    def __init__(self, tmp_path: Path) -> None:
        self.sessions = open_store(f"sqlite:///{tmp_path / 'detente.db'}")
        with self.sessions() as s:
            workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
            self.tokens = {"admin": auth.create_admin(s)}
            for name, team in (("ana", "vision"), ("al", "vision"), ("bob", "nlp")):
                self.tokens[name] = auth.create_user(s, name, team)
            s.commit()
        rec = Reconciler(self.sessions, build("detente"), tmp_path)
        self.client = TestClient(create_app(self.sessions, rec, start_loop=False))
        assert (
            self.call("admin", "POST", "/v1/apply", json={"documents": QUEUES}).status_code == 200
        )

    def call(self, who: str, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        headers["Content-Type"] = "application/json"
        if "json" in kw:  # as JSON allows: lone surrogates travel as \ud800 escapes
            kw["content"] = json.dumps(kw.pop("json"))
        return self.client.request(method, path, headers=headers, **kw)

    def submit(self, who: str, **spec: Any) -> Any:
        return self.call(who, "POST", "/v1/jobs", json={"script": "true", **spec})
