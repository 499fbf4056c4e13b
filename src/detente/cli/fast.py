"""The `detente` entry point, and a fast path for the commands run in loops.

``submit``/``sbatch``, ``queue``, ``nodes`` and ``cancel`` are answered here with the
standard library only (`_socket`, `_json`): the script goes to ``POST /v1/sbatch`` and the
server parses it, as slurmctld does for sbatch. The request is one HTTP/1.1 exchange
with ``Connection: close`` written on a socket: importing ``http.client`` alone costs
≈ 30 ms here (it pulls in ``email`` and ``ssl``), most of a 40 ms budget; an https
``DETENTE_URL`` goes through the full CLI. Every other command — and
these with ``--help`` or options this path does not know — goes to the full typer
CLI (`detente.cli.main`), which costs its imports only when needed.

Contract: same arguments, same output and exit codes as the full CLI's commands.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs the fast path ≈ 3 ms

if TYPE_CHECKING:
    from typing import Any

FAST = frozenset({"submit", "sbatch", "queue", "nodes", "cancel"})
SCRIPT_CEILING = 64 << 20


class _Fallback(Exception):
    """This path does not handle these arguments: use the full CLI."""


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in FAST and not {"--help", "-h"} & set(argv):
        try:
            code = _fast(argv)
        except BrokenPipeError:  # `detente queue | head`: the reader had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # as a shell reports SIGPIPE
        if code is not None:
            sys.exit(code)
    from detente.cli.main import app

    app()


def _fast(argv: list[str]) -> int | None:
    """The command's exit code, or None when the full CLI must answer."""
    try:
        return _run(argv[0], argv[1:])
    except _Fallback:
        return None


def _run(cmd: str, args: list[str]) -> int:
    if cmd in ("submit", "sbatch"):
        return _submit(args)
    if cmd == "cancel":
        return _cancel(args)
    output = _output(args)
    if cmd == "queue":
        return _queue(output)
    return _nodes(output)


def _output(args: list[str]) -> str:
    if not args:
        return "table"
    if len(args) == 2 and args[0] in ("-o", "--output") and args[1] in ("table", "json"):
        return args[1]
    if len(args) == 1 and args[0].startswith("--output=") and args[0][9:] in ("table", "json"):
        return args[0][9:]
    raise _Fallback


def _where() -> tuple[str, int, dict[str, str]]:
    from detente.control.home import data_path

    d = data_path()
    url = os.environ.get("DETENTE_URL")
    if url is None:
        try:
            url = f"http://127.0.0.1:{_read(os.path.join(d, 'detente.port'))}"
        except OSError:
            _die(f"detente is not running ({d}); start it with `detente up`", 2)
    if not url.startswith("http://"):
        raise _Fallback  # https: the full CLI's client
    host, _, port = url[len("http://") :].rstrip("/").partition(":")
    token = os.environ.get("DETENTE_TOKEN")
    if token is None and os.path.exists(os.path.join(d, "admin.token")):
        token = _read(os.path.join(d, "admin.token"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return host, int(port or 80), headers


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _call(method: str, path: str, body: Any = None) -> Any:
    host, port, headers = _where()
    data = _dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
            "Content-Type: application/json", f"Content-Length: {len(data)}",
            *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    try:
        raw = _exchange(host, port, ("\r\n".join(head) + "\r\n\r\n").encode() + data)
    except OSError as e:
        _die(f"cannot reach detente at http://{host}:{port}: {e}", 1)
    status, payload = _response(raw)
    if status >= 400:
        try:
            detail = _loads(payload).get("detail", payload.decode())
        except (ValueError, AttributeError):
            detail = payload.decode(errors="replace")
        _die(f"{status}: {detail}", 1)
    return _loads(payload)


def _exchange(host: str, port: int, request: bytes) -> bytes:
    """One request and its whole response, on a socket closed after. `_socket`, not
    `socket` (≈ 3 ms of imports: enum, selectors), for an IPv4 address or name."""
    if ":" in host:  # an IPv6 literal: the socket module's resolution
        import socket

        conn = socket.create_connection((host, port), timeout=30)
    else:
        import _socket

        conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        conn.settimeout(30)
    try:
        if ":" not in host:
            conn.connect((host, port))
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        conn.close()


class _Parse:
    """What `_json.make_scanner` reads from its context (json.JSONDecoder's)."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int

    def __init__(self) -> None:
        self.memo: dict[str, Any] = {}

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(name)


def _loads(payload: bytes) -> Any:
    """json.loads through the C scanner the json package itself uses: importing json
    costs ≈ 7 ms here (re, enum), a fifth of a submit. Anything it does not take
    (NaN, trailing text) goes to json.loads."""
    text = payload.decode().strip()
    try:
        import _json

        obj, end = _json.make_scanner(_Parse())(text, 0)
        if end == len(text):
            return obj
    except (ImportError, StopIteration, ValueError, TypeError, AttributeError):
        pass
    import json

    return json.loads(text)


def _dumps(obj: Any) -> str:
    """json.dumps(obj), compact, through the C encoder (see `_loads`)."""
    try:
        import _json

        enc = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",",
                                 False, False, True)  # fmt: skip
        return "".join(enc(obj, 0))
    except (ImportError, TypeError, ValueError, AttributeError):
        import json

        return json.dumps(obj)


def _response(raw: bytes) -> tuple[int, bytes]:
    """(status, body) of a whole HTTP/1.1 response read to the connection's close."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        return _die(f"not an HTTP response from detente: {lines[0][:80]!r}", 1)  # type: ignore[no-any-return]
    chunked = any(h.lower().replace(" ", "") == "transfer-encoding:chunked" for h in lines[1:])
    if chunked:  # uvicorn sends Content-Length for JSON; decode chunks all the same
        out, rest = [], body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out.append(rest[:n])
            rest = rest[n + 2 :]
        body = b"".join(out)
    return status, body


def _die(msg: str, code: int) -> Any:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def _read_script(script: str) -> str:
    if os.stat(script).st_size > SCRIPT_CEILING:
        _die(f"{script}: larger than {SCRIPT_CEILING >> 20} MiB", 2)
    with open(script, encoding="utf-8") as f:
        return f.read()


def _submit(argv: list[str]) -> int:
    from detente.api.sbatch_argv import SbatchError, split_argv

    try:
        options, script, rest = split_argv(argv)
    except SbatchError as e:
        return _die(str(e), 2)  # type: ignore[no-any-return]
    parsable, test_only = "--parsable" in options, "--test-only" in options
    options = [a for a in options if a not in ("--parsable", "--test-only")]
    try:
        text = _read_script(script) if script else ""  # "": --wrap holds the command
    except OSError as e:
        return _die(f"{e.filename}: {e.strerror}", 2)  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        return _die(f"{script}: not UTF-8 text", 2)  # type: ignore[no-any-return]
    out = _call("POST", "/v1/sbatch", {
        "options": options, "script": text, "script_name": script or "wrap", "args": rest,
        "env": dict(os.environ), "cwd": os.getcwd(), "test_only": test_only,
    })  # fmt: skip
    for w in out.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if test_only:  # as sbatch: the answer on stderr, nothing submitted
        print(f"sbatch: {out['test_only']['message']}", file=sys.stderr)
        return 0
    ids = out["ids"]
    extra = f" (array tasks {ids[0]}..{ids[-1]})" if len(ids) > 1 else ""
    print(ids[0] if parsable else f"Submitted batch job {ids[0]}{extra}")
    return 0


def _cancel(args: list[str]) -> int:
    output = "table"
    if len(args) >= 2 and args[-2] in ("-o", "--output"):
        output, args = _output(args[-2:]), args[:-2]
    if not args or not all(a.isdigit() for a in args):
        raise _Fallback
    out = _call("POST", "/v1/jobs/cancel", {"ids": [int(a) for a in args]})
    if output == "json":
        import json

        print(json.dumps(out))
        return 0
    for jid, what in out.items():
        print(f"{jid}: {what}")
    return 0


def duration(sec: float) -> str:
    s = int(sec)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}-" if d else "") + (f"{h:d}:{m:02d}:{s:02d}" if h or d else f"{m:d}:{s:02d}")


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]], output: str) -> int:
    if output == "json":
        import json

        print(json.dumps(rows, indent=2))
        return 0
    cells = [[t for t, _ in cols]] + [
        [str(r[k]) if r.get(k) is not None else "" for _, k in cols] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


QUEUE_COLS = [("JOBID", "jobid"), ("QUEUE", "queue"), ("NAME", "name"), ("USER", "user"),
              ("ST", "st"), ("TIME", "time"), ("NODES", "nodes"),
              ("NODELIST(REASON)", "where")]  # fmt: skip


#: The row keys the table needs (the server sends only these).
QUEUE_FIELDS = ("jobid", "queue", "name", "user", "st", "elapsed", "nodes", "nodelist", "reason")


def _queue(output: str) -> int:
    if output == "json":
        return _table(_call("GET", "/v1/jobs"), QUEUE_COLS, output)
    rows = _call("GET", "/v1/jobs?fields=" + ",".join(QUEUE_FIELDS))
    for r in rows:
        r["time"] = duration(r["elapsed"])
        r["where"] = r["nodelist"] or f"({r['reason'] or 'None'})"
    return _table(rows, QUEUE_COLS, output)


NODE_COLS = [("RACK", "rack"), ("NODE", "name"), ("STATE", "state"),
             ("GPUS(FREE/TOT)", "gres"), ("CPUS(FREE/TOT)", "cpu"), ("PODS", "pods"),
             ("REASON", "reason")]  # fmt: skip


def _nodes(output: str) -> int:
    rows = _call("GET", "/v1/nodes")
    for r in rows:
        r["gres"] = f"{r['gpus_free']:g}/{r['gpus']}"
        r["cpu"] = f"{r['cpus_free']:g}/{r['cpus']:g}"
    return _table(sorted(rows, key=lambda r: (r["rack"], r["name"])), NODE_COLS, output)
