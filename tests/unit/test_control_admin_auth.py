"""Admin keys: constant-time identification, header parsing, and the failed-attempt limiter."""

from __future__ import annotations

import pytest

from gateway.admin.auth import AdminAuth, FailureLimiter, client_address, presented_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_admin_keys_are_identified_by_position_and_unknown_keys_are_not() -> None:
    auth = AdminAuth(["first-admin-key-0001", "second-admin-key-002"])
    assert auth.enabled
    assert auth.identify("first-admin-key-0001") == "admin#1"
    assert auth.identify("second-admin-key-002") == "admin#2"
    assert auth.identify("second-admin-key-00") is None
    assert auth.identify("") is None


def test_short_admin_keys_are_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        AdminAuth(["short"])
    assert not AdminAuth.from_env({}).enabled
    assert AdminAuth.from_env(
        {"KEYWAY_ADMIN_KEYS": " a-long-admin-key-1 , ,b-long-admin-key-2"}
    ).enabled


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"authorization": "Bearer"}, None),
        ({"authorization": "abc"}, "abc"),
        ({"x-api-key": "xyz"}, "xyz"),
        ({}, None),
    ],
)
def test_the_presented_key_comes_from_authorization_or_x_api_key(
    headers: dict[str, str], expected: str | None
) -> None:
    assert presented_key(headers) == expected


def test_an_address_is_blocked_after_max_failures_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after_s("10.0.0.1") == 0
        limiter.fail("10.0.0.1")
        clock.now += 1
    assert limiter.retry_after_s("10.0.0.1") == 58
    assert limiter.retry_after_s("10.0.0.2") == 0
    clock.now += 58
    assert limiter.retry_after_s("10.0.0.1") == 0


def test_the_limiter_forgets_the_oldest_addresses_beyond_its_bound() -> None:
    limiter = FailureLimiter(max_failures=1, window_s=60, max_addresses=2, clock=Clock())
    for address in ("a", "b", "c"):
        limiter.fail(address)
    assert limiter.retry_after_s("a") == 0
    assert limiter.retry_after_s("b") > 0 and limiter.retry_after_s("c") > 0


ADMIN = "first-admin-key-0001"


def never_a_client_key(_: str) -> bool:
    return False


def test_a_valid_key_passes_however_many_failures_its_address_has() -> None:
    """Behind a proxy every admin may share one address: an attacker's failures there must not
    lock the admins out. Only failing attempts are throttled."""
    auth = AdminAuth([ADMIN])
    statuses = [auth.authenticate("wrong-key-" + str(i), "10.0.0.9", never_a_client_key).status
                for i in range(20)]  # fmt: skip
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    verdict = auth.authenticate(ADMIN, "10.0.0.9", never_a_client_key)
    assert verdict.status == 0 and verdict.actor == "admin#1"
    blocked = auth.authenticate(None, "10.0.0.9", never_a_client_key)
    assert blocked.status == 429 and blocked.retry_after_s >= 1 and blocked.reason == "no key"
    assert auth.authenticate("sk-client", "10.0.0.8", lambda k: True).status == 403
    assert auth.authenticate("nope-nope-nope", "10.0.0.7", never_a_client_key).status == 401


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "expected"),
    [
        ("10.0.0.2", [], 0, "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.9"], 0, "10.0.0.2"),  # no proxy trusted: the header is ignored
        ("10.0.0.2", ["203.0.113.9"], 1, "203.0.113.9"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9"], 1, "203.0.113.9"),  # the client wrote 6.6.6.6
        ("10.0.0.2", ["6.6.6.6", "203.0.113.9"], 1, "203.0.113.9"),  # two header lines
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9, 10.0.0.1"], 2, "203.0.113.9"),
        ("10.0.0.2", ["203.0.113.9"], 2, "10.0.0.2"),  # fewer entries than proxies: bypassed
        ("10.0.0.2", ["not-an-ip"], 1, "10.0.0.2"),
        ("10.0.0.2", ["203.0.113.9:5555"], 1, "203.0.113.9"),
        ("10.0.0.2", ["[2001:db8::7]:443"], 1, "2001:db8::7"),
        ("10.0.0.2", ["2001:DB8:0::7"], 1, "2001:db8::7"),
        ("10.0.0.2", ["1.2.3.4\nforged"], 1, "10.0.0.2"),
        (None, [], 0, "-"),
    ],
)
def test_the_client_address_comes_from_trusted_hops_only(
    peer: str | None, forwarded: list[str], hops: int, expected: str
) -> None:
    assert client_address(peer, forwarded, hops) == expected
