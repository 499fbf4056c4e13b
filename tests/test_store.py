"""The store and the job services, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select, text

from detente.api.jobspec import JobSpec
from detente.control import auth, jobs, layout
from detente.control.lease import Fenced, Lease
from detente.control.store.db import engine_for, migrate, open_store
from detente.control.store.models import CANCELLED, PENDING, STOPPING, Event, Job, User

# The default queues: one ClusterQueue, a LocalQueue per team (and "default").
QUEUES = layout.queue_config(layout.cluster(layout.node_specs("2x8")), None, {"vision", "nlp"})


@pytest.fixture
def store(db_url):  # type: ignore[no-untyped-def]
    return open_store(db_url)


def _users(s):  # type: ignore[no-untyped-def]
    toks = {
        "admin": auth.create_user(s, "admin", "default", "admin"),
        "ana": auth.create_user(s, "ana", "vision"),
        "bo": auth.create_user(s, "bo", "vision"),
        "lead": auth.create_user(s, "lead", "vision", "team-admin"),
        "cy": auth.create_user(s, "cy", "nlp"),
    }
    return {name: auth.authenticate(s, t) for name, t in toks.items()}, toks


def test_migrations_are_idempotent(db_url: str) -> None:
    eng = engine_for(db_url)
    migrate(eng)
    migrate(eng)
    with eng.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"


def test_upgrade_from_0001_keeps_jobs(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from detente.control.store.db import MIGRATIONS

    eng = engine_for(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0001")
        c.execute(text(
            "INSERT INTO jobs (name, \"user\", team, queue, state, spec, submit_time, attempt)"
            " VALUES ('old', 'ana', 'vision', 'vision', 'PENDING', '{\"script\": \"true\"}',"
            " 1.0, 0)"
        ))  # fmt: skip
    migrate(eng)
    with open_store(db_url)() as s:
        job = s.scalars(select(Job)).one()
        assert (job.name, job.user, job.held) == ("old", "ana", False)
        assert job.spec == {"script": "true"} and job.version == 0
        # New jobs get their own spec rows after the migrated ones (ids do not collide).
        u = auth.authenticate(s, auth.create_user(s, "ana", "vision"))
        (jid,) = jobs.submit(s, u, JobSpec(script="echo new"), QUEUES, 2.0)
        assert s.get(Job, jid).spec["script"] == "echo new"


def test_tokens_are_stored_hashed_and_checked(store) -> None:  # type: ignore[no-untyped-def]
    with store() as s:
        _, toks = _users(s)
        hashes = list(s.scalars(select(User.token_hash)))
        assert toks["ana"] not in hashes and auth.digest(toks["ana"]) in hashes
        with pytest.raises(auth.AuthError, match="invalid token"):
            auth.authenticate(s, toks["ana"] + "x")
        with pytest.raises(auth.AuthError, match="missing"):
            auth.authenticate(s, None)


def test_array_submission_is_one_job_per_task(store) -> None:  # type: ignore[no-untyped-def]
    with store() as s:
        u, _ = _users(s)
        spec = JobSpec(script="true", array=[0, 1, 5], array_limit=1)
        ids = jobs.submit(s, u["ana"], spec, QUEUES, now=10.0)
        rows = [s.get(Job, i) for i in ids]
        assert [r.array_task_id for r in rows] == [0, 1, 5]
        assert {r.array_job_id for r in rows} == {ids[0]}
        assert all(r.queue == "vision" and r.state == PENDING for r in rows)


def test_bad_queue_or_dependency_creates_nothing(store) -> None:  # type: ignore[no-untyped-def]
    with store() as s:
        u, _ = _users(s)
        with pytest.raises(jobs.JobError, match="unknown queue 'gpu-big'"):
            jobs.submit(s, u["ana"], JobSpec(script="true", queue="gpu-big"), QUEUES, 0.0)
        bad = JobSpec.model_validate({"script": "true", "dependencies": [
            {"kind": "afterok", "job_id": 999}]})  # fmt: skip
        with pytest.raises(jobs.JobError, match="no job 999"):
            jobs.submit(s, u["ana"], bad, QUEUES, 0.0)
        s.rollback()
        assert s.scalars(select(Job)).first() is None


def test_held_jobs_wait_until_released(store) -> None:  # type: ignore[no-untyped-def]
    from detente.control import depends, workloads

    with store() as s:
        u, _ = _users(s)
        (jid,) = jobs.submit(s, u["ana"], JobSpec(script="true"), QUEUES, 0.0)
        with pytest.raises(jobs.JobError):
            jobs.hold(s, u["bo"], [jid], True, 1.0)  # not bo's job
        assert jobs.hold(s, u["ana"], [jid], True, 1.0) == {jid: "held"}
        job = s.get(Job, jid)
        assert workloads.blocked(job, depends.Index(), Counter(), 2.0) == "JobHeldUser"
        assert jobs.hold(s, u["ana"], [jid], False, 2.0) == {jid: "released"}
        assert workloads.blocked(job, depends.Index(), Counter(), 2.0) is None


def test_who_sees_and_cancels_what(store) -> None:  # type: ignore[no-untyped-def]
    with store() as s:
        u, _ = _users(s)
        a = jobs.submit(s, u["ana"], JobSpec(script="true"), QUEUES, 0.0)[0]
        c = jobs.submit(s, u["cy"], JobSpec(script="true"), QUEUES, 0.0)[0]
        seen = {n: {j.id for j in s.scalars(jobs.visible(u[n]))} for n in u}
        assert seen["ana"] == {a} and seen["bo"] == set() and seen["cy"] == {c}
        assert seen["lead"] == {a} and seen["admin"] == {a, c}
        with pytest.raises(jobs.JobError) as e:
            jobs.cancel(s, u["bo"], [a], 1.0)
        assert e.value.status == 404
        assert jobs.cancel(s, u["lead"], [a], 1.0) == {a: CANCELLED}
        running = s.get(Job, c)
        running.state = "RUNNING"
        s.commit()
        assert jobs.cancel(s, u["admin"], [c], 2.0) == {c: STOPPING}
        assert s.get(Job, c).stop_reason == CANCELLED


def test_live_reasons_show_times_as_local_iso() -> None:
    from datetime import datetime

    from detente.control.views import readable

    t = 1_796_040_123
    iso = datetime.fromtimestamp(t).isoformat(timespec="seconds")
    assert readable(f"Resources; reserved from t={t} on 2 node(s)") == (
        f"Resources; reserved from {iso} on 2 node(s)"
    )
    assert readable(f"would delay the reservation of head (from t={t}.5)") == (
        f"would delay the reservation of head (from {iso})"
    )
    # A plan's or simulator's seconds are not epoch times: left as they are.
    assert readable("would delay the reservation of head (from t=3600)").endswith("t=3600)")


def test_events_are_written_by_the_commit_and_dropped_by_a_rollback(store) -> None:  # type: ignore[no-untyped-def]
    with store() as s:
        u, _ = _users(s)
        (jid,) = jobs.submit(s, u["ana"], JobSpec(script="true"), QUEUES, now=10.0)
    with store() as s:
        jobs.event(s, jid, 11.0, "Note", "rolled back")
        s.rollback()
        jobs.event(s, jid, 12.0, "Note", "kept")
        jobs.event(s, jid, 13.0, "Note", "kept too")
        s.commit()
    with store() as s:
        jobs.event(s, jid, 14.0, "Note", "never committed")  # the session just closes
    with store() as s:
        rows = s.execute(select(Event.kind, Event.message).where(Event.job_id == jid)
                         .order_by(Event.id)).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        ("Submitted", rows[0][1]), ("Note", "kept"), ("Note", "kept too"),
    ]  # fmt: skip


def test_a_session_writing_only_events_is_fenced_by_the_lease(store) -> None:  # type: ignore[no-untyped-def]
    """An event is a write: a standby (no lease) may not commit one."""
    with store() as s:
        u, _ = _users(s)
        (jid,) = jobs.submit(s, u["ana"], JobSpec(script="true"), QUEUES, now=10.0)
    leader, standby = Lease(store, "a", clock=lambda: 100.0), Lease(store, "b", clock=lambda: 100.0)
    assert leader.tick() and not standby.tick()
    standby.install()
    with store() as s, pytest.raises(Fenced):
        jobs.event(s, jid, 11.0, "Note", "from the standby")
        s.commit()
    with store() as s:
        assert s.scalar(select(Event.id).where(Event.kind == "Note")) is None


def test_a_batch_compare_and_set_applies_every_row_or_reports_the_loser(store) -> None:  # type: ignore[no-untyped-def]
    """`cas.update_jobs` (one executemany per set of columns): the rows it matched are
    summed, so one job changed meanwhile is seen, and the caller's rollback undoes the
    rest — nothing half applied."""
    from detente.control.store import cas

    with store() as s:
        u, _ = _users(s)
        ids = jobs.submit(s, u["ana"], JobSpec(script="true", array=[0, 1, 2]), QUEUES, 0.0)
        versions = {i: s.get(Job, i).version for i in ids}
    with store() as s:
        ok = cas.update_jobs(s, [(i, versions[i], {"state": "LAUNCHING", "nodes": ["n1"],
                                                  "attempt": 1}) for i in ids])  # fmt: skip
        s.commit()
    assert ok
    with store() as s:
        rows = [s.get(Job, i) for i in ids]
        assert [(r.state, r.nodes, r.version) for r in rows] == [
            ("LAUNCHING", ["n1"], versions[i] + 1) for i in ids
        ]
    with store() as s:  # a cancel wins the middle job
        jobs.cancel(s, u["ana"], [ids[1]], 1.0)
    with store() as s:
        lost = cas.update_jobs(s, [(i, versions[i] + 1, {"state": "RUNNING"}) for i in ids])
        assert not lost
        s.rollback()
    with store() as s:
        assert [s.get(Job, i).state for i in ids] == ["LAUNCHING", STOPPING, "LAUNCHING"]


def test_cached_reads_show_each_actor_what_the_store_query_shows(store) -> None:  # type: ignore[no-untyped-def]
    """`GET /v1/jobs` from the read cache (`Reads.live`) against `jobs.visible` on the
    store, for every role, with filters — odd strings included — that match nothing."""
    import json

    from detente.control.reads import Reads

    with store() as s:
        u, _ = _users(s)
        for name in ("ana", "bo", "cy", "lead"):
            jobs.submit(s, u[name], JobSpec(script="true"), QUEUES, 0.0)
    reads = Reads()
    with store() as s:
        for name, actor in u.items():
            want = [j.id for j in s.scalars(jobs.visible(actor).order_by(Job.id))]
            got = json.loads(reads.live(s, actor, (None, None, None), ("id",), 1.0))
            assert [r["id"] for r in got] == want, name
        lead = u["lead"]
        mine = json.loads(reads.live(s, lead, ({"bo"}, None, {"PENDING"}), ("user",), 1.0))
        assert mine == [{"user": "bo"}]
        assert reads.live(s, lead, ({"cy"}, None, None), None, 1.0) == b"[]"  # another team
        for odd in ("a\x00b", "é" * 1000, "-1"):
            assert reads.live(s, lead, ({odd}, {odd}, {odd}), None, 1.0) == b"[]"
