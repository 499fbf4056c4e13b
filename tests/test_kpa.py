"""Knative's KPA, as table tests: steady, step, spike (panic), drop, to zero and back."""

from __future__ import annotations

from detente.core.kpa import Decision, KpaSpec, KpaState, Sample, decide

SPEC = KpaSpec(target=4.0, min_replicas=0, max_replicas=10, to_zero_after=30.0)


def run(load: list[tuple[float, float]], until: float, ready_follows: bool = True,
        waiting_at: float | None = None) -> list[Decision]:  # fmt: skip
    """Feeds one sample per second of the piecewise-constant ``load`` (t, value) and
    decides each second; ready replicas follow the decisions at once."""
    state, samples, out, ready = KpaState(), [], [], 0
    for t in range(int(until) + 1):
        value = [v for (at, v) in load if at <= t][-1]
        samples.append(Sample(float(t), value))
        waiting = 1 if waiting_at is not None and t == waiting_at else 0
        d = decide(SPEC, samples[-70:], ready, float(t), state, waiting)
        state, ready = d.state, d.replicas if ready_follows else ready
        out.append(d)
    return out


def test_steady_load_holds_ceil_of_load_over_target() -> None:
    assert run([(0, 10.0)], 120)[-1].replicas == 3  # ceil(10 / 4)


def test_a_step_up_is_followed_within_the_stable_window() -> None:
    ds = run([(0, 4.0), (100, 16.0)], 200)
    assert ds[99].replicas == 1 and ds[-1].replicas == 4
    assert ds[99 + 60].replicas == 4  # the stable mean has caught up a window later


def test_a_spike_enters_panic_and_scales_at_once() -> None:
    ds = run([(0, 4.0), (100, 40.0)], 110)
    # Two seconds in, the 6-s panic mean (22) already asks 6; the 60-s mean would ask 2.
    assert ds[102].mode == "panic" and (ds[102].replicas, ds[102].stable) == (6, 5.8)
    assert ds[106].replicas == 10
    # In panic the count never decreases, even when the spike is gone.
    ds = run([(0, 4.0), (100, 40.0), (106, 4.0)], 140)
    assert min(d.replicas for d in ds[103:140]) >= max(d.replicas for d in ds[100:103])


def test_a_drop_scales_down_by_at_most_half_per_tick() -> None:
    ds = run([(0, 32.0), (200, 4.0)], 400)
    assert ds[199].replicas == 8
    downs = [a.replicas / b.replicas for a, b in zip(ds[201:], ds[200:], strict=False)
             if b.replicas and a.replicas < b.replicas]  # fmt: skip
    assert downs and min(downs) >= 0.5
    assert ds[-1].replicas == 1


def test_to_zero_after_the_idle_window_and_back_on_a_held_request() -> None:
    ds = run([(0, 4.0), (100, 0.0)], 260)
    zero = next(i for i, d in enumerate(ds) if i > 100 and d.replicas == 0)
    assert zero >= 100 + SPEC.to_zero_after  # not before the grace
    back = run([(0, 0.0)], 50, waiting_at=40)
    assert back[39].replicas == 0 and back[40].replicas == 1
    assert "scale from zero" in back[40].why[0]


def test_min_and_max_clamp() -> None:
    assert run([(0, 400.0)], 100)[-1].replicas == SPEC.max_replicas
