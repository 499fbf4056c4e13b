from __future__ import annotations

import pytest

from detente.api.hostlist import compress
from detente.api.quantity import canonical, parse_duration

QTY = {
    "half a core": ("cpu", "500m", 500),
    "cores as int": ("cpu", 96, 96_000),
    "binary memory": ("memory", "64Gi", 64 * 2**30),
    "decimal memory": ("memory", "1G", 10**9),
    "whole gpus": ("nvidia.com/gpu", "8", 8000),
    "gpu share": ("nvidia.com/gpu", "0.25", 250),
    "other resource": ("example.com/ib", 2, 2),
}


@pytest.mark.parametrize("res,value,want", QTY.values(), ids=QTY.keys())
def test_canonical_units(res: str, value: object, want: int) -> None:
    assert canonical(res, value) == want


BAD = {
    "fractional gpus above one": ("nvidia.com/gpu", "1.5", "whole GPUs"),
    "garbage": ("cpu", "lots", "not a quantity"),
    "negative": ("memory", "-1Gi", "not a quantity"),
    "bool": ("cpu", True, "not a quantity"),
}


@pytest.mark.parametrize("res,value,msg", BAD.values(), ids=BAD.keys())
def test_bad_quantities_name_the_value(res: str, value: object, msg: str) -> None:
    with pytest.raises(ValueError, match=msg) as e:
        canonical(res, value)
    assert repr(value) in str(e.value)


DUR = {
    "hours": ("2h", 7200),
    "mixed": ("1h30m", 5400),
    "days": ("1d", 86400),
    "slurm minutes": ("30", 1800),
    "slurm mm:ss": ("01:30", 90),
    "slurm hh:mm:ss": ("02:00:00", 7200),
    "slurm d-hh": ("1-12", 129600),
    "slurm d-hh:mm:ss": ("1-00:00:30", 86430),
    "seconds number": (90, 90),
}


@pytest.mark.parametrize("value,want", DUR.values(), ids=DUR.keys())
def test_durations(value: object, want: float) -> None:
    assert parse_duration(value) == want


@pytest.mark.parametrize("value", ["2x", "1:2:3:4", "-5", "h"])
def test_bad_durations(value: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


def test_hostlist_compresses_runs_keeping_width() -> None:
    names = ["gpu-00", "gpu-01", "gpu-02", "gpu-05", "login", "gpu-07"]
    assert compress(names) == "gpu-[00-02,05,07],login"
    assert compress(["n1"]) == "n1"
