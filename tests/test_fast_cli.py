"""The CLI's fast path: the commands run in loops import nothing heavy, and answer
as the full CLI does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from detente.cli.fast import _response

HEAVY = ("pydantic", "typer", "rich", "httpx", "fastapi", "sqlalchemy", "http", "email", "ssl")


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
