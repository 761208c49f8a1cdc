"""The upstream transport's limits as the router sees them: whose fault, and how long.

No free connection in the gateway's own upstream pool (slow clients holding every stream) is
the gateway's capacity: the client gets a 503 `local_capacity` with Retry-After, the key's
lease is refunded, and no breaker hears of it (else a thousand slow readers would open the
breakers of every key, on every replica). A connect failure is still the key's. Every attempt
is sent with the request's deadline, so a trickling upstream cannot hold it past
`routing.deadline_s`.
"""

from __future__ import annotations

import time

import msgspec

from gateway.providers.transport import ConnectError, PoolExhausted
from gateway.state.layout import pool_prefix
from tests.unit.lifecycle.in_process import Lifecycle
from tests.unit.lifecycle.ledger import assert_settled, pool_ledger
from tests.unit.lifecycle.scripted_transport import Reply, SentRequest
from tests.unit.lifecycle.upstream_replies import answer

CHAT = msgspec.json.encode({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
"""`gpt`: the `oai` pool, two keys (o1, o2)."""


async def breaker_failures(lc: Lifecycle) -> int:
    """Breaker failures recorded on the `oai` keys and on the provider+model breaker."""
    redis = lc.gw.state.handle.client
    p = pool_prefix(lc.gw.state.prefix, "oai")
    total = int(await redis.hget(f"{p}:m:gpt-up", "br_fails") or 0)
    for key in ("o1", "o2"):
        total += int(await redis.hget(f"{p}:k:{key}", "br_fails") or 0)
    return total


async def test_no_free_upstream_connection_is_a_local_503_that_blames_no_key(
    lc: Lifecycle,
) -> None:
    lc.upstream.handler = lambda request: Reply(connect_error=PoolExhausted("no free slot"))
    response = await lc.post("/v1/chat/completions", CHAT)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "local_capacity"
    assert response.headers["retry-after"] == "1"
    assert len(lc.upstream.requests) == 1  # the pool is the gateway's: another key won't help
    await lc.settle()
    pool = await pool_ledger(lc.gw, "oai")
    assert (pool.requests, pool.usage["err"], await breaker_failures(lc)) == (0, 0, 0)
    await assert_settled(lc.gw)


async def test_a_connect_failure_is_still_the_keys(lc: Lifecycle) -> None:
    """The control: what a pool wait was reported as before, and a refused connect still is."""
    lc.upstream.handler = lambda request: Reply(connect_error=ConnectError("refused"))
    response = await lc.post("/v1/chat/completions", CHAT)
    assert response.status_code == 502, response.text
    assert len(lc.upstream.requests) == 2  # both keys tried
    await lc.settle()
    assert await breaker_failures(lc) > 0
    await assert_settled(lc.gw)


async def test_every_attempt_is_sent_with_the_requests_deadline(lc: Lifecycle) -> None:
    def script(request: SentRequest) -> Reply:
        if len(lc.upstream.requests) == 1:
            return Reply(connect_error=ConnectError("refused"))
        return answer(request)

    lc.upstream.handler = script
    budget = lc.gw.cfg.routing.deadline_s
    started = time.monotonic()
    response = await lc.post("/v1/chat/completions", CHAT)
    assert response.status_code == 200, response.text
    first, second = lc.upstream.deadlines
    assert first is not None and first == second  # what is left of one deadline, not re-armed
    assert started + budget <= first <= time.monotonic() + budget
    await lc.settle()
    await assert_settled(lc.gw)
