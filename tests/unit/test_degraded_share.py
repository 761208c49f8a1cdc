"""Degraded mode's arithmetic: a worker's share of a fleet-wide limit, and who has none.

The promise (docs/architecture.md, "Degraded mode"): while Redis is unreachable, the shares
the workers take add up to at most the limit, given the worker count they know. The outage
itself, against a real redis-server, is tests/integration/test_degraded_bounds.py.
"""

from __future__ import annotations

import pytest

from gateway.clients import Client, make_client
from gateway.routing.degraded import DegradedMode, share


def _degraded(*, seen: int | None = None, expected: int | None = None) -> DegradedMode:
    mode = DegradedMode(prefix="t", budget_allowance_micros=1_000_000, expected_replicas=expected)
    if seen is not None:
        mode.saw_replicas(seen)
    return mode


@pytest.mark.parametrize("replicas", range(1, 13))
def test_the_shares_of_a_fleet_never_add_up_to_more_than_the_limit(replicas: int) -> None:
    for limit in range(1, 200):
        part = share(limit, replicas)
        assert part * replicas <= limit, (limit, replicas, part)
        assert part * replicas > limit - replicas, "no more is withheld than rounding needs"


def test_a_limit_smaller_than_the_fleet_leaves_every_worker_nothing() -> None:
    # 3 over 4 workers: max(1, 3 // 4) gave each 1, so the fleet admitted 4
    assert share(3, 4) == 0
    mode = _degraded(seen=4)
    assert mode.share(3) == 0
    assert mode.share(4) == 1


def test_no_limit_stays_no_limit() -> None:
    assert share(0, 4) == 0
    assert share(0, None) == 0
    usable, left_out = _degraded(seen=4).candidates("p", [("k1", 0, 0, 0, 1)])
    assert (usable, left_out) == ([("k1", 0, 0, 0, 1)], [])


def test_a_worker_that_knows_no_fleet_size_has_no_share_of_any_limit() -> None:
    mode = _degraded()
    assert mode.replicas is None
    assert share(1000, None) == 0
    usable, left_out = mode.candidates("p", [("k1", 100, 0, 0, 1), ("k2", 0, 0, 0, 1)])
    assert usable == [("k2", 0, 0, 0, 1)]
    assert left_out == ["k1=no_local_share"]


def test_the_fleet_size_is_the_larger_of_the_seen_and_the_configured() -> None:
    assert _degraded(expected=4).replicas == 4  # started during the outage: never saw a count
    assert _degraded(seen=2, expected=4).replicas == 4
    assert _degraded(seen=6, expected=4).replicas == 6
    assert _degraded(seen=3).replicas == 3


def test_a_key_keeps_only_the_limits_it_can_share() -> None:
    mode = _degraded(seen=4)
    candidates = [
        ("k1", 100, 40_000, 8, 3),  # every limit divides: 25 rpm, 10 000 tpm, 2 in flight
        ("k2", 100, 0, 3, 1),  # 3 in flight over 4 workers: none here
        ("k3", 3, 0, 0, 1),  # 3 rpm over 4 workers: none here
    ]
    usable, left_out = mode.candidates("p", candidates)
    assert usable == [("k1", 25, 10_000, 2, 3)]
    assert left_out == ["k2=no_local_share", "k3=no_local_share"]


def test_a_key_disabled_in_redis_is_left_out() -> None:
    mode = _degraded(seen=1)
    mode.use_disabled({"p": frozenset({"k1"})})
    usable, left_out = mode.candidates("p", [("k1", 0, 0, 0, 1), ("k2", 0, 0, 0, 1)])
    assert usable == [("k2", 0, 0, 0, 1)]
    assert left_out == ["k1=disabled"]
    assert mode.candidates("other", [("k1", 0, 0, 0, 1)])[0] == [("k1", 0, 0, 0, 1)]


def _client(*, rpm: int | None = None, tpm: int | None = None, day: float | None = None) -> Client:
    return make_client(
        "c", b"d", rpm=rpm, tpm=tpm, models=["*"], budget_daily_usd=day, budget_monthly_usd=None
    )


def test_a_client_limit_without_a_share_refuses_the_client() -> None:
    mode = _degraded(seen=4)
    assert mode.client_limits(_client(rpm=3)).refused == "rpm"
    assert mode.client_limits(_client(rpm=100, tpm=3)).refused == "tpm"
    limits = mode.client_limits(_client(rpm=8, tpm=4000))
    assert (limits.rpm, limits.tpm, limits.refused) == (2, 1000, "")


def test_a_zero_allowance_refuses_a_budgeted_client_instead_of_lifting_its_budget() -> None:
    mode = DegradedMode(prefix="t", budget_allowance_micros=0, expected_replicas=1)
    assert mode.client_limits(_client(day=5)).refused == "budget_day"
