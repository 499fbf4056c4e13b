"""Where a manifest problem is, and collecting them all before failing.

Every error names its file, document, field path and bad value:
``FILE: document N (Kind name): field.path: message (got value)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detente.api.quantity import canonical, parse_duration
from detente.core.resources import Resources


class ManifestError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class Source:
    file: str
    index: int
    kind: str
    name: str

    def where(self, path: str = "") -> str:
        at = f"{self.file}: document {self.index} ({self.kind} {self.name})"
        return f"{at}: {path}" if path else at


class Problems:
    """Collects errors with their location; `fail` raises them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, src: Source, path: str, msg: str, value: Any = None) -> None:
        got = f" (got {value!r})" if value is not None else ""
        self.items.append(f"{src.where(path)}: {msg}{got}")

    def fail(self) -> None:
        if self.items:
            raise ManifestError(self.items)


def resources(src: Source, path: str, raw: dict[str, Any], problems: Problems) -> Resources:
    """Quantities in the core's units; each bad one reported with its path."""
    out: dict[str, int] = {}
    for k, v in raw.items():
        try:
            out[k] = canonical(k, v)
        except ValueError as e:
            problems.add(src, f"{path}.{k}", str(e))
    return Resources(out)


def duration(src: Source, path: str, value: Any, problems: Problems) -> float | None:
    try:
        return parse_duration(value)
    except ValueError as e:
        problems.add(src, path, str(e))
        return None
