"""Bounded fuzzing, in CI: hypothesis over the ``#SBATCH`` parser and the job API
(2,000 cases each), and schemathesis over ``/openapi.json`` with a user's and the
admin's token. Nothing may raise past the parser's own error, and the API answers no
5xx and only documented status codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detente.api.jobspec import JobSpec
from detente.api.sbatch import SbatchError, parse
from detente.testing.api import Api

OPTIONS = ["-J", "-N", "-c", "-t", "-p", "-q", "-o", "-e", "-D", "-a", "-d", "-G", "--job-name",
           "--nodes", "--ntasks-per-node", "--gres", "--gpus-per-node", "--cpus-per-task",
           "--mem", "--time", "--partition", "--qos", "--exclusive", "--requeue", "--array",
           "--dependency", "--output", "--export", "--chdir", "--bogus"]  # fmt: skip
VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        [
            "gpu:8",
            "gpu:a100:-1",
            "0-10000000",
            "1-3%0",
            "afterok:",
            "afterok:1:x",
            '"x',
            "'",
            "UNLIMITED",
            "1-00:00:00",
            "5G",
            "ALL,A=1",
            "NONE",
            "%",
            "-5",
            "0-5:0",
            "1e400",
            "\x00",
            "\ud800",
        ]
    ),
)
LINE = st.builds(lambda o, sep, v: f"#SBATCH {o}{sep}{v}", st.sampled_from(OPTIONS),
                 st.sampled_from([" ", "=", ""]), VALUES)  # fmt: skip
SCRIPT = st.lists(st.one_of(LINE, st.text(max_size=40)), max_size=8).map(
    lambda ls: "#!/bin/bash\n" + "\n".join(ls) + "\necho hi\n"
)


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=SCRIPT, cli=st.lists(st.one_of(st.sampled_from(OPTIONS), VALUES), max_size=4))
def test_sbatch_parser_never_raises_past_its_own_error(script: str, cli: list[str]) -> None:
    try:
        parsed = parse(script, "job.sh", cli, {"HOME": "/root"}, [])
    except SbatchError as e:
        assert str(e)  # says what is wrong
    else:
        assert parsed.spec.script == script


JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20),
)  # fmt: skip
JSON = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.text(max_size=8), c, max_size=3), max_leaves=8)  # fmt: skip
FIELDS = list(JobSpec.model_fields)
BODY = st.dictionaries(st.sampled_from([*FIELDS, "bogus"]), JSON, max_size=6).map(
    lambda d: {"script": "true", **d}
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Api:
    return Api(tmp_path_factory.mktemp("fuzz"))


DOCUMENTED = {200, 201, 400, 401, 403, 404, 409, 413, 422, 507}


def test_job_api_answers_every_body_with_a_documented_4xx_or_201(api: Api) -> None:
    @settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(BODY, JSON))
    def run(body: Any) -> None:
        r = api.call("ana", "POST", "/v1/jobs", content=json.dumps(body))
        assert r.status_code in DOCUMENTED and r.status_code < 500, r.text
        assert "Traceback" not in r.text

    run()


schemathesis = pytest.importorskip("schemathesis")


def _schema(tmp: Path) -> Any:
    holder = Api(tmp)
    schema = schemathesis.openapi.from_asgi("/openapi.json", holder.client.app)
    return holder, schema


def _fuzz_operation(op: Any, who: str, token: str, failures: list[str], calls: list[int]) -> None:
    from schemathesis.checks import not_a_server_error, status_code_conformance

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        resp = case.call()
        calls.append(resp.status_code)
        if resp.status_code >= 500 or "Traceback" in resp.text:
            failures.append(f"{who} {case.method} {case.path}: {resp.status_code}")
        case.validate_response(resp, checks=[not_a_server_error, status_code_conformance])

    run()


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    """Every operation, with the user's and the admin's token: no 5xx and every status
    code documented."""
    holder, schema = _schema(tmp_path)
    failures: list[str] = []
    calls: list[int] = []
    for who in ("ana", "admin"):
        for result in schema.get_all_operations():
            _fuzz_operation(result.ok(), who, holder.tokens[who], failures, calls)
    assert failures == []
    assert len(calls) > 500 and {200, 422} <= set(calls)  # it did exercise the API
