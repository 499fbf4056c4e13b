"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, started on a
free loopback port, stopped and removed afterwards. Run as the ``postgres`` user when
the caller is root (the server refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return Path(dirs[0]) if dirs else None


def _run(cmd: list[str], as_postgres: bool) -> None:
    if as_postgres:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@contextmanager
def server() -> Iterator[str]:
    """Yields a ``postgresql://`` URL of a fresh server."""
    bins = pg_bin()
    if bins is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl)")
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="detente-pg-"))
    data = base / "data"
    if root:
        shutil.chown(base, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        _run([str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"], root)
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([str(bins / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
              str(base / "log"), "start"], root)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            _run([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], root)
        time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)
