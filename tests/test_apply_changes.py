"""`apply` shows what it changes and does not take queues away from jobs silently;
`delete -f` removes queue objects. In-process API (`detente.testing.api`)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from detente.control import auth, layout, workloads
from detente.control.reconciler import Reconciler
from detente.control.server import create_app
from detente.control.store.db import open_store
from detente.core.profiles import build
from detente.testing.api import QUEUES, Api


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


def test_a_changed_object_shows_its_field_diff(api: Api) -> None:
    bigger = copy.deepcopy(QUEUES[0])
    bigger[2]["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = 32
    r = api.call("admin", "POST", "/v1/apply", json={"documents": [bigger], "dry_run": True})
    plan = r.json()["plan"]
    assert plan["changed"] == ["ClusterQueue/cq"]
    path = "spec.resourceGroups[0].flavors[0].resources[0].nominalQuota"
    assert plan["diff"]["ClusterQueue/cq"] == [f"{path}: 16 → 32"]


def test_removing_a_queue_that_holds_jobs_needs_force(api: Api) -> None:
    (jid,) = api.submit("bob").json()["ids"]  # pending in LocalQueue nlp
    doc = [["q.yaml", 3, QUEUES[3][2]]]  # the nlp LocalQueue
    r = api.call("admin", "POST", "/v1/delete", json={"documents": doc})
    assert r.status_code == 400
    assert "LocalQueue nlp (1 job(s))" in r.json()["detail"] and "--force" in r.json()["detail"]
    assert api.submit("bob").status_code == 201  # nothing was deleted
    r = api.call("admin", "POST", "/v1/delete", json={"documents": doc, "force": True})
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["deleted"] == ["LocalQueue/nlp"]
    assert r.json()["plan"]["stranded"] == ["LocalQueue/nlp: removed; its 2 job(s) wait for it"]
    assert api.call("bob", "GET", f"/v1/jobs/{jid}").json()["state"] == "PENDING"
    assert api.submit("bob").status_code == 400  # unknown queue now


def test_delete_keeps_the_rest_valid_and_reports_what_is_not_there(api: Api) -> None:
    flavor = [["q.yaml", 1, QUEUES[1][2]]]  # the ClusterQueue still uses it
    r = api.call("admin", "POST", "/v1/delete", json={"documents": flavor})
    assert r.status_code == 400 and "flavor" in r.json()["detail"].lower()
    ghost = [["g.yaml", 0, {"kind": "LocalQueue", "metadata": {"name": "ghost"}}]]
    r = api.call("admin", "POST", "/v1/delete", json={"documents": ghost})
    assert r.json()["plan"] == {"deleted": [], "not_found": ["LocalQueue/ghost"], "stranded": []}
    assert api.call("ana", "POST", "/v1/delete", json={"documents": ghost}).status_code == 400


def test_the_first_apply_does_not_silently_strand_the_default_queue(tmp_path: Path) -> None:
    """Before any queue is applied, jobs go to the implicit `default` queue; applying
    ClusterQueues without it would strand them: refused, then applied with force."""
    sessions = open_store(f"sqlite:///{tmp_path / 'detente.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        token = auth.create_admin(s)
        s.commit()
    from fastapi.testclient import TestClient

    app = create_app(sessions, Reconciler(sessions, build("detente"), tmp_path), start_loop=False)
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}"}
    spec = {"script": "true", "gpus_per_node": 16}  # pending: never fits one node... refused
    assert client.post("/v1/jobs", json=spec, headers=headers).status_code == 400
    held = client.post("/v1/jobs", json={"script": "true"}, headers=headers).json()["ids"]
    client.post("/v1/jobs/hold", json={"ids": held}, headers=headers)
    body = {"documents": QUEUES}
    r = client.post("/v1/apply", json=body, headers=headers)
    assert r.status_code == 400 and "LocalQueue default (1 job(s))" in r.json()["detail"]
    r = client.post("/v1/apply", json={**body, "force": True}, headers=headers)
    assert r.status_code == 200
    assert r.json()["plan"]["stranded"] == ["LocalQueue/default: removed; its 1 job(s) wait for it"]
