"""Kubernetes quantities ("500m", "64Gi", "1.5") and durations ("2h", "1-12:00:00").

Each parser raises ValueError with a message that names the bad value; the manifest
loader adds the file and field path.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
    "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip
_QTY = re.compile(r"^([+]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]{0,2})$")


def parse_quantity(value: object) -> Decimal:
    """A non-negative quantity as a Decimal in base units."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a quantity: {value!r}")
    text = str(value).strip()
    m = _QTY.match(text)
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        raise ValueError(f"not a quantity: {value!r}") from None
    return number * _SUFFIX[m.group(2)]


def canonical(resource: str, value: object) -> int:
    """A quantity in the core's integer units (milli-GPU, millicores, bytes, else 1)."""
    q = parse_quantity(value)
    if resource == "nvidia.com/gpu":
        milli = q * 1000
        if q > 1 and q != q.to_integral_value():
            raise ValueError(f"GPU requests above 1 must be whole GPUs, got {value!r}")
        if milli != milli.to_integral_value():
            raise ValueError(f"GPU share finer than 1/1000: {value!r}")
        return int(milli)
    if resource == "cpu":
        return math.ceil(q * 1000)
    return math.ceil(q)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DUR = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: object) -> float:
    """Seconds from "90s", "30m", "2h", "1h30m", "1d", a number of seconds, or Slurm's
    ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"(?:\d+(?:\.\d+)?[smhdw])+", text):
        return sum(float(n) * _UNITS[u] for n, u in _DUR.findall(text))
    return parse_slurm_time(text)


def parse_slurm_time(text: str) -> float:
    """Slurm's ``--time`` formats; a bare number is minutes."""
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            raise ValueError(f"not a duration: {text!r}")
        days = int(d)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            raise ValueError(f"not a duration: {d}-{text!r}")
        h, m, s = ([int(p) for p in parts] + [0, 0])[:3]
        return float(days * 86400 + h * 3600 + m * 60 + s)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        raise ValueError(f"not a duration: {text!r}")
    nums = [int(p) for p in parts]
    if len(nums) == 1:
        return nums[0] * 60.0
    if len(nums) == 2:
        return nums[0] * 60.0 + nums[1]
    return nums[0] * 3600.0 + nums[1] * 60 + nums[2]
