"""detente.core stays pure: no outer layers, no I/O, clock, threads, asyncio or RNG module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parent.parent / "src" / "detente" / "core"
FORBIDDEN = {
    "time", "datetime", "asyncio", "threading", "multiprocessing", "concurrent", "subprocess",
    "socket", "os", "io", "pathlib", "shutil", "random", "sqlite3", "sqlalchemy", "fastapi",
    "httpx", "requests", "urllib", "http", "logging", "signal", "select", "selectors",
    "detente.control", "detente.executors", "detente.sim", "detente.cli", "detente.gateway",
    "detente.api",
}  # fmt: skip


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_nothing_impure(path: Path) -> None:
    bad = [n for n in _imports(path) if _forbidden(n)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_check_itself_catches_a_bad_import(tmp_path: Path) -> None:
    p = tmp_path / "x.py"
    p.write_text("import time\nfrom detente.sim import engine\nfrom os.path import join\n")
    assert [n for n in _imports(p) if _forbidden(n)] == ["time", "detente.sim", "os.path"]


def test_core_has_no_module_level_mutable_state() -> None:
    """Module-level names bound to lists, dicts or sets would be shared across runs."""
    for path in CORE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(
                node.value, ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp
            ):
                raise AssertionError(f"{path.name}:{node.lineno} binds a mutable container")
