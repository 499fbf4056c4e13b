"""``#SBATCH`` directives → `JobSpec`, as sbatch reads them.

Directives are read from the top of the script up to its first command (blank and
comment lines may come between); command-line options override them. As sbatch, an
option it does not know fails the submission (never dropped silently), and so do
invalid values: every error names the file, line and option, all at once.
"""

from __future__ import annotations

import re
import shlex
import signal as signal_module
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from detente.api.begin import parse_begin
from detente.api.hostlist import expand
from detente.api.jobspec import ARRAY_CEILING, Dependency, JobSpec
from detente.api.quantity import parse_slurm_time
from detente.api.sbatch_argv import (
    FLAGS,
    OPTION_NAMES,
    SHORT,
    SHORT_FLAGS,
    SbatchError,
    split_argv,
)
from detente.api.sbatch_combine import check_exclusive, combine

#: Secrets never leave the submitting shell.
NOT_EXPORTED = frozenset({"DETENTE_TOKEN"})
__all__ = ["FLAGS", "SHORT", "SbatchError", "parse", "split_argv"]


@dataclass
class Parsed:
    spec: JobSpec
    warnings: list[str] = field(default_factory=list)


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise ValueError
    return n


def _gres(v: str) -> int:
    # gpu:N or gpu:TYPE:N (the type is not modelled), or several comma-separated.
    for part in v.split(","):
        bits = part.split(":")
        if bits[0] == "gpu":
            return int(bits[-1]) if len(bits) > 1 else 1
    raise ValueError


def _mem(v: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)B?", v.strip().upper())
    if not m:
        raise ValueError
    return int(m.group(1)) * 1024 ** {"K": 1, "": 2, "M": 2, "G": 3, "T": 4}[m.group(2)]


def _time(v: str) -> float | None:
    if v.upper() in ("UNLIMITED", "INFINITE"):
        return None
    t = parse_slurm_time(v)
    if t <= 0:
        raise ValueError
    return t


def _array(v: str) -> tuple[list[int], int | None]:
    spec, _, limit = v.partition("%")
    out: list[int] = []
    for part in spec.split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        a, b, by = int(lo), int(hi or lo), int(step or 1)
        # Bounded before anything is built: 0-10000000 must not allocate ten million ids.
        if a < 0 or b < a or by < 1 or b >= ARRAY_CEILING:
            raise ValueError
        out.extend(range(a, b + 1, by))
    return sorted(set(out)), (_positive(limit) if limit else None)


KINDS = ("after", "afterany", "afterok", "afternotok", "aftercorr")


def _id(text: str) -> int:
    """A job or task id: ASCII digits only (``int`` would take ``١`` for 1)."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text)


def _dependency_ids(kind: str, ids: str) -> list[Dependency]:
    out = []
    for item in ids.split(":"):
        ref, plus, minutes = item.partition("+")
        if plus and kind != "after":
            raise ValueError
        job, under, task = ref.partition("_")
        out.append(Dependency(
            kind=kind, job_id=_id(job), task=_id(task) if under else None,  # type: ignore[arg-type]
            delay=60 * _id(minutes) if plus else 0.0,
        ))  # fmt: skip
    return out


def _set_dependency(d: dict[str, Any], v: str, env: Mapping[str, str]) -> None:
    """sbatch's ``--dependency``: conditions joined by ``,`` (all) or ``?`` (any), not
    both; ``KIND:ID[:ID…]`` with IDs as ``ID``, ``ID_TASK`` or (after) ``ID+MINUTES``;
    ``singleton``; a bare ``ID`` is ``afterany:ID`` (Slurm's default kind)."""
    if "," in v and "?" in v:
        raise ValueError
    deps: list[Dependency] = []
    for part in v.split("?" if "?" in v else ","):
        kind, colon, ids = part.partition(":")
        if part == "singleton":
            deps.append(Dependency(kind="singleton"))
        elif not colon and kind.replace("_", "").isascii() and kind.replace("_", "").isdigit():
            deps.extend(_dependency_ids("afterany", kind))
        elif kind in KINDS and ids:
            deps.extend(_dependency_ids(kind, ids))
        else:
            raise ValueError
    d["dependencies"], d["dependency_any"] = deps, "?" in v


def _signal(v: str) -> dict[str, int]:
    """``[B:]SIG[@SECONDS]``, SIG a name (``USR1``, ``SIGUSR1``) or number; ``B:``
    signals the batch shell alone, without it every job step (not the batch shell)."""
    batch = v.upper().startswith("B:")
    name, at, secs = v[2 if batch else 0 :].partition("@")
    name = name.upper().removeprefix("SIG")
    if name.isdigit():
        num = int(name)
    elif f"SIG{name}" in signal_module.Signals.__members__:
        num = int(signal_module.Signals[f"SIG{name}"])
    else:
        raise ValueError(v)
    out = {"signal": num, "batch": batch}
    if at:
        out["seconds"] = int(secs)
    return out


def _yes_no(v: str) -> bool:
    if v.lower() not in ("yes", "no"):
        raise ValueError
    return v.lower() == "yes"


def _export(v: str, env: Mapping[str, str]) -> dict[str, str]:
    items = [x for x in v.split(",") if x]
    out: dict[str, str] = {}
    if items and items[0].upper() in ("ALL", "NONE") and items.pop(0).upper() == "ALL":
        out.update(env)
    for it in items:
        k, eq, val = it.partition("=")
        out[k] = val if eq else env.get(k, "")
    return out


Setter = Callable[[dict[str, Any], str, Mapping[str, str]], None]


def _set(key: str, conv: Callable[[str], Any]) -> Setter:
    def apply(d: dict[str, Any], v: str, env: Mapping[str, str]) -> None:
        d[key] = conv(v)

    return apply


def _extra(key: str, conv: Callable[[str], Any]) -> Setter:
    """An option resolved with others once all are read (`detente.api.sbatch_combine`)."""

    def apply(d: dict[str, Any], v: str, env: Mapping[str, str]) -> None:
        d.setdefault("_extra", {})[key] = conv(v)

    return apply


def _gpu_count(v: str) -> int:
    return _positive(v.rsplit(":", 1)[-1])  # N or TYPE:N (the type is not modelled)


def _open_mode(v: str) -> str:
    if v.lower() not in ("append", "truncate"):
        raise ValueError
    return v.lower()


def _hosts(v: str) -> list[str]:
    """A Slurm host list (``node[0-3],gpu7``); a file of names (Slurm's ``/path``
    form) is refused."""
    if "/" in v:
        raise SbatchError(f"{v}: a node list file is not supported; list the nodes")
    return expand(v)


def _constraint(v: str) -> str:
    """Features joined by ``&`` (all) and ``|`` (any); Slurm's brackets and counts
    (``[a|b]``, ``a*2``) are refused, not approximated."""
    if any(c in v for c in "[]()*,"):
        raise SbatchError(f"--constraint={v}: only features joined by & and | are supported")
    return v.replace(" ", "")


def _set_array(d: dict[str, Any], v: str, env: Mapping[str, str]) -> None:
    d["array"], d["array_limit"] = _array(v)


def _set_gres(d: dict[str, Any], v: str, env: Mapping[str, str]) -> None:
    d["gpus_per_node"] = _gres(v)


OPTIONS: dict[str, Setter] = {
    "job-name": _set("name", str),
    "nodes": _set("nodes", _positive),
    "ntasks-per-node": _set("tasks_per_node", _positive),
    "gres": _set_gres,
    "gpus-per-node": _set("gpus_per_node", lambda v: int(v.split(":")[-1])),
    "cpus-per-task": _set("cpus_per_task", _positive),
    "mem": _set("mem_per_node", _mem),
    "time": _set("time_limit", _time),
    "partition": _set("queue", str),
    "qos": _set("priority_class", str),
    "exclusive": _set("exclusive", lambda v: True),
    "requeue": _set("requeue", lambda v: True),
    "hold": _set("hold", lambda v: True),
    "no-requeue": _set("requeue", lambda v: False),
    "array": _set_array,
    "dependency": _set_dependency,
    "kill-on-invalid-dep": _set("kill_on_invalid_dep", _yes_no),
    "output": _set("output", str),
    "error": _set("error", str),
    "chdir": _set("chdir", str),
    "export": lambda d, v, env: d.__setitem__("env", _export(v, env)),
    "account": _set("account", str),
    "signal": _set("signal", _signal),
    "ntasks": _extra("ntasks", _positive),
    "gpus": _extra("gpus", _gpu_count),
    "gpus-per-task": _set("gpus_per_task", _gpu_count),
    "cpus-per-gpu": _extra("cpus_per_gpu", _positive),
    "mem-per-cpu": _extra("mem_per_cpu", _mem),
    "mem-per-gpu": _extra("mem_per_gpu", _mem),
    "open-mode": _set("open_mode", _open_mode),
    "nodelist": _set("nodelist", _hosts),
    "exclude": _set("exclude", _hosts),
    "constraint": _set("constraint", _constraint),
}
#: Accepted and said so, but with no effect here.
NO_EFFECT = {"mail-type": "detente sends no mail", "mail-user": "detente sends no mail"}


def _split(tokens: list[str], command_line: bool = False) -> list[tuple[str, str]]:
    """[(long option, value)] from ``--opt=v``, ``--opt v``, ``-X v``, ``-Xv``. On the
    ``command_line`` an unknown ``--opt`` takes no value, as the client's `split_argv`
    judged when it found the script (else its next word would be read as an option)."""
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            unknown = command_line and name not in OPTION_NAMES
            if not eq and name not in FLAGS and not unknown and i + 1 < len(tokens):
                i, val = i + 1, tokens[i + 1]
        elif tok in SHORT_FLAGS:
            name, val = SHORT_FLAGS[tok], ""
        elif tok[:2] in SHORT:
            name, val = SHORT[tok[:2]], tok[2:]
            if not val and i + 1 < len(tokens):
                i, val = i + 1, tokens[i + 1]
        else:
            name, val = tok, ""
        out.append((name, val))
        i += 1
    return out


def directives(script: str, source: str = "script") -> list[tuple[int, str, str]]:
    """(line, option, value) of each ``#SBATCH`` option before the first command;
    SbatchError naming the line if one cannot be split (an unclosed quote)."""
    out = []
    for n, line in enumerate(script.splitlines(), start=1):
        s = line.strip()
        if n == 1 and s.startswith("#!"):
            continue
        if s.startswith("#SBATCH"):
            try:
                words = shlex.split(s[7:], comments=True)
            except ValueError as e:
                raise SbatchError(f"{source}:{n}: cannot parse #SBATCH line: {e}") from None
            out.extend((n, k, v) for k, v in _split(words))
        elif s and not s.startswith("#"):
            break
    return out


def _validate(d: dict[str, Any], source: str) -> JobSpec:
    try:
        return JobSpec.model_validate(d)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            path = ".".join(str(p) for p in err["loc"])
            got = repr(err.get("input"))[:80]
            lines.append(f"{source}: {path}: {err['msg']} (got {got})")
        raise SbatchError("\n".join(lines)) from None


def parse(
    script: str,
    source: str = "script",
    cli: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    args: list[str] | None = None,
    now: float | None = None,
) -> Parsed:
    """The job ``script`` asks for; ``cli`` options (sbatch's syntax) override its
    directives (``--wrap=CMD`` stands for an empty script); ``now`` reads ``--begin``.
    SbatchError lists every invalid option at once."""
    env = {k: v for k, v in (env or {}).items() if k not in NOT_EXPORTED}
    d: dict[str, Any] = {"script": script, "args": list(args or []), "env": env, "batch": True}
    d["name"] = source.rsplit("/", 1)[-1]
    warnings, errors = [], []
    found = [(f"{source}:{n}", k, v) for n, k, v in directives(script, source)]
    found += [("command line", k, v) for k, v in _split(list(cli or []), command_line=True)]
    now = time.time() if now is None else now
    for where, opt, val in found:
        setter = OPTIONS.get(opt)
        if opt in NO_EFFECT:
            warnings.append(f"{where}: --{opt} accepted: {NO_EFFECT[opt]}")
            continue
        if setter is None and opt not in ("begin", "wrap"):
            shown = opt if opt.startswith("-") else f"--{opt}"  # a short one as given
            errors.append(f"{where}: unrecognized option '{shown}' (not supported by detente)")
            continue
        try:
            if opt == "begin":
                d["begin_time"] = parse_begin(val, now)
            elif opt == "wrap":
                if script.strip():
                    raise SbatchError("--wrap: a script was given too")
                d["script"] = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{val}\n"
                d["name"] = "wrap" if d["name"] in ("", source.rsplit("/", 1)[-1]) else d["name"]
            else:
                setter(d, val, env)  # type: ignore[misc]
        except SbatchError as e:
            errors.append(f"{where}: {e}")
        except (ValueError, TypeError, OverflowError):
            errors.append(f"{where}: --{opt}: invalid value {val!r}")
    if errors:
        raise SbatchError("\n".join(errors))
    try:
        check_exclusive({opt: where for where, opt, _ in found})
        combine(d, d.pop("_extra", {}), warnings)
    except SbatchError as e:
        raise SbatchError(f"{source}: {e}") from None
    return Parsed(_validate(d, source), warnings)
