"""Admin keys: constant-time identification, header parsing, and the failed-attempt limiter."""

from __future__ import annotations

import pytest

from gateway.admin.auth import AdminAuth, FailureLimiter, presented_key


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
