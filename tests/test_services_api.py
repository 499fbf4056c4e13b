"""Services over the API, in process (`detente.testing.api`): apply validates every
field with its path, access follows the queues, delete -f and delete by name work,
and `plan` shows a service's first replicas beside the jobs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detente.control import service_routes
from detente.testing.api import Api

SVC: dict[str, Any] = {
    "apiVersion": "detente.dev/v1", "kind": "Service", "metadata": {"name": "llm"},
    "spec": {"queue": "vision", "command": "exec sleep 60", "replicas": 2,
             "resources": {"nvidia.com/gpu": 1, "cpu": 1}},
}  # fmt: skip


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


def put(api: Api, who: str, doc: dict[str, Any]) -> Any:
    return api.call(who, "POST", "/v1/apply", json={"documents": [["s.yaml", 0, doc]]})


BAD = {
    "a typo": ({"replicsa": 2}, "spec.replicsa: Extra inputs are not permitted"),
    "replicas and autoscaling": (
        {"autoscaling": {"target": {"concurrency": 2}}}, "give replicas or autoscaling"),
    "a target of both kinds": (
        {"replicas": None, "autoscaling": {"target": {"concurrency": 2, "rps": 3}}},
        "exactly one of concurrency or rps"),
    "a resource a replica cannot ask": ({"resources": {"example.com/fpga": 1}},
                                        "resources.example.com/fpga"),
    "no way to roll": ({"rollout": {"maxSurge": 0, "maxUnavailable": 0}}, "cannot both be 0"),
    "a control character where the replica runs": (
        {"workingDir": "/a\nb"}, "spec.workingDir: Value error, must not contain NUL"),
    "more CPUs than a job may ask": ({"resources": {"cpu": "1e30"}}, "spec.resources"),
}  # fmt: skip


@pytest.mark.parametrize("change, want", BAD.values(), ids=BAD.keys())
def test_bad_services_are_refused_naming_the_field(
    api: Api, change: dict[str, Any], want: str
) -> None:
    doc = copy.deepcopy(SVC)
    doc["spec"].update(change)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    r = put(api, "ana", doc)
    assert r.status_code == 400 and want in r.json()["detail"], r.text
    assert "s.yaml: document 0 (Service llm)" in r.json()["detail"]


def test_a_service_follows_the_queue_rules(api: Api) -> None:
    doc = copy.deepcopy(SVC)
    doc["spec"]["queue"] = "nlp"  # bob's team's queue, not ana's
    r = put(api, "ana", doc)
    assert r.status_code == 400 and "may not submit to queue 'nlp'" in r.json()["detail"]
    assert put(api, "ana", SVC).json()["plan"]["services"] == ["llm: created"]
    assert put(api, "ana", SVC).json()["plan"]["services"] == ["llm: unchanged"]
    doc = copy.deepcopy(SVC)
    doc["spec"]["command"] = "exec sleep 61"
    assert put(api, "ana", doc).json()["plan"]["services"] == ["llm: changed (rolls replicas)"]
    r = put(api, "bob", {**doc, "spec": {**doc["spec"], "queue": "nlp"}})
    assert r.status_code == 400 and "belongs to ana" in r.json()["detail"]
    listed = api.call("ana", "GET", "/v1/services").json()["services"]
    assert [(s["name"], s["desired"]) for s in listed] == [("llm", 2)]
    assert api.call("bob", "GET", "/v1/services").json()["services"] == []
    assert api.call("bob", "GET", "/v1/services/llm").status_code == 404


def test_delete_by_file_and_by_name(api: Api) -> None:
    put(api, "ana", SVC)
    r = api.call("ana", "POST", "/v1/delete", json={"documents": [["s.yaml", 0, SVC]]})
    assert r.status_code == 200 and r.json()["plan"]["deleted"] == ["Service/llm"]
    assert api.call("ana", "GET", "/v1/services/llm").status_code == 404
    put(api, "ana", SVC)
    assert api.call("bob", "DELETE", "/v1/services/llm").status_code == 403
    assert api.call("ana", "DELETE", "/v1/services/llm").status_code == 200
    assert api.call("ana", "DELETE", "/v1/services/llm").status_code == 404


def test_plan_shows_a_services_first_replicas(tmp_path: Path) -> None:
    examples = Path(__file__).parent.parent / "examples"
    detente = str(Path(sys.executable).parent / "detente")
    out = subprocess.run(
        [detente, "plan", "-o", "json", "-f", str(examples / "cluster.yaml"),
         "-f", str(examples / "queues.yaml"), "-f", str(examples / "serve" / "service.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = {w["name"]: w for w in json.loads(out.stdout)["workloads"]}
    # Autoscaling: Knative's initial scale, 1 replica, in the LocalQueue it names.
    assert [n for n in names if n.startswith("llm")] == ["llm-0"]
    assert names["llm-0"]["state"] == "Admitted", names["llm-0"]


@pytest.mark.parametrize("name", ["..", "é", "Upper", "x" * 64, "-a"])
def test_a_service_name_is_a_dns_label(api: Api, name: str) -> None:
    """It is a path segment of the gateway's URLs, as a Kubernetes Service's name."""
    doc = copy.deepcopy(SVC)
    doc["metadata"]["name"] = name
    r = put(api, "ana", doc)
    assert r.status_code == 400 and "is not a DNS label" in r.json()["detail"], r.text


def test_every_service_route_needs_a_token_and_two_apps_do_not_share_routes(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Api(tmp_path / "a")
    api = Api(tmp_path / "b")  # the second app in this process: its routes its own only
    put(api, "ana", SVC)
    for method, path in (("GET", "/v1/services"), ("GET", "/v1/services/llm"),
                         ("DELETE", "/v1/services/llm")):  # fmt: skip
        assert api.call("", method, path).status_code == 401
    first, second = service_routes.routes(object), service_routes.routes(object)
    assert first is not second and len(first.routes) == len(second.routes) == 3
    assert api.call("ana", "GET", "/v1/services/llm").status_code == 200  # untouched
