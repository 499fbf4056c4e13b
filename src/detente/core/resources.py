"""Resources as named quantities in canonical integer units.

Canonical units (what every number inside the core means):

* ``nvidia.com/gpu``: milli-GPUs. One whole GPU is 1000. A request below 1000 is a
  *fractional share* of one device (as the Alibaba openb trace's ``gpu_milli``); a
  request of 1000 or more must be whole GPUs.
* ``cpu``: millicores.
* ``memory``: bytes.
* anything else: the integer the manifest gave.

Integers keep quota arithmetic exact; conversion from Kubernetes quantity strings
("500m", "64Gi") happens at the API edge (`detente.api.quantity`).
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping
from typing import Final

GPU: Final = "nvidia.com/gpu"
CPU: Final = "cpu"
MEMORY: Final = "memory"
MILLI: Final = 1000


class Resources(Mapping[str, int]):
    """An immutable map resource name → quantity; absent names are 0.

    Zero entries are dropped, so two equal amounts compare equal and hash equal.
    """

    __slots__ = ("_d", "_h")

    def __init__(self, items: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        src = items.items() if isinstance(items, Mapping) else items
        self._d: dict[str, int] = {k: int(v) for k, v in src if v}
        self._h: int | None = None

    @classmethod
    def of(cls, *, gpus: float = 0, cpu_milli: int = 0, memory: int = 0) -> Resources:
        """Builds a request from whole or fractional GPUs, millicores and bytes."""
        return cls({GPU: round(gpus * MILLI), CPU: cpu_milli, MEMORY: memory})

    def __getitem__(self, key: str) -> int:
        return self._d.get(key, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def items(self) -> ItemsView[str, int]:
        # The dict's own view: the Mapping default goes through __iter__/__getitem__,
        # and quantities are summed in every cycle.
        return self._d.items()

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, Resources):
            return self._d == other._d
        return NotImplemented

    def __repr__(self) -> str:
        return f"Resources({self._d!r})"

    def __add__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._d)
        for k, v in other.items():
            out[k] = out.get(k, 0) + v
        return Resources(out)

    def __sub__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._d)
        for k, v in other.items():
            out[k] = out.get(k, 0) - v
        return Resources(out)

    def scaled(self, n: int) -> Resources:
        """This amount times ``n`` (for a pod set's total)."""
        return Resources({k: v * n for k, v in self._d.items()})

    def fits_in(self, other: Mapping[str, int]) -> bool:
        """True when every quantity here is ≤ the same quantity in ``other``."""
        return all(v <= other.get(k, 0) for k, v in self._d.items())

    @property
    def gpu_milli(self) -> int:
        return self._d.get(GPU, 0)

    @property
    def whole_gpus(self) -> int:
        """Whole devices this request occupies (0 for a fractional share)."""
        g = self._d.get(GPU, 0)
        return g // MILLI if g >= MILLI else 0


def describe(name: str, amount: int) -> str:
    """A human rendering of one quantity in canonical units, for reasons and tables."""
    if name == GPU:
        return f"{amount / MILLI:g} GPU" if amount != MILLI else "1 GPU"
    if name == CPU:
        return f"{amount / MILLI:g} CPU"
    if name == MEMORY:
        return f"{amount / 2**30:g}Gi memory"
    return f"{amount} {name}"
