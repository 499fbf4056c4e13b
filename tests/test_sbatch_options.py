"""More of sbatch's options, named cases: --begin, --wrap, -A/--account, --mail-*."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from detente.api.begin import parse_begin
from detente.api.jobspec import JobSpec
from detente.api.sbatch import SbatchError, parse
from detente.api.sbatch_argv import split_argv
from detente.control import auth, jobs, layout, workloads
from detente.control.store.db import open_store
from detente.control.store.models import Event, Job

NOW = time.mktime((2026, 11, 30, 21, 0, 0, 0, 0, -1))  # local time, as sbatch reads it


@pytest.mark.parametrize(
    ("text", "after"),
    [
        ("now", 0), ("now+90", 90), ("now+1hour", 3600), ("now+2days", 2 * 86400),
        ("now+10min", 600), ("22:30", 5400), ("20:00", 23 * 3600), ("midnight", 3 * 3600),
        ("teatime", 19 * 3600), ("tomorrow", 3 * 3600), ("2026-12-01T08:00", 11 * 3600),
    ],
)  # fmt: skip
def test_begin_times_as_slurm_reads_them(text: str, after: float) -> None:
    assert parse_begin(text, NOW) - NOW == after


@pytest.mark.parametrize("text", ["soon", "now+3fortnights", "25:00", "now-5"])
def test_a_bad_begin_time_names_the_option(text: str) -> None:
    with pytest.raises(SbatchError, match=re.escape(f"line: --begin: invalid value '{text}'")):
        parse("#!/bin/bash\ntrue\n", cli=[f"--begin={text}"], now=NOW)


def test_wrap_makes_the_script_and_needs_no_file() -> None:
    options, script, rest = split_argv(["-N", "1", "--wrap", "echo hi; hostname"])
    assert script == "" and rest == []
    spec = parse("", "wrap", options).spec
    assert spec.script.startswith("#!/bin/sh\n") and "echo hi; hostname\n" in spec.script
    assert spec.name == "wrap" and spec.nodes == 1
    with pytest.raises(SbatchError, match="a script was given too"):
        parse("#!/bin/bash\ntrue\n", "job.sh", ["--wrap=true"])
    with pytest.raises(SbatchError, match="no batch script given"):
        split_argv(["-N", "1"])


def test_mail_options_are_accepted_with_a_warning() -> None:
    p = parse("#!/bin/bash\n#SBATCH --mail-type=END\n#SBATCH --mail-user=me@lab\ntrue\n", "m.sh")
    assert p.warnings == [
        "m.sh:2: --mail-type accepted: detente sends no mail",
        "m.sh:3: --mail-user accepted: detente sends no mail",
    ]


def test_account_is_the_team_and_another_team_is_refused(tmp_path: Path) -> None:
    config = layout.queue_config(layout.cluster(layout.node_specs("2x8")), None, {"vision", "nlp"})
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        ana = auth.authenticate(s, auth.create_user(s, "ana", "vision"))
        mine = parse("#!/bin/bash\ntrue\n", cli=["-A", "vision"]).spec
        (jid,) = jobs.submit(s, ana, mine, config, 0.0)
        assert (job := s.get(Job, jid)) is not None and job.queue == "vision"
        theirs = parse("#!/bin/bash\ntrue\n", cli=["--account=nlp"]).spec
        with pytest.raises(jobs.JobError, match="may not charge account 'nlp'") as e:
            jobs.submit(s, ana, theirs, config, 0.0)
        assert e.value.status == 403


def test_a_job_waits_for_its_begin_time_and_starts_then(tmp_path: Path) -> None:
    from detente.api.profiles import load
    from detente.control.reconciler import Reconciler

    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        ana = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        config = layout.queue_config(layout.cluster(layout.node_specs("1x8")), None, {"default"})
        spec = JobSpec(script="true", begin_time=NOW + 600)
        (jid,) = jobs.submit(s, ana, spec, config, NOW)
        s.commit()
    clock = [NOW]
    rec = Reconciler(sessions, load("detente"), tmp_path, executor=_NoLaunch(),
                     clock=lambda: clock[0])  # fmt: skip
    assert rec.step().admitted == 0
    with sessions() as s:
        assert (job := s.get(Job, jid)) is not None and job.reason == "BeginTime"
    clock[0] = NOW + 60
    assert rec.step().decided is False  # nothing changed, and the begin time is ahead
    clock[0] = NOW + 600
    assert rec.step().admitted == 1  # the begin time passing is reason enough to decide


class _NoLaunch:
    """A fake executor (named as one): records launches instead of starting processes."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(self, pod):  # type: ignore[no-untyped-def]
        self.launched.append(pod.token)
        return 4_000_000 + len(self.launched), 1

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *a, **k: None if name != "find" else {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("USR1@30", (10, 30, False)), ("SIGUSR2", (12, 60, False)), ("10@5", (10, 5, False)),
     ("TERM@0", (15, 0, False)), ("B:USR1@30", (10, 30, True))],
)  # fmt: skip
def test_signal_names_numbers_and_seconds(text: str, expected: tuple[int, int, bool]) -> None:
    sig = parse("#!/bin/bash\ntrue\n", cli=[f"--signal={text}"]).spec.signal
    assert sig is not None and (sig.signal, sig.seconds, sig.batch) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("B:FOO", "--signal: invalid value 'B:FOO'"),
     ("FOO@3", "--signal: invalid value 'FOO@3'"), ("USR1@x", "invalid value 'USR1@x'")],
)  # fmt: skip
def test_a_bad_or_unsupported_signal_is_refused_with_its_line(text: str, message: str) -> None:
    with pytest.raises(SbatchError, match=message):
        parse(f"#!/bin/bash\n#SBATCH --signal={text}\ntrue\n", "s.sh")


BATCH_TRAPS = """#!/bin/bash
trap 'echo USR1 at $SECONDS >> {got}' USR1
for i in $(seq 100); do sleep 0.1; done
"""
STEP_TRAPS = """#!/bin/bash
trap 'echo batch shell >> {got}' USR1
srun bash -c "trap 'echo USR1 at \\$SECONDS >> {got}; exit 0' USR1; \\
  for i in \\$(seq 100); do sleep 0.1; done"
sleep 10
"""


@pytest.mark.parametrize(
    ("script", "option"),
    [(BATCH_TRAPS, "--signal=B:USR1@3"), (STEP_TRAPS, "--signal=USR1@3")],
    ids=["B: reaches the batch shell", "without B: the steps, not the batch shell"],
)
def test_signal_before_the_time_limit(tmp_path: Path, script: str, option: str) -> None:
    """A real job: USR1 3 s before a 5 s limit, trapped where Slurm sends it (with B:
    the batch shell alone, without it every step but not the batch shell); then
    TIMEOUT."""
    from detente.api.profiles import load
    from detente.control.reconciler import Reconciler

    got = tmp_path / "got.txt"
    script = script.format(got=got)
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        ana = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        config = workloads.cluster_and_config(s)[1]
        spec = parse(script, "sig.sh", [option, f"--chdir={tmp_path}"]).spec
        spec = JobSpec.model_validate({**spec.model_dump(), "time_limit": 5.0})
        (jid,) = jobs.submit(s, ana, spec, config, time.time())
        s.commit()
    rec = Reconciler(sessions, load("detente"), tmp_path)
    deadline = time.time() + 30
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            job = s.get(Job, jid)
            assert job is not None
            if job.state == "TIMEOUT":
                break
        time.sleep(0.1)
    assert job.state == "TIMEOUT"
    assert "batch shell" not in got.read_text()
    lines = got.read_text().split("\n")[0].split()
    assert lines[:2] == ["USR1", "at"] and 1 <= int(lines[2]) <= 3  # about 2 s in


def test_hold_submits_every_task_held_until_released(tmp_path: Path) -> None:
    options, script, rest = split_argv(["-H", "--array=0-2", "job.sh", "-H"])
    assert (options, script, rest) == (["-H", "--array=0-2"], "job.sh", ["-H"])
    spec = parse("#!/bin/bash\ntrue\n", "job.sh", options).spec
    assert spec.hold and spec.array == [0, 1, 2]
    assert parse("#!/bin/bash\n#SBATCH --hold\ntrue\n").spec.hold
    assert not parse("#!/bin/bash\ntrue\n").spec.hold
    config = layout.queue_config(layout.cluster(layout.node_specs("2x8")), None, {"default"})
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        ana = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        ids = jobs.submit(s, ana, spec, config, 0.0)
        assert [s.get(Job, j).held for j in ids] == [True, True, True]  # type: ignore[union-attr]
        kinds = s.scalars(select(Event.kind).where(Event.job_id == ids[1])).all()
        assert kinds == ["Submitted", "Held"]
        assert jobs.hold(s, ana, ids, False, 1.0) == dict.fromkeys(ids, "released")
        assert [s.get(Job, j).held for j in ids] == [False] * 3  # type: ignore[union-attr]
