"""Opening the store: an engine for a URL, migrated to the newest schema.

SQLite gets WAL (readers do not block the scheduler's writes) and a busy timeout;
PostgreSQL URLs (``postgresql://…``) use psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.orm import Session, sessionmaker

from detente.control.store.models import Event

MIGRATIONS = Path(__file__).with_name("migrations")
#: The session's ``info`` key of the job events its commit writes.
EVENTS = "events"


def _normalize(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def engine_for(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///PATH`` or ``postgresql://…``)."""
    url = _normalize(url)
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(eng, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return eng
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Brings the schema to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:  # batch migrations recreate tables that others reference
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def open_store(url: str) -> sessionmaker[Session]:
    """A session factory for ``url``, schema migrated. Sessions do not expire objects
    on commit, so values read stay usable after the transaction. Job events queued in
    a session's ``info[EVENTS]`` (`detente.control.jobs.event`) are written by its
    commit in one INSERT, and dropped by a rollback."""
    eng = engine_for(url)
    migrate(eng)
    factory = sessionmaker(eng, expire_on_commit=False)
    event.listen(factory, "before_commit", _write_events)
    event.listen(factory, "after_soft_rollback", _drop_events)
    return factory


def _write_events(s: Session) -> None:
    # Why not ORM objects: at thousands of jobs a step, building and flushing an
    # Event object each cost more than the scheduling (≈ 0.15 ms each, profiled).
    rows = s.info.pop(EVENTS, None)
    if rows:
        s.flush()  # their jobs first (a new job's row, for the foreign key)
        s.connection().execute(insert(Event.__table__), rows)


def _drop_events(s: Session, _previous: Any) -> None:
    # "soft": any rollback of the session's transaction, whether or not it reached the
    # database (`jobs.event` makes sure there is one)
    s.info.pop(EVENTS, None)


def plain_rows(s: Session, sql: str) -> list[tuple[Any, ...]]:
    """The rows of constant ``sql`` through ``s``'s own connection, as a DB-API
    cursor gives them (tuples): for listings of thousands of rows at every step,
    where building a Core Row per row cost several times the query."""
    cur = s.connection().connection.cursor()
    try:
        cur.execute(sql)
        return list(cur.fetchall())
    finally:
        cur.close()
