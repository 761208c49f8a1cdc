"""A client key's concurrency cap on a real gateway, with slow streams from the fake provider.

Client `capped` (max_concurrency: 2) holds two slow streams (the fake's `long_stream` fault):
its third request is refused with 429 `client_concurrency` in the dialect of the endpoint it
called, and never reaches the upstream, while `team-a` (the default cap) is served. Once its
client has left the streams, `capped` can hold two streams at once again: no slot leaked (nor
by a stream read to its end, or an answer, before). A cap set through the admin API holds the
same way, and 0 lifts it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import FakeControl, Proc, make_config, start_gateway
from tests.integration.test_admin_replicas import Admin, control_env

CAPPED = "sk-client-capped"
STREAM = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 512,
    "stream": True,
}
MESSAGE = {
    "model": "claude-haiku",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "hi"}],
}
SLOW = {"chunks": 400, "delay_ms": 100}
"""A stream of 400 deltas 100 ms apart: it runs until its client leaves (or for ~40 s)."""


def eventually(check: Callable[[], bool], what: str, deadline_s: float = 15.0) -> None:
    """Poll an eventual condition; the deadline only bounds a hang."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline_s}s: {what}")
        time.sleep(0.05)


@pytest.fixture()
def gw(procs: contextlib.ExitStack, logs: Path, fake_proc: Proc, redis_url: str,
       prefix: dict[str, str]) -> Proc:  # fmt: skip
    extra = f"  - {{id: capped, key: {CAPPED}, max_concurrency: 2}}"
    config = make_config(fake_proc.url, keys=2, extra_clients=extra)
    return procs.enter_context(
        start_gateway(logs, config, redis_url=redis_url, env=control_env(prefix))
    )


@contextlib.contextmanager
def streams(gw: Proc, key: str, count: int) -> Iterator[list[Iterator[str]]]:
    """`count` streams of `key`, each open with its first event read (so its slot is held);
    their client leaves them when the block ends. Yields their line iterators: one that is
    dropped closes its stream."""
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(
            httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {key}"})
        )
        opened = []
        for _ in range(count):
            response = stack.enter_context(http.stream("POST", "/v1/chat/completions", json=STREAM))
            assert response.status_code == 200, response.read()
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            opened.append(lines)
        yield opened


def post(gw: Proc, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{gw.url}{path}", json=body, headers=headers, timeout=30)


def assert_refused(gw: Proc, key: str, fake: FakeControl) -> None:
    """A third request of `key`, on either dialect: 429 in its shape, nothing sent upstream."""
    sent = fake.stats()["total"]
    refused = post(gw, key, "/v1/chat/completions", {**STREAM, "stream": False})
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "client_concurrency"), error
    refused = post(gw, key, "/v1/messages", MESSAGE)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1"
    body = refused.json()
    assert (body["type"], body["error"]["type"]) == ("error", "rate_limit_error"), body
    assert fake.stats()["total"] == sent, "a refused request reached the upstream"


def refusals(gw: Proc) -> float:
    for line in httpx.get(f"{gw.url}/metrics", timeout=10).text.splitlines():
        if line.startswith('keyway_rate_limited_total{scope="client_concurrency"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_client_at_its_cap_is_refused_while_others_are_served_and_no_slot_leaks(
    gw: Proc, fake: FakeControl
) -> None:
    # a stream read to its end and an answer: had either kept its slot, the second slow
    # stream below would be refused
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=STREAM, timeout=30,
                      headers={"authorization": f"Bearer {CAPPED}"}) as done:  # fmt: skip
        assert done.read().decode().rstrip().endswith("data: [DONE]")
    assert post(gw, CAPPED, "/v1/chat/completions", {**STREAM, "stream": False}).status_code == 200

    fake.fault("*", "long_stream", count=2, **SLOW)
    with streams(gw, CAPPED, 2):
        assert_refused(gw, CAPPED, fake)
        served = post(gw, "sk-client-a", "/v1/chat/completions", {**STREAM, "stream": False})
        assert served.status_code == 200, served.text  # another client, the default cap
    assert refusals(gw) == 2

    def served_again() -> bool:
        response = post(gw, CAPPED, "/v1/chat/completions", {**STREAM, "stream": False})
        assert response.status_code in (200, 429), response.text
        return response.status_code == 200

    # the client left both streams: the gateway notices and ends them, and gives both slots back
    eventually(served_again, "the capped client is served once its streams are over")
    fake.fault("*", "long_stream", count=2, **SLOW)
    with streams(gw, CAPPED, 2):
        assert_refused(gw, CAPPED, fake)


def test_a_cap_set_through_the_admin_api_holds(gw: Proc, fake: FakeControl) -> None:
    admin = Admin(gw)
    try:
        view = admin.ok("PATCH", "/admin/clients/team-a", json={"max_concurrency": 1})
        assert view["max_concurrency"] == 1
        bad = admin.patch("/admin/clients/team-a", json={"max_concurrency": -1})
        assert bad.status_code == 400, bad.text
        fake.fault("*", "long_stream", count=1, **SLOW)
        with streams(gw, "sk-client-a", 1):
            assert_refused(gw, "sk-client-a", fake)
        view = admin.ok("PATCH", "/admin/clients/team-a", json={"max_concurrency": 0})
        assert view["max_concurrency"] == 0
        fake.fault("*", "long_stream", count=3, **SLOW)
        with streams(gw, "sk-client-a", 3):  # 0: no cap at all
            pass
    finally:
        admin.close()
