"""The HPA rule in `detente.core.autoscale`: named cases."""

from __future__ import annotations

import pytest

from detente.core.autoscale import AutoscaleSpec, autoscale

SPEC = AutoscaleSpec(target=10.0, min_replicas=1, max_replicas=8, stabilization=300.0)


@pytest.mark.parametrize(
    ("case", "window", "current", "now", "want"),
    [
        ("scales up at once", [(0.0, 10.0), (60.0, 41.0)], 1, 60.0, 5),
        ("holds within the 10 % tolerance", [(0.0, 43.0)], 4, 0.0, 4),
        ("scale-down waits for the window's peak", [(0.0, 40.0), (60.0, 10.0)], 4, 60.0, 4),
        ("scale-down once the peak left the window", [(0.0, 40.0), (400.0, 10.0)], 4, 400.0, 1),
        (
            "steps down to the window's highest",
            [(0.0, 40.0), (200.0, 25.0), (400.0, 5.0)],
            4,
            400.0,
            3,
        ),
        ("clamped to max", [(0.0, 500.0)], 2, 0.0, 8),
        ("clamped to min at zero load", [(0.0, 0.0), (600.0, 0.0)], 3, 600.0, 1),
        ("no samples keeps the current count", [], 3, 0.0, 3),
    ],
)
def test_autoscale(case: str, window: list[tuple[float, float]], current: int, now: float,
                   want: int) -> None:  # fmt: skip
    assert autoscale(window, SPEC, current, now) == want, case
