"""``detente up`` / ``down``: the control plane as a background process on 127.0.0.1.

The data directory holds the SQLite store (unless ``--db``), the job state (scripts,
exit files, default logs), ``detente.pid``, ``detente.port``, ``detente.log`` and
``admin.token`` (mode 0600: the admin's token is written there and nowhere else —
never to a log or the terminal).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from detente.control import auth, layout, workloads
from detente.control.store.db import open_store
from detente.control.store.models import Job, User
from detente.executors.procs import proc_start


class DaemonError(RuntimeError):
    pass


def default_db(d: Path) -> str:
    return f"sqlite:///{d / 'detente.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mode_for(single_user: bool) -> str:
    """Multi-user (jobs run as their users' Unix accounts) only when running as root."""
    return auth.MULTI if os.geteuid() == 0 and not single_user else auth.SINGLE


def secure(d: Path, db: str) -> None:
    """The data directory 0700 and the SQLite files 0600, whatever existed before:
    they hold the admin token and every job's stored environment."""
    os.chmod(d, 0o700)
    if db.startswith("sqlite:///"):
        path = Path(db[len("sqlite:///") :])
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists():
                os.chmod(p, 0o600)


def prepare(d: Path, db: str, nodes: str | None, options: dict[str, Any] | None = None) -> None:
    """Migrates the store, records the node layout and ``options`` (``mode``,
    ``max_array_size``, ``max_script_bytes``), and makes sure an admin exists with its
    token in ``admin.token`` (0600)."""
    os.umask(0o077)
    sessions = open_store(db)
    secure(d, db)
    engine = (options or {}).get("executor", {})
    with sessions() as s:
        if engine.get("kind") == "slurm":  # the partition's nodes, read again at each start
            workloads.put_setting(s, "nodes", slurm_layout(engine))
        elif nodes is not None or workloads.setting(s, "nodes") is None:
            workloads.put_setting(s, "nodes", layout.node_specs(nodes))
        for key, value in (options or {}).items():
            workloads.put_setting(s, key, value)
        s.commit()
        record_job_root(s, d)
        token_file = d / "admin.token"
        admin = s.get(User, "admin")
        if admin is not None and not token_file.exists():
            # Another instance on this store (HA) made it: never re-key an existing admin.
            return
        if admin is None:
            token = auth.create_admin(s)
            s.commit()
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)


def record_job_root(s: Session, d: Path) -> None:
    """Records where every instance of this store keeps its job files (pods' logs and
    ends, scripts, working folders), once. A new store gets a folder of its own under
    ``d``: its job ids start again at 1, and another store's files left under the same
    names were taken for its jobs' — a running job settled as ended from an old exit
    record (its GPUs given to another job while it ran), an old job's output in a new
    job's log. A store that already has jobs keeps ``d``, where they were started."""
    if workloads.setting(s, "job_root") is not None:
        return
    root = d.resolve()
    if s.scalar(select(Job.id).limit(1)) is None:
        root = root / f"store-{secrets.token_hex(6)}"
    try:
        workloads.put_setting(s, "job_root", str(root))
        s.commit()
    except IntegrityError:  # another instance of this store recorded its own first
        s.rollback()


def slurm_executor(engine: dict[str, Any]) -> Any:
    """The Slurm executor ``up --executor slurm`` recorded (its SLURM_CONF, partition)."""
    from detente.executors.slurm import SlurmExecutor

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if engine.get("slurm_conf"):
        env["SLURM_CONF"] = engine["slurm_conf"]
    return SlurmExecutor(env, engine.get("partition"))


def slurm_layout(engine: dict[str, Any]) -> list[dict[str, Any]]:
    """The partition's nodes; DaemonError with scontrol's words if Slurm cannot tell."""
    conf = engine.get("slurm_conf")
    if conf and not Path(conf).is_file():  # scontrol would retry it for a minute
        raise DaemonError(f"--executor slurm: SLURM_CONF={conf} is not a file")
    try:
        specs: list[dict[str, Any]] = slurm_executor(engine).layout()
    except (RuntimeError, OSError) as e:
        raise DaemonError(f"--executor slurm: {e}") from None
    if not specs:
        raise DaemonError(f"--executor slurm: no nodes in partition {engine.get('partition')!r}")
    return specs


def running_pid(d: Path) -> int | None:
    """The control plane's pid if it is alive (a zombie is not)."""
    try:
        pid = int((d / "detente.pid").read_text())
    except (OSError, ValueError):
        return None
    _reap(pid)
    return pid if proc_start(pid) is not None else None


def up(
    d: Path, db: str | None, nodes: str | None, port: int, profile: str,
    options: dict[str, Any] | None = None, gateway_port: int = 0,
) -> tuple[int, int]:  # fmt: skip
    """Starts the control plane in the background; returns (pid, port) once it answers.
    The gateway listens on ``gateway_port`` (0: a free port), written to
    ``detente.gateway``."""
    if (pid := running_pid(d)) is not None:
        raise DaemonError(f"already running (pid {pid}); `detente down` first")
    db = db or default_db(d)
    prepare(d, db, nodes, options)
    port = port or _free_port()
    gateway_port = gateway_port or _free_port()
    # The URL may hold a password: it goes through the environment, not argv (ps).
    cmd = [sys.executable, "-m", "detente.control.daemon", str(d), str(port), profile,
           str(gateway_port)]  # fmt: skip
    with (d / "detente.log").open("ab") as logf:
        env = {**os.environ, "DETENTE_DB": db}
        env.pop("DETENTE_TOKEN", None)
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
    (d / "detente.pid").write_text(str(proc.pid))
    (d / "detente.port").write_text(str(port))
    (d / "detente.gateway").write_text(str(gateway_port))
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise DaemonError(f"the control plane exited at start; see {d / 'detente.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc.pid, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise DaemonError(f"no answer on port {port} within 60 s; see {d / 'detente.log'}")


def down(d: Path, timeout: float = 20.0) -> int | None:
    """Stops the control plane (SIGTERM; SIGKILL after ``timeout``). Jobs keep running
    and are re-adopted by the next ``up``."""
    pid = running_pid(d)
    if pid is None:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and running_pid(d) == pid:
        time.sleep(0.05)
        _reap(pid)
    if running_pid(d) == pid:
        os.kill(pid, signal.SIGKILL)
    (d / "detente.pid").unlink(missing_ok=True)
    return pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def freeze_startup_heap() -> int:
    """Moves every object alive now (the modules, the app: ≈ 130,000) out of the
    cyclic collector's view, for good; returns how many are frozen. Why: each full
    collection walked them all — 40–55 ms with the reconciler stopped, the first one
    in the first decision of a 2,000-task array, holding its launches back. What is
    garbage now is collected first; what the startup made is never freed anyway."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(d: Path, db: str, port: int, profile_name: str, gateway_port: int | None) -> None:
    """The background process: API, reconciler, service controller and gateway until
    SIGTERM."""
    import uvicorn

    from detente.api.profiles import load
    from detente.control.lease import Lease
    from detente.control.reconciler import Reconciler
    from detente.control.server import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # probes: one line each otherwise
    os.umask(0o077)
    sessions = open_store(db)
    secure(d, db)
    with sessions() as s:  # every instance of one store keeps job files in one place
        root = Path(workloads.setting(s, "job_root") or d)
    with sessions() as s:
        engine = workloads.setting(s, "executor") or {}
    executor = slurm_executor(engine) if engine.get("kind") == "slurm" else None
    rec = Reconciler(sessions, load(profile_name), root, executor=executor)
    rec.api_url = f"http://127.0.0.1:{port}"
    # Same host and data directory, same holder: a restart leads again at once.
    lease = Lease(sessions, f"{socket.gethostname()}:{d.resolve()}", f"http://127.0.0.1:{port}")
    lease.install()
    app = create_app(sessions, rec, gateway_port=gateway_port, lease=lease)
    freeze_startup_heap()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    gw = int(sys.argv[4]) if len(sys.argv) > 4 else None
    serve(Path(sys.argv[1]), os.environ["DETENTE_DB"], int(sys.argv[2]), sys.argv[3], gw)
