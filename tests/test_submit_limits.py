"""A submission is checked against the install as it is when it arrives: the API keeps
its limits parsed between requests (`detente.control.submit_routes.LimitsCache`), and
every change to what they are made of — teams, the node layout, the install's limits,
applied queues — is seen by the next request. In-process API (`detente.testing.api`)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from detente.control import auth, layout, workloads
from detente.control.reconciler import Reconciler
from detente.control.server import create_app
from detente.control.store.db import open_store
from detente.core.profiles import build


def _app(tmp_path: Path) -> tuple[TestClient, dict[str, str], object]:
    sessions = open_store(f"sqlite:///{tmp_path / 'detente.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
        tokens = {"admin": auth.create_admin(s)}
        s.commit()
    rec = Reconciler(sessions, build("detente"), tmp_path)
    return TestClient(create_app(sessions, rec, start_loop=False)), tokens, sessions


def _call(client: TestClient, token: str, method: str, path: str, body: object) -> object:
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


def test_each_submission_sees_the_teams_nodes_and_limits_as_they_are_now(tmp_path: Path) -> None:
    client, tokens, sessions = _app(tmp_path)
    admin = tokens["admin"]
    big = {"script": "true", "gpus_per_node": 12}
    r = _call(client, admin, "POST", "/v1/jobs", big)
    assert r.status_code == 400 and "not available" in r.json()["detail"]  # 8 GPUs a node
    with sessions() as s:  # type: ignore[operator]
        workloads.put_setting(s, "nodes", layout.node_specs("2x16"))
        s.commit()
    assert _call(client, admin, "POST", "/v1/jobs", big).status_code == 201

    r = _call(client, admin, "POST", "/v1/users", {"name": "rin", "team": "rl"})
    assert r.status_code == 201  # a new team: its own queue (no queues applied)
    r = _call(client, r.json()["token"], "POST", "/v1/jobs", {"script": "true"})
    assert r.status_code == 201, r.text
    assert client.get(f"/v1/jobs/{r.json()['ids'][0]}", headers={
        "Authorization": f"Bearer {admin}"}).json()["queue"] == "rl"  # fmt: skip

    array = {"script": "true", "array": list(range(10))}
    assert _call(client, admin, "POST", "/v1/jobs", array).status_code == 201
    with sessions() as s:  # type: ignore[operator]
        workloads.put_setting(s, "max_array_size", 5)
        s.commit()
    r = _call(client, admin, "POST", "/v1/jobs", array)
    assert r.status_code == 400 and "array" in r.json()["detail"]
