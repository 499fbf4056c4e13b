"""Tenants cannot reach each other and no input or race stops the control plane: each
finding of the security review as a test on a live `detente up`, real processes and
real HTTP on loopback. The multi-user tests run as root (as CI does) and create the
Unix accounts they need."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from detente.executors.procs import proc_start
from detente.testing.live import Live

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="multi-user mode needs root (CI is)")


def _account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        return pwd.getpwnam(name)


@pytest.fixture
def world() -> Iterator[Path]:
    """A folder every account may traverse (pytest's own tmp dirs are root's 0700)."""
    d = Path(tempfile.mkdtemp(prefix="detente-sec-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _wait(live: Live, ids: list[int], token: str | None = None, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.time() + timeout
    while time.time() < deadline:
        js = {j["id"]: j for j in live.api("GET", "/v1/jobs", token, params={"all": True}).json()}
        if all(js.get(i, {}).get("state") in ENDED for i in ids):
            return js
        time.sleep(0.2)
    raise AssertionError(f"jobs {ids} did not end: {[js.get(i) for i in ids]}")


PROBE = """#!/bin/bash
id -un > whoami.txt
umask > umask.txt
cat "$DHOME/admin.token" > token.txt 2>&1
cat "$DHOME/detente.db" > db.txt 2>&1
cat /home/dtbob/secret.txt > bob.txt 2>&1
echo pwned > /home/dtbob/pwned.txt 2> write.txt
env > env.txt
echo done
"""


@root_only
def test_jobs_run_as_their_users_and_reach_nothing_of_the_daemon_or_others(world: Path) -> None:
    ana, bob = _account("dtana"), _account("dtbob")
    secret = Path(bob.pw_dir) / "secret.txt"
    secret.write_text("bob-secret\n")
    os.chown(secret, bob.pw_uid, bob.pw_gid)
    secret.chmod(0o600)
    (Path(bob.pw_dir) / "pwned.txt").unlink(missing_ok=True)
    home = world / "home"
    home.mkdir(mode=0o755)  # an existing, too open data dir and DB are made private
    (home / "detente.db").touch(mode=0o644)
    work = world / "ana"
    work.mkdir()
    os.chown(work, ana.pw_uid, ana.pw_gid)
    live = Live(home)
    live.env["DETENTE_DAEMON_MARKER"] = "daemon-only"
    live.up("--nodes", "2x8", multi_user=True)
    try:
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "detente.db").stat().st_mode) == 0o600
        tok = live.cli("token", "ana", "--team", "vision", "--unix-user", "dtana").stdout.strip()
        refused = live.cli("token", "eve", "--team", "x", "--unix-user", "root", check=False)
        assert refused.returncode != 0 and "never run as root" in refused.stderr
        own = live.api("POST", "/v1/jobs", json={"script": "true"})  # the admin has no account
        assert own.status_code == 403 and "no Unix account" in own.json()["detail"]
        spec = {"script": PROBE, "chdir": str(work), "env": {"DHOME": str(home)}}
        (probe,) = live.api("POST", "/v1/jobs", tok, json=spec).json()["ids"]
        stolen = {"script": "echo leak", "chdir": str(work), "output": str(home / "admin.token")}
        (thief,) = live.api("POST", "/v1/jobs", tok, json=stolen).json()["ids"]
        into_bob = {"script": "echo x", "chdir": str(work), "output": "/home/dtbob/x.out"}
        (intruder,) = live.api("POST", "/v1/jobs", tok, json=into_bob).json()["ids"]
        js = _wait(live, [probe, thief, intruder])
        logs = live.api("GET", f"/v1/jobs/{thief}/logs", tok).json()["data"]
    finally:
        live.down()
    admin_token = (home / "admin.token").read_text().strip()
    assert js[probe]["state"] == "COMPLETED"
    assert (work / "whoami.txt").read_text().strip() == "dtana"
    assert (work / "umask.txt").read_text().strip() == "0077"
    assert (work / f"slurm-{probe}.out").stat().st_uid == ana.pw_uid
    for name in ("token.txt", "db.txt", "bob.txt"):
        text = (work / name).read_text()
        assert "Permission denied" in text, (name, text)
        assert admin_token not in text and "bob-secret" not in text and "SQLite" not in text
    assert not (Path(bob.pw_dir) / "pwned.txt").exists()
    env = (work / "env.txt").read_text()
    assert "daemon-only" not in env and admin_token not in env
    assert f"HOME={ana.pw_dir}" in env.splitlines()
    # Outputs pointed where ana may not write: the job fails; nothing is written there.
    assert js[thief]["state"] == js[intruder]["state"] == "FAILED"
    assert (home / "admin.token").read_text().strip() == admin_token
    assert admin_token not in logs and not Path("/home/dtbob/x.out").exists()


def test_logs_never_open_a_user_given_path(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "1x8")
    try:
        admin_token = live.token
        for out in (str(live.home / "admin.token"), "/etc/shadow", "/proc/self/environ"):
            spec = {"script": "true", "output": out, "chdir": str(tmp_path)}
            (jid,) = live.api("POST", "/v1/jobs", json=spec).json()["ids"]
            live.api("POST", "/v1/jobs/hold", json={"ids": [jid]})  # pending: nothing written
            got = live.api("GET", f"/v1/jobs/{jid}/logs").json()["data"]
            assert got == "" and admin_token not in got
    finally:
        live.down()


def test_fifo_and_dev_zero_outputs_cannot_block_or_exhaust_the_daemon(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "2x8")
    try:
        blocked = {"script": "echo never", "output": str(fifo), "chdir": str(tmp_path)}
        (fj,) = live.api("POST", "/v1/jobs", json=blocked).json()["ids"]
        zero = {"script": "echo to-zero", "output": "/dev/zero", "chdir": str(tmp_path)}
        (zj,) = live.api("POST", "/v1/jobs", json=zero).json()["ids"]
        (ok,) = live.api(
            "POST", "/v1/jobs", json={"script": "true", "chdir": str(tmp_path)}
        ).json()["ids"]
        js = _wait(live, [zj, ok], timeout=30)  # scheduling goes on past the FIFO job
        assert js[zj]["state"] == js[ok]["state"] == "COMPLETED"
        t = time.time()
        got = live.api("GET", f"/v1/jobs/{zj}/logs").json()
        assert got["data"] == "to-zero\n" and time.time() - t < 5
        assert live.api("GET", f"/v1/jobs/{fj}/logs").json()["data"] == ""
        assert httpx.get(live.url + "/healthz").status_code == 200
        live.api("POST", "/v1/jobs/cancel", json={"ids": [fj]})
        assert _wait(live, [fj], timeout=30)[fj]["state"] == "CANCELLED"
    finally:
        live.down()


def test_bad_input_is_refused_and_scheduling_goes_on(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "1x8")
    try:
        for bad in ({"env": {"A": "\x00"}}, {"env": {"A=B": "1"}}, {"args": ["\x00"]},
                    {"name": "\x00"}, {"chdir": "\x00"}, {"output": "\x00"}):  # fmt: skip
            r = live.api("POST", "/v1/jobs", json={"script": "true", **bad})
            assert r.status_code == 422, r.text
        r = live.api("POST", "/v1/jobs", content='{"script": "true", "time_limit": Infinity}',
                     headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 422
        (jid,) = live.api(
            "POST", "/v1/jobs", json={"script": "true", "chdir": str(tmp_path)}
        ).json()["ids"]
        assert _wait(live, [jid])[jid]["state"] == "COMPLETED"
        live.cli("down")
        live.up()  # a restart finds nothing it cannot handle
        (again,) = live.api(
            "POST", "/v1/jobs", json={"script": "true", "chdir": str(tmp_path)}
        ).json()["ids"]
        assert _wait(live, [again])[again]["state"] == "COMPLETED"
    finally:
        live.down()


def test_660_submit_and_cancel_pairs_lose_no_cancel(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "4x8")
    answers: dict[int, str] = {}
    try:
        headers = {"Authorization": f"Bearer {live.token}"}
        with httpx.Client(base_url=live.url, headers=headers, timeout=30) as c:
            for i in range(660):
                spec = {"script": f"sleep 0.{i % 5}", "gpus_per_node": 1, "chdir": str(tmp_path)}
                (jid,) = c.post("/v1/jobs", json=spec).json()["ids"]
                answers[jid] = c.post("/v1/jobs/cancel", json={"ids": [jid]}).json()[str(jid)]
        js = _wait(live, list(answers), timeout=120)
    finally:
        live.down()
    accepted = [j for j, a in answers.items() if a in ("CANCELLED", "STOPPING")]
    assert len(accepted) > 600  # almost all were caught before they ended by themselves
    lost = [j for j in accepted if js[j]["state"] != "CANCELLED"]
    assert lost == [], [(j, answers[j], js[j]["state"]) for j in lost]


def _processes_with(marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def test_a_killed_shim_leaves_no_process_of_its_pod(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "1x8")
    try:
        script = "#!/bin/bash\nsleep 3001 &\nsleep 3002 &\nwait\n"
        spec = {"script": script, "gpus_per_node": 8, "chdir": str(tmp_path)}
        (jid,) = live.api("POST", "/v1/jobs", json=spec).json()["ids"]
        deadline = time.time() + 30
        while not (pid := next((p["pid"] for p in live.api("GET", f"/v1/jobs/{jid}")
                                .json()["placement"]), None)):  # fmt: skip
            assert time.time() < deadline  # pending (no placement yet), then launching
            time.sleep(0.1)
        while len(_processes_with("sleep\x003001")) == 0:
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        js = _wait(live, [jid], timeout=30)
        assert js[jid]["state"] == "NODE_FAIL"
        assert _processes_with("sleep\x003001") == [] and _processes_with("sleep\x003002") == []
        # Its GPUs went to the next job only after that.
        (nxt,) = live.api("POST", "/v1/jobs", json={**spec, "script": "true"}).json()["ids"]
        assert _wait(live, [nxt])[nxt]["state"] == "COMPLETED"
    finally:
        live.down()


REQUEUE = """#!/bin/bash
echo "$SLURM_JOB_ID $SLURM_RESTART_COUNT" >> "$RAN"
sleep 0.$(( RANDOM % 8 ))
"""


def test_no_requeue_job_runs_twice_under_twenty_concurrent_clients(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "4x8")
    ran = tmp_path / "ran.txt"
    submitted: list[int] = []
    stop = time.time() + 60

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {live.token}"}
        spec = {"script": REQUEUE, "gpus_per_node": 1, "requeue": True, "chdir": str(tmp_path),
                "env": {"RAN": str(ran)}}  # fmt: skip
        with httpx.Client(base_url=live.url, headers=headers, timeout=60) as c:
            while time.time() < stop:
                submitted.extend(c.post("/v1/jobs", json=spec).json()["ids"])
                for _ in range(3):  # reads keep the API busy while pods end
                    c.get("/v1/jobs", params={"all": n % 2 == 0})
                    c.get(f"/v1/jobs/{submitted[-1]}")

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        js = _wait(live, submitted, timeout=300)
    finally:
        live.down()
    assert len(submitted) > 100
    assert Counter(j["state"] for j in js.values() if j["id"] in submitted) == {
        "COMPLETED": len(submitted)
    }
    runs = Counter(line.split()[0] for line in ran.read_text().splitlines())
    assert set(runs) == {str(j) for j in submitted}
    assert max(runs.values()) == 1, [j for j, n in runs.items() if n > 1]


def _wait_gone(pid: int) -> None:
    deadline = time.time() + 10
    while proc_start(pid) is not None and time.time() < deadline:
        time.sleep(0.01)


def test_a_crash_mid_write_of_a_large_script_never_runs_it_truncated(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "4x8")
    marks = tmp_path / "marks.txt"
    # 3 MiB of comments, then the line that proves the whole script ran.
    script = "#!/bin/bash\n" + ("# padding " * 100 + "\n") * 3000 + 'echo "$SLURM_JOB_ID" >> "$M"\n'
    try:
        spec = {"script": script, "gpus_per_node": 4, "chdir": str(tmp_path),
                "env": {"M": str(marks)}}  # fmt: skip
        ids = [live.api("POST", "/v1/jobs", json=spec).json()["ids"][0] for _ in range(24)]
        for delay in (0.05, 0.15, 0.3, 0.1, 0.2):  # while scripts are being written out
            time.sleep(delay)
            pid = int((live.home / "detente.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
            live.up()
        js = _wait(live, ids, timeout=180)
    finally:
        live.down()
    assert all(js[i]["state"] == "COMPLETED" for i in ids), [js[i]["state"] for i in ids]
    assert Counter(marks.read_text().split()) == Counter(str(i) for i in ids)


@root_only
def test_a_job_over_its_memory_ends_out_of_memory(tmp_path: Path) -> None:
    """--mem is enforced by a memory cgroup per pod: `tail` buffering 400 MiB of
    /dev/zero (no newline) in a 64 MiB job is killed, and the job ends OUT_OF_MEMORY as
    Slurm reports it; the same job within its memory completes."""
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "1x8")
    try:
        hog = {"script": "head -c 400M /dev/zero | tail > /dev/null\n", "mem_per_node": 64 << 20,
               "chdir": str(tmp_path)}  # fmt: skip
        fits = {**hog, "script": "head -c 16M /dev/zero | tail > /dev/null\n"}
        (big,) = live.api("POST", "/v1/jobs", json=hog).json()["ids"]
        (small,) = live.api("POST", "/v1/jobs", json=fits).json()["ids"]
        js = _wait(live, [big, small], timeout=60)
        log = live.api("GET", f"/v1/jobs/{big}/logs").json()["data"]
    finally:
        live.down()
    assert js[big]["state"] == "OUT_OF_MEMORY", (js[big], log)
    assert js[small]["state"] == "COMPLETED"
    assert "out of memory" in log


@root_only
def test_a_job_gets_no_more_cpu_than_it_asked_for(tmp_path: Path) -> None:
    """Two busy loops for 3 s in a one-CPU job use at most about 3 CPU-seconds (the
    cgroup's CPU quota), where the machine's two cores would give them 6."""
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "1x8")
    script = """#!/bin/bash
for i in 1 2; do timeout 3 sh -c 'while :; do :; done' & done
wait
times | tail -1 > cpu.txt
"""
    try:
        spec = {"script": script, "cpus_per_task": 1, "chdir": str(tmp_path)}
        (jid,) = live.api("POST", "/v1/jobs", json=spec).json()["ids"]
        assert _wait(live, [jid], timeout=60)[jid]["state"] == "COMPLETED"
    finally:
        live.down()
    user, sys_ = ((tmp_path / "cpu.txt").read_text().split())[:2]

    def seconds(t: str) -> float:
        m, s = t.rstrip("s").split("m")
        return 60 * float(m) + float(s)

    assert seconds(user) + seconds(sys_) < 3 * 1.25


@root_only
def test_a_full_disk_fails_no_running_job_and_refuses_writes_with_507(tmp_path: Path) -> None:
    """The data directory on a 24 MiB tmpfs, filled while a job runs: the job's end
    cannot be written, yet it is not taken for lost (NODE_FAIL); submissions answer 507
    while the disk is full; once space is freed the job ends COMPLETED."""
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(home)], check=True)
    live = Live(home)
    filler = home / "filler"
    try:
        live.up("--nodes", "1x8")
        spec = {"script": "sleep 4\necho done\n", "chdir": str(tmp_path)}
        (jid,) = live.api("POST", "/v1/jobs", json=spec).json()["ids"]
        deadline = time.time() + 30
        while live.api("GET", f"/v1/jobs/{jid}").json()["state"] != "RUNNING":
            assert time.time() < deadline
            time.sleep(0.1)
        with filler.open("wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 20))
        codes = {live.api("POST", "/v1/jobs", json=spec).status_code for _ in range(20)}
        time.sleep(8)  # the job ended meanwhile; its exit file waits for space
        during = live.api("GET", f"/v1/jobs/{jid}").json()["state"]
        filler.unlink()
        js = _wait(live, [jid], timeout=60)
    finally:
        filler.unlink(missing_ok=True)
        live.down()
        subprocess.run(["umount", "-l", str(home)], check=False)
    assert 507 in codes and codes <= {201, 507}, codes
    assert during in ("RUNNING", "STOPPING")
    assert js[jid]["state"] == "COMPLETED"
