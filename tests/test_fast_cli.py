"""The CLI's fast path: the commands run in loops import nothing heavy, and answer
as the full CLI does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from detente.cli.fast import _dumps, _loads, _response

HEAVY = ("pydantic", "typer", "rich", "httpx", "fastapi", "sqlalchemy", "http", "email", "ssl",
         "json", "socket", "re")  # fmt: skip


def test_the_fast_path_imports_nothing_heavy() -> None:
    code = (
        "import sys; import detente.cli.fast, detente.control.home, detente.api.sbatch_argv; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_responses_are_read_with_or_without_chunks() -> None:
    plain = b'HTTP/1.1 201 Created\r\ncontent-length: 11\r\n\r\n{"ids": [1]}'
    assert _response(plain) == (201, b'{"ids": [1]}')
    chunked = (b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\n{\"de\r\n9\r\ntail\": 1}\r\n0\r\n\r\n")  # fmt: skip
    assert _response(chunked) == (400, b'{"detail": 1}')


def test_options_the_fast_path_does_not_know_go_to_the_full_cli() -> None:
    detente = str(Path(sys.executable).parent / "detente")
    out = subprocess.run([detente, "queue", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--partition" in out.stdout


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_the_fast_paths_json_is_the_json_modules(value: object) -> None:
    """`_dumps`/`_loads` (the C encoder and scanner, without importing json) agree with
    json both ways; what the scanner refuses (NaN) still reads."""
    assert json.loads(_dumps(value)) == value
    assert _loads(json.dumps(value).encode()) == value
    assert _loads(b" " + json.dumps(value, indent=1).encode() + b"\n") == value


def test_constants_json_allows_still_read() -> None:
    assert _loads(b'{"x": NaN}')["x"] != _loads(b'{"x": NaN}')["x"]
    assert _loads(b"[Infinity]") == [float("inf")]
