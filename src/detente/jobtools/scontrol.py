"""``scontrol`` inside a detente job: host lists, jobs, requeue, hold, release.

``show hostnames [LIST]`` (default ``$SLURM_JOB_NODELIST``) and ``show hostlist
LIST`` are answered here. ``show job [ID]``, ``requeue ID``, ``hold ID`` and
``release ID`` ask the control plane at ``$DETENTE_URL`` with the job's own
credential (its pod token, acting as the job's user, valid while it runs), so a job
can requeue itself or hold its successors as on Slurm; other commands are refused
with a clear message. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from detente.api.hostlist import compress, expand

USAGE = ("scontrol: error: detente's scontrol supports: show hostnames [LIST], "
         "show hostlist LIST, show job [ID], requeue ID, hold ID, release ID")  # fmt: skip


class ScontrolError(Exception):
    pass


def _api(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url, token = os.environ.get("DETENTE_URL"), os.environ.get("DETENTE_POD_TOKEN")
    if not url or not token:
        raise ScontrolError("no control plane to ask (not inside a detente job?)")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method, headers={
        "Authorization": f"Bearer pod:{token}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        raise ScontrolError(f"{detail}") from None
    except OSError as e:
        raise ScontrolError(f"cannot reach the control plane: {e}") from None


def _ids(args: list[str]) -> list[int]:
    ids = []
    for a in ",".join(args).split(","):
        head = a.split("_", 1)[0]
        if not (head.isascii() and head.isdigit()):
            raise ScontrolError(f"Invalid job id specified: {a!r}")
        ids.append(int(head))
    if not ids:
        raise ScontrolError("a job id is required")
    return ids


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else "Unknown"


def _elapsed(secs: float | None) -> str:
    if secs is None:
        return "UNLIMITED"
    s = int(secs)
    d, rest = divmod(s, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{d}-{text}" if d else text


def show_job(job_id: int) -> str:
    """The job as ``scontrol show job`` prints its common fields."""
    j = _api("GET", f"/v1/jobs/{job_id}")
    exit_code = "0:0" if j.get("exit_code") is None else f"{j['exit_code']}:0"
    fields = [
        [f"JobId={j['id']}", f"JobName={j['name']}"],
        [f"UserId={j['user']}", f"Account={j.get('team', '')}"],
        [f"JobState={j['state']}", f"Reason={j.get('reason') or 'None'}",
         f"Dependency={j.get('dependency') or '(null)'}"],
        [f"Requeue={int(bool(j.get('requeue')))}", f"Restarts={max(j['attempt'] - 1, 0)}",
         f"ExitCode={exit_code}"],
        [f"RunTime={_elapsed(j['elapsed'])}", f"TimeLimit={_elapsed(j.get('time_limit'))}"],
        [f"SubmitTime={_clock(j['submit_time'])}"],
        [f"StartTime={_clock(j['start_time'])}", f"EndTime={_clock(j['end_time'])}"],
        [f"Partition={j['queue']}"],
        [f"NodeList={j['nodelist'] or '(null)'}"],
        [f"NumNodes={j['nodes']}", f"NumTasks={j.get('ntasks', j['pods'])}"],
        [f"TRES=gres/gpu={j['gpus']:g}"],
    ]  # fmt: skip
    if j.get("array_job_id") is not None:
        fields[0] += [f"ArrayJobId={j['array_job_id']}", f"ArrayTaskId={j['array_task_id']}"]
    return "\n".join("   " + " ".join(f) for f in fields).lstrip() + "\n"


def run(argv: list[str]) -> str:
    words = [w.lower() for w in argv[:2]]
    if words[:2] == ["show", "hostnames"] or words[:2] == ["show", "hostname"]:
        text = argv[2] if len(argv) > 2 else os.environ.get("SLURM_JOB_NODELIST", "")
        try:
            return "".join(f"{h}\n" for h in expand(text))
        except ValueError as e:
            raise ScontrolError(str(e)) from None
    if words[:2] == ["show", "hostlist"] and len(argv) > 2:
        return compress(expand(argv[2])) + "\n"
    if words[:2] == ["show", "job"]:
        ids = _ids(argv[2:]) if len(argv) > 2 else _ids([os.environ.get("SLURM_JOB_ID", "")])
        return "\n".join(show_job(i) for i in ids)
    if words and words[0] in ("requeue", "hold", "release"):
        result = _api("POST", f"/v1/jobs/{words[0]}", {"ids": _ids(argv[1:])})
        bad = {k: v for k, v in result.items() if v not in ("requeued", "held", "released")}
        if bad:
            raise ScontrolError("; ".join(f"job {k}: {v}" for k, v in bad.items()))
        return ""
    raise ScontrolError(USAGE.removeprefix("scontrol: error: "))


def main(argv: list[str]) -> int:
    try:
        sys.stdout.write(run(argv))
    except ScontrolError as e:
        print(f"scontrol: error: {e}", file=sys.stderr)
        return 1
    return 0
