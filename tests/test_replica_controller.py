"""The replica controller (ReplicaSet + Deployment rollout rules), as table tests."""

from __future__ import annotations

from detente.core.replicas import (
    Phase,
    Replica,
    Rollout,
    SlotHistory,
    after_exit,
    backoff,
    reconcile,
)

R, P, S = Phase.READY, Phase.PENDING, Phase.STARTING


def reps(*specs: tuple[int, str, Phase]) -> list[Replica]:
    return [Replica(f"r{slot}-{rev}", slot, rev, ph) for slot, rev, ph in specs]


def test_scale_up_fills_the_lowest_free_slots() -> None:
    a = reconcile(3, "v1", reps((1, "v1", R)), {}, Rollout(), 0.0)
    assert a.create == [(0, "v1"), (2, "v1")] and a.stop == []


def test_scale_down_stops_pending_first_then_the_newest_ready() -> None:
    cur = reps((0, "v1", R), (1, "v1", R), (2, "v1", P), (3, "v1", R))
    assert reconcile(2, "v1", cur, {}, Rollout(), 0.0).stop == ["r2-v1", "r3-v1"]


def test_rolling_update_with_surge_never_drops_below_desired_ready() -> None:
    """maxSurge 1, maxUnavailable 0: one new replica, then an old one goes only once
    the new one is ready; at no point are fewer than 2 ready."""
    ro = Rollout(max_surge=1, max_unavailable=0)
    cur = reps((0, "v1", R), (1, "v1", R))
    a = reconcile(2, "v2", cur, {}, ro, 0.0)
    assert a.create == [(2, "v2")] and a.stop == []
    cur += reps((2, "v2", S))
    assert reconcile(2, "v2", cur, {}, ro, 1.0).create == []  # surge used up
    cur[-1] = Replica("r2-v2", 2, "v2", R)
    a = reconcile(2, "v2", cur, {}, ro, 2.0)
    assert a.stop == ["r1-v1"] and a.create == [(1, "v2")]


def test_rolling_update_with_unavailable_and_no_surge() -> None:
    ro = Rollout(max_surge=0, max_unavailable=1)
    cur = reps((0, "v1", R), (1, "v1", R))
    a = reconcile(2, "v2", cur, {}, ro, 0.0)
    assert a.stop == ["r1-v1"] and a.create == [(1, "v2")]


def test_a_crashing_slot_backs_off_and_is_not_replaced_elsewhere() -> None:
    h = {0: SlotHistory(restarts=3, last_exit=100.0)}
    a = reconcile(1, "v1", [], h, Rollout(), 101.0)
    assert a.create == [] and a.backing_off == {0: 100.0 + backoff(3)}
    assert reconcile(1, "v1", [], h, Rollout(), 100.0 + backoff(3)).create == [(0, "v1")]


def test_backoff_doubles_to_five_minutes_and_resets_after_ten_healthy() -> None:
    assert [backoff(n) for n in (1, 2, 3, 10, 20)] == [1.0, 2.0, 4.0, 300.0, 300.0]
    h = SlotHistory(restarts=7, last_exit=0.0)
    assert after_exit(h, ready_since=10.0, now=20.0).restarts == 8
    assert after_exit(h, ready_since=10.0, now=700.0).restarts == 1
