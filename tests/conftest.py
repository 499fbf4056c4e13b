"""Shared helpers: run cycles to a fixed point, the way `detente plan` does."""

from __future__ import annotations

import os
import random

from detente.core.driver import Decisions, schedule
from detente.core.priority import reprioritize
from detente.core.profiles import Profile, build
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload


def settle(
    snap: Snapshot, jobs: list[Workload], profile: Profile | str = "detente", now: float = 0.0
) -> Decisions:
    """The one driver at ``now``, as `plan`, live and the simulator run it."""
    prof = build(profile) if isinstance(profile, str) else profile
    queues = QueueManager(prof.queue_sort, jobs)
    reprioritize(snap, queues, prof.half_life, now)
    return schedule(snap, queues, prof, now, random.Random(prof.seed))


def nodes_of(snap: Snapshot, name: str) -> list[str]:
    adm = snap.running.get(name)
    return [snap.cluster.nodes[p.node].name for p in adm.placements] if adm else []


def admitted(snap: Snapshot) -> set[str]:
    return {n for n, a in snap.running.items() if a.complete}


# -- stores: SQLite and a real PostgreSQL server ---------------------------------------

import pytest  # noqa: E402

from detente.testing import postgres  # noqa: E402


@pytest.fixture(scope="session")
def pg_url():  # type: ignore[no-untyped-def]
    if postgres.pg_bin() is None:
        pytest.skip("PostgreSQL cannot be installed here: no initdb/pg_ctl (make test installs it)")
    with postgres.server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'detente.db'}"
    url = request.getfixturevalue("pg_url")
    # A fresh schema per test: drop everything the last test made.
    import sqlalchemy as sa

    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.begin() as c:
        c.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    return url


# -- running in parallel (pytest-xdist, `--dist loadfile`) ---------------------------------
# A module's tests run on one worker, one after another: a job's rendezvous port is
# derived from its job id, which every daemon starts at 1 (two tests of test_control_e2e
# or test_slurm_steps at once could collide; the two modules use different ranges).


def pytest_configure(config: pytest.Config) -> None:
    """Each worker's local Slurm clusters listen on ports of their own (setup.sh's
    defaults on the first worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, …
    k = int(worker.removeprefix("gw") or 0)
    if k:
        os.environ.setdefault("CTLD_PORT", str(18817 + 1000 * k))
        os.environ.setdefault("NODE_BASE_PORT", str(18900 + 1000 * k))


#: The slowest modules (a minute or more each in CI), handed to the workers first so
#: that neither worker is left alone with one of them at the end.
SLOW_FIRST = (
    "test_slurm_fidelity", "test_ha", "test_crash", "test_security_live",
    "test_slurm_executor", "test_services_live", "test_fidelity", "test_fuzz",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {m: i for i, m in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: ties keep order
