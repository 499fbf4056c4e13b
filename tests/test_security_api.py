"""The API refuses what could stop or subvert the control plane, in-process (the real
app over a real SQLite store; the scheduler loop is not started): bad input gets a
4xx naming the field, teams are enforced, ids the caller may not see answer as
missing, and refusals are audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detente.control.store.models import Job
from detente.testing.api import Api


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"env": {"A": "x\x00y"}}, "env"),
        ({"env": {"A=B": "x"}}, "env"),
        ({"env": {"": "x"}}, "env"),
        ({"args": ["a\x00b"]}, "args"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"chdir": "/tmp\x00"}, "chdir"),
        ({"output": "x\x00"}, "output"),
        ({"script": "echo \x00"}, "script"),
        ({"dependencies": [{"kind": "afterok", "job_id": 2**63}]}, "dependencies"),
        ({"array": [0, 10_000_000]}, "array"),
        ({"nodes": 10**30}, "nodes"),
        ({"queue": "../etc"}, "queue"),
        ({"env": {"A": "\ud800"}}, "env"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(
    api: Api, spec: dict[str, Any], field: str
) -> None:
    r = api.submit("ana", **spec)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_time_limits_are_refused(api: Api, number: str) -> None:
    body = '{"script": "true", "time_limit": ' + number + "}"
    r = api.call("ana", "POST", "/v1/jobs", content=body)
    assert r.status_code == 422 and "time_limit" in r.json()["detail"]


def test_array_and_script_limits(api: Api) -> None:
    r = api.submit("ana", array=[0, 1001])
    assert r.status_code == 400 and "MaxArraySize" in r.json()["detail"]
    r = api.submit("ana", script="#" * ((4 << 20) + 1))
    assert r.status_code == 413 and "script" in r.json()["detail"]
    huge = '{"script": "' + "x" * (20 << 20) + '"}'
    r = api.call("ana", "POST", "/v1/jobs", content=huge)
    assert r.status_code == 413
    ok = api.submit("ana", array=list(range(1001)))
    assert ok.status_code == 201 and len(ok.json()["ids"]) == 1001


def test_array_tasks_share_one_stored_spec(api: Api) -> None:
    ids = api.submit("ana", array=list(range(50)), script="#!/bin/bash\n" + "#" * 100_000).json()
    with api.sessions() as s:
        spec_ids = {s.get(Job, i).spec_id for i in ids["ids"]}  # type: ignore[union-attr]
    assert len(spec_ids) == 1


def test_ids_beyond_int64_and_bad_paths_are_4xx(api: Api) -> None:
    assert api.call("ana", "GET", f"/v1/jobs/{2**64}").status_code == 422
    assert api.call("ana", "GET", "/v1/jobs/0/logs").status_code == 422
    r = api.call("ana", "POST", "/v1/jobs/cancel", json={"ids": [2**63]})
    assert r.status_code == 422


@pytest.mark.parametrize("doc", [None, [], [1, 2], "text", 3])
def test_apply_documents_that_are_not_mappings_are_400(api: Api, doc: Any) -> None:
    r = api.call("admin", "POST", "/v1/apply", json={"documents": [["f.yaml", 0, doc]]})
    assert r.status_code == 400 and "f.yaml: document 0" in r.json()["detail"]


def test_apply_refuses_deep_or_non_finite_documents(api: Api) -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    r = api.call("admin", "POST", "/v1/apply", json={"documents": [["f", 0, {"a": deep}]]})
    assert r.status_code == 400 and "deeper" in r.json()["detail"]
    body = '{"documents": [["f", 0, {"kind": "Job", "value": NaN}]]}'
    r = api.call("admin", "POST", "/v1/apply", content=body)
    assert r.status_code == 400 and "finite" in r.json()["detail"]
    very_deep = '{"documents": [["f", 0, {"a": ' + "[" * 100_000 + "]" * 100_000 + "}]]}"
    assert api.call("admin", "POST", "/v1/apply", content=very_deep).status_code in (400, 422)


def test_users_submit_only_to_their_teams_queues(api: Api) -> None:
    assert api.submit("ana").status_code == 201  # her team's queue by default
    r = api.submit("ana", queue="nlp")
    assert r.status_code == 403 and "may not submit to queue 'nlp'" in r.json()["detail"]
    assert api.submit("bob", queue="nlp").status_code == 201
    assert api.submit("admin", queue="nlp").status_code == 201  # admins anywhere


def test_priority_classes_are_limited_to_their_queues(api: Api) -> None:
    r = api.submit("ana", priority_class="urgent")
    assert r.status_code == 403 and "not allowed in queue 'vision'" in r.json()["detail"]
    assert api.submit("bob", priority_class="urgent").status_code == 201
    r = api.submit("bob", priority_class="nosuch")
    assert r.status_code == 400 and "unknown priority class" in r.json()["detail"]


def test_unknown_teams_are_refused(api: Api) -> None:
    r = api.call("admin", "POST", "/v1/users", json={"name": "eve", "team": "nosuchteam"})
    assert r.status_code == 400 and "nosuchteam" in r.json()["detail"]
    r = api.call("admin", "POST", "/v1/users", json={"name": "eve", "team": "nlp"})
    assert r.status_code == 201


def test_ids_the_caller_may_not_see_answer_as_missing(api: Api) -> None:
    (bobs,) = api.submit("bob").json()["ids"]
    missing = 10**9
    for jid in (bobs, missing):
        dep = api.submit("ana", dependencies=[{"kind": "afterok", "job_id": jid}])
        assert (dep.status_code, dep.json()["detail"]) == (400, f"spec.dependencies: no job {jid}")
        got = api.call("ana", "GET", f"/v1/jobs/{jid}")
        assert (got.status_code, got.json()["detail"]) == (404, f"no job {jid}")
        logs = api.call("ana", "GET", f"/v1/jobs/{jid}/logs")
        assert (logs.status_code, logs.json()["detail"]) == (404, f"no job {jid}")


def test_stored_environment_is_visible_to_owner_and_admin_only(api: Api) -> None:
    (jid,) = api.submit("ana", env={"AWS_SECRET_ACCESS_KEY": "s3cr3t"}).json()["ids"]
    assert "s3cr3t" in api.call("ana", "GET", f"/v1/jobs/{jid}").text
    assert "s3cr3t" in api.call("admin", "GET", f"/v1/jobs/{jid}").text
    api.tokens["lead"] = _token(api, "lead", "vision", "team-admin")
    seen = api.call("lead", "GET", f"/v1/jobs/{jid}")
    assert seen.status_code == 200 and "s3cr3t" not in seen.text


def _token(api: Api, name: str, team: str, role: str) -> str:
    r = api.call("admin", "POST", "/v1/users", json={"name": name, "team": team, "role": role})
    return str(r.json()["token"])


def test_audit_log_records_who_did_what(api: Api) -> None:
    api.tokens["bad"] = "not-a-token"
    assert api.call("bad", "GET", "/v1/jobs").status_code == 401
    assert api.submit("ana", queue="nlp").status_code == 403
    _token(api, "cy", "nlp", "user")
    (jid,) = api.submit("bob").json()["ids"]
    api.call("admin", "POST", "/v1/jobs/cancel", json={"ids": [jid]})
    api.call("admin", "POST", "/v1/nodes/node0/state", json={"state": "drain", "reason": "fan"})
    assert api.call("ana", "GET", "/v1/audit").status_code == 403
    log = api.call("admin", "GET", "/v1/audit").json()
    got = {(e["actor"], e["action"], e["outcome"]) for e in log}
    assert {("?", "authenticate", "refused"), ("ana", "refused", "refused"),
            ("admin", "token", "ok"), ("admin", "cancel", "ok"), ("admin", "apply", "ok"),
            ("admin", "node-drain", "ok")} <= got  # fmt: skip
    assert all(api.tokens["ana"] not in json.dumps(e) for e in log)


def test_healthz_reports_a_stalled_scheduler(api: Api) -> None:
    loop = api.client.app.state.loop  # type: ignore[attr-defined]
    assert api.client.get("/healthz").status_code == 200
    loop.thread.start = lambda: None  # (never started in these tests)
    loop.thread.is_alive = lambda: True
    loop.last_step -= loop.stale + 1
    r = api.client.get("/healthz")
    assert r.status_code == 503 and "stalled" in r.json()["status"]


def test_single_user_mode_refuses_a_second_unix_identity(api: Api) -> None:
    body = {"name": "eve", "team": "nlp", "unix_user": "nobody"}
    r = api.call("admin", "POST", "/v1/users", json=body)
    assert r.status_code == 400 and "single-user mode" in r.json()["detail"]


def test_yaml_bombs_and_deep_documents_are_refused_with_the_file(tmp_path: Path) -> None:
    from detente.api.loader import ManifestError, read_documents

    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghi":  # 9^9 nodes once expanded
        laughs += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    bomb, deep = tmp_path / "bomb.yaml", tmp_path / "deep.yaml"
    bomb.write_text(laughs)
    deep.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(ManifestError, match=r"bomb.yaml: not valid YAML: expands to more than"):
        read_documents([bomb])
    with pytest.raises(ManifestError, match=r"deep.yaml: not valid YAML: nested deeper than 64"):
        read_documents([deep])


def test_a_job_that_fits_once_a_down_node_returns_is_accepted(api: Api) -> None:
    from detente.control import workloads

    with api.sessions() as s:
        workloads.put_setting(s, "node_states", {"node0": {"state": "down", "reason": "psu"}})
        s.commit()
    assert api.submit("ana", nodes=2, gpus_per_node=8).status_code == 201
    r = api.submit("ana", nodes=3, gpus_per_node=8)
    assert r.status_code == 400 and "Requested node configuration" in r.json()["detail"]


def test_a_gang_whose_topology_can_never_be_met_is_refused_at_submit(api: Api) -> None:
    from detente.control import layout, workloads

    with api.sessions() as s:  # 16 nodes in two racks of 8
        workloads.put_setting(s, "nodes", layout.node_specs("16x8"))
        s.commit()
    rack = {"mode": "required", "level": "topology.detente.dev/rack"}
    assert api.submit("ana", nodes=8, gpus_per_node=8, topology=rack).status_code == 201
    r = api.submit("ana", nodes=9, gpus_per_node=8, topology=rack)
    assert r.status_code == 400 and "one rack can hold at most 8" in r.json()["detail"]
    assert api.submit("ana", nodes=9, gpus_per_node=8).status_code == 201  # no topology asked


def test_the_queue_shows_each_caller_only_what_they_may_see_with_the_fields_asked(
    api: Api,
) -> None:
    """`GET /v1/jobs` comes from the read cache: visibility and filters still hold, a
    cancel is seen by the next read, and an unknown field is refused naming it."""
    (anas,) = api.submit("ana").json()["ids"]
    (bobs,) = api.submit("bob").json()["ids"]
    assert [r["id"] for r in api.call("ana", "GET", "/v1/jobs").json()] == [anas]
    assert [r["id"] for r in api.call("admin", "GET", "/v1/jobs").json()] == [anas, bobs]
    only = api.call("admin", "GET", "/v1/jobs", params={"owner": "bob", "fields": "id,st"})
    assert only.json() == [{"id": bobs, "st": "PD"}]
    assert api.call("ana", "POST", "/v1/jobs/cancel", json={"ids": [anas]}).status_code == 200
    assert api.call("ana", "GET", "/v1/jobs").json() == []
    ended = api.call("ana", "GET", "/v1/jobs", params={"state": "cancelled", "fields": "id"})
    assert ended.json() == [{"id": anas}]
    short = api.call("admin", "GET", "/v1/jobs", params={"state": "pd,CA", "fields": "id"})
    assert short.json() == [{"id": anas}, {"id": bobs}]
    bad = api.call("ana", "GET", "/v1/jobs", params={"fields": "id,environ"})
    assert bad.status_code == 422 and "fields" in bad.text and "'environ'" in bad.text
    empty = api.call("ana", "GET", "/v1/jobs", params={"fields": "id,,st"})
    assert empty.status_code == 422 and "unknown field ''" in empty.text
    odd = api.call("ana", "GET", "/v1/jobs", params={"state": "pending,bogus"})
    assert odd.status_code == 422 and "'BOGUS'" in odd.text
