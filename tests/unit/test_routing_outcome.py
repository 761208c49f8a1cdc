"""What an upstream answer means for its key (`classify`), and its quota and retry headers:
read when sane, ignored or clamped when not.

Every row is a header set an upstream could send; whatever the values, `learn_quota` and
`cooldown_ms` answer in range and never raise, and each value they ignore is counted.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from gateway.routing import outcome
from gateway.routing.outcome import (
    MAX_DURATION_MS,
    MAX_REMAINING,
    Learned,
    Outcome,
    classify,
    cooldown_ms,
    learn_quota,
    parse_duration_ms,
)

__all__: list[str] = []

NOW = 1_800_000_000.0
"""The clock of every test here (2027-01-15), so dates turn into exact delays."""
DAY = MAX_DURATION_MS
HUGE = str(10**30)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((200, 201, 204), Outcome.OK),
        ((429,), Outcome.RATE_LIMITED),
        ((401, 403), Outcome.AUTH_ERROR),
        ((408, 500, 502, 503, 529, 599), Outcome.SERVER_ERROR),
        # a redirect is no answer and is never followed: the key failed, not the request
        ((300, 301, 302, 303, 304, 307, 308), Outcome.SERVER_ERROR),
        ((101,), Outcome.SERVER_ERROR),  # a final 1xx: no answer either
        ((400, 404, 413, 422), Outcome.CLIENT_ERROR),
    ],
)
def test_classify(statuses: tuple[int, ...], expected: str) -> None:
    assert [classify(status) for status in statuses] == [expected] * len(statuses)


def rfc3339(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(NOW + seconds_from_now, UTC).isoformat().replace("+00:00", "Z")


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, UTC), usegmt=True)


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed clock, and no jitter: cooldowns come out exact."""
    monkeypatch.setattr(outcome, "time", types.SimpleNamespace(time=lambda: NOW))
    monkeypatch.setattr(outcome, "random", types.SimpleNamespace(random=lambda: 0.0))


def ignored(header: str) -> float:
    value = REGISTRY.get_sample_value("keyway_upstream_values_ignored_total", {"header": header})
    return value or 0.0


def openai(**values: str) -> dict[str, str]:
    """OpenAI's headers, sane, with `values` (by short name) replaced."""
    headers = {
        "requests": "99",
        "tokens": "149000",
        "reset_requests": "1s",
        "reset_tokens": "6m0s",
        **values,
    }
    return {
        "x-ratelimit-remaining-requests": headers["requests"],
        "x-ratelimit-remaining-tokens": headers["tokens"],
        "x-ratelimit-reset-requests": headers["reset_requests"],
        "x-ratelimit-reset-tokens": headers["reset_tokens"],
    }


def anthropic(**values: str) -> dict[str, str]:
    headers = {
        "requests": "49",
        "tokens": "39000",
        "reset_requests": rfc3339(2),
        "reset_tokens": rfc3339(30),
        **values,
    }
    return {
        "anthropic-ratelimit-requests-remaining": headers["requests"],
        "anthropic-ratelimit-tokens-remaining": headers["tokens"],
        "anthropic-ratelimit-requests-reset": headers["reset_requests"],
        "anthropic-ratelimit-tokens-reset": headers["reset_tokens"],
    }


QUOTA_ROWS = [
    # (headers, learned, the header whose value is ignored)
    ({}, Learned(), None),
    ({"content-type": "application/json"}, Learned(), None),
    (openai(), Learned(99, 149000, 360_000), None),
    (openai(requests=" 42 ", tokens="12.7"), Learned(42, 12, 360_000), None),
    (openai(requests="0"), Learned(0, 149000, 360_000), None),
    (openai(requests="inf"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="Infinity"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(tokens="nan"), Learned(99, -1, 360_000), "x-ratelimit-remaining-tokens"),
    (openai(requests="-5"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="-0.5"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="abc"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests=""), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="   "), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="1_000"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="٤٢"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="0x10"), Learned(-1, 149000, 360_000), "x-ratelimit-remaining-requests"),
    (openai(requests="1e400"), Learned(MAX_REMAINING, 149000, 360_000), None),
    (openai(tokens=HUGE), Learned(99, MAX_REMAINING, 360_000), None),
    (openai(tokens="9" * 5000), Learned(99, MAX_REMAINING, 360_000), None),
    (openai(reset_tokens="20ms"), Learned(99, 149000, 1000), None),
    (openai(reset_tokens="1h2m3.5s"), Learned(99, 149000, 3_723_500), None),
    (openai(reset_tokens="2.5"), Learned(99, 149000, 2500), None),
    (openai(reset_tokens="1e309"), Learned(99, 149000, DAY), None),
    (openai(reset_tokens="99999h"), Learned(99, 149000, DAY), None),
    (openai(reset_tokens="1e309s"), Learned(99, 149000, 1000), "x-ratelimit-reset-tokens"),
    (openai(reset_tokens="inf"), Learned(99, 149000, 1000), "x-ratelimit-reset-tokens"),
    (openai(reset_tokens="nan"), Learned(99, 149000, 1000), "x-ratelimit-reset-tokens"),
    (openai(reset_tokens="-1s"), Learned(99, 149000, 1000), "x-ratelimit-reset-tokens"),
    (openai(reset_tokens="6m0"), Learned(99, 149000, 1000), "x-ratelimit-reset-tokens"),
    (openai(reset_tokens=""), Learned(99, 149000, 1000), "x-ratelimit-reset-tokens"),
    (
        {"x-ratelimit-remaining-requests": "nan", "x-ratelimit-reset-requests": "inf"},
        Learned(),
        "x-ratelimit-reset-requests",
    ),
    (anthropic(), Learned(49, 39000, 30_000), None),
    (anthropic(reset_tokens=rfc3339(-5)), Learned(49, 39000, 2000), None),
    (anthropic(reset_tokens="0001-01-01T00:00:00Z"), Learned(49, 39000, 2000), None),
    (anthropic(reset_tokens="9999-12-31T23:59:59Z"), Learned(49, 39000, DAY), None),
    (
        anthropic(reset_requests="0001-01-01T00:00:00", reset_tokens="0001-01-01T00:00:00"),
        Learned(49, 39000, -1),
        "anthropic-ratelimit-tokens-reset",
    ),
    (anthropic(reset_tokens="soon"), Learned(49, 39000, 2000), "anthropic-ratelimit-tokens-reset"),
    (anthropic(reset_tokens=""), Learned(49, 39000, 2000), "anthropic-ratelimit-tokens-reset"),
    (
        anthropic(requests="inf"),
        Learned(-1, 39000, 30_000),
        "anthropic-ratelimit-requests-remaining",
    ),
    (anthropic(tokens="-1"), Learned(49, -1, 30_000), "anthropic-ratelimit-tokens-remaining"),
    (anthropic(tokens=HUGE), Learned(49, MAX_REMAINING, 30_000), None),
]


@pytest.mark.parametrize(("headers", "learned", "bad"), QUOTA_ROWS)
def test_learn_quota(headers: dict[str, str], learned: Learned, bad: str | None) -> None:
    before = ignored(bad) if bad else 0.0
    assert learn_quota(headers) == learned
    if bad:
        assert ignored(bad) == before + 1


def test_a_sane_value_is_not_counted_as_ignored() -> None:
    before = ignored("x-ratelimit-remaining-requests")
    learn_quota(openai(requests="1e400"))
    learn_quota(openai())
    assert ignored("x-ratelimit-remaining-requests") == before


COOLDOWN_ROWS = [
    # (headers, cooldown ms with default_s=2 and max_s=60, the header whose value is ignored)
    ({}, 2000, None),
    ({"retry-after-ms": "1500"}, 1500, None),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1500, None),
    ({"retry-after-ms": "0"}, 0, None),
    ({"retry-after-ms": "nan"}, 2000, "retry-after-ms"),
    ({"retry-after-ms": "inf"}, 2000, "retry-after-ms"),
    ({"retry-after-ms": "-inf"}, 2000, "retry-after-ms"),
    ({"retry-after-ms": "-5"}, 2000, "retry-after-ms"),
    ({"retry-after-ms": "abc"}, 2000, "retry-after-ms"),
    ({"retry-after-ms": ""}, 2000, "retry-after-ms"),
    ({"retry-after-ms": "nan", "retry-after": "3"}, 3000, "retry-after-ms"),
    ({"retry-after-ms": "1e400"}, 60_000, None),
    ({"retry-after-ms": HUGE}, 60_000, None),
    ({"retry-after": "3"}, 3000, None),
    ({"retry-after": " 0.5 "}, 500, None),
    ({"retry-after": "1e309"}, 60_000, None),
    ({"retry-after": HUGE}, 60_000, None),
    ({"retry-after": "nan"}, 2000, "retry-after"),
    ({"retry-after": "inf"}, 2000, "retry-after"),
    ({"retry-after": "-3"}, 2000, "retry-after"),
    ({"retry-after": ""}, 2000, "retry-after"),
    ({"retry-after": "   "}, 2000, "retry-after"),
    ({"retry-after": "soon"}, 2000, "retry-after"),
    ({"retry-after": http_date(30)}, 30_000, None),
    ({"retry-after": http_date(-30)}, 2000, None),  # passed: the default, not zero
    ({"retry-after": "Mon, 01 Jan 1900 00:00:00 GMT"}, 2000, None),
    ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, 60_000, None),
    ({"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, 2000, "retry-after"),
    ({"retry-after": "Mon, 01 Jan 2024 00:00:00 +9999"}, 2000, "retry-after"),
]


@pytest.mark.parametrize(("headers", "expected", "bad"), COOLDOWN_ROWS)
def test_cooldown(headers: dict[str, str], expected: int, bad: str | None) -> None:
    before = ignored(bad) if bad else 0.0
    assert cooldown_ms(headers, default_s=2, max_s=60) == expected
    if bad:
        assert ignored(bad) == before + 1


def test_cooldown_is_stretched_by_up_to_a_tenth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outcome, "random", types.SimpleNamespace(random=lambda: 0.999))
    assert cooldown_ms({"retry-after": "1e309"}, default_s=2, max_s=60) == 65_994


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1s", 1000),
        ("6m0s", 360_000),
        ("20ms", 20),
        ("1h2m3.5s", 3_723_500),
        ("1.5", 1500),
        ("0", 0),
        ("250us", 0),
        ("1500µs", 1),
        ("1e309", DAY),
        ("25h", DAY),
        ("9" * 400 + "h", DAY),
        ("1e309s", None),
        ("inf", None),
        ("nan", None),
        ("-1s", None),
        ("-1", None),
        ("1d", None),
        ("1s junk", None),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_duration_ms(text: str, ms: int | None) -> None:
    assert parse_duration_ms(text) == ms


NAMES = [
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "retry-after-ms",
    "retry-after",
]
TRICKY = ["inf", "-inf", "nan", "NaN", "1e400", "-1e400", "1e309s", HUGE, "-0", "0x1p3", "1_0",
          "٣", "Fri, 31 Dec 9999 23:59:59 -2359", "9999-12-31T23:59:59-23:59",
          "0001-01-01T00:00:00", "0001-01-01T00:00:00+23:59"]  # fmt: skip
VALUES = st.one_of(
    st.text(),
    st.sampled_from(TRICKY),
    st.floats().map(str),
    st.integers().map(str),
    st.from_regex(r"\A(?:[0-9.e+-]{1,6}(?:h|m|s|ms|us|ns)?){1,4}\Z"),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: format_datetime(d, usegmt=True)),
)


@settings(max_examples=400, deadline=None)
@given(headers=st.dictionaries(st.sampled_from(NAMES), VALUES), jitter=st.floats(0, 1))
def test_no_header_value_raises_or_lands_out_of_range(
    headers: dict[str, str], jitter: float
) -> None:
    # the autouse fixture restores the module's own `random` after the test
    outcome.random = types.SimpleNamespace(random=lambda: min(jitter, 0.999))  # type: ignore[assignment]
    learned = learn_quota(headers)
    wait = cooldown_ms(headers, default_s=2, max_s=60)
    assert -1 <= learned.remaining_requests <= MAX_REMAINING
    assert -1 <= learned.remaining_tokens <= MAX_REMAINING
    assert -1 <= learned.reset_ms <= DAY
    assert all(type(v) is int for v in (learned.remaining_requests, learned.remaining_tokens))
    assert type(learned.reset_ms) is int and type(wait) is int
    assert 0 <= wait <= 66_000
