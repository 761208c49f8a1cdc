"""An upstream 3xx is that key's failure, like a 5xx: never followed, the next key is tried.

A redirect carries no answer, and following it would send the key's secret wherever it points.
So the key that sent it takes a circuit-breaker failure, the router moves on to the next key
(or deployment, or fallback model), and the client's window and spend see none of it: only a
request some key answered counts. When every key redirects, the client gets 502
`upstream_redirect` in its dialect.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

from gateway.state.layout import pool_prefix
from tests.unit.lifecycle.combos import COMBOS, assert_dialect_error
from tests.unit.lifecycle.in_process import Lifecycle
from tests.unit.lifecycle.ledger import assert_settled, client_ledger
from tests.unit.lifecycle.scripted_transport import Reply, SentRequest
from tests.unit.lifecycle.upstream_replies import COMPLETION_TOKENS, PROMPT_TOKENS, answer

__all__: list[str] = []

CHAT = next(c for c in COMBOS if (c.endpoint, c.upstream, c.stream) == ("chat", "openai", False))
SECRETS = {"Bearer sk-oai-0001": "o1", "Bearer sk-oai-0002": "o2"}
REDIRECT = Reply(
    status=307,
    headers={"location": "https://elsewhere.example/v1/chat/completions", "content-length": "0"},
    body=b"",
)


def key_of(request: SentRequest) -> str:
    return SECRETS[request.headers["authorization"]]


async def breaker_failures(lc: Lifecycle, key_id: str) -> int:
    redis = lc.gw.state.handle.client
    fails = await redis.hget(f"{pool_prefix(lc.gw.state.prefix, 'oai')}:k:{key_id}", "br_fails")
    return int(fails or 0)


def hosts(lc: Lifecycle) -> set[str | None]:
    return {urlsplit(r.url).hostname for r in lc.upstream.requests}


async def test_a_redirecting_key_fails_and_the_next_key_answers(lc: Lifecycle) -> None:
    def script(request: SentRequest) -> Reply:
        return REDIRECT if len(lc.upstream.requests) == 1 else answer(request)

    lc.upstream.handler = script
    response = await lc.post(CHAT.path, CHAT.body())
    await lc.settle()

    assert response.status_code == 200, response.text
    redirected, served = (key_of(r) for r in lc.upstream.requests)
    assert {redirected, served} == {"o1", "o2"}
    assert response.headers["x-keyway-key"] == served
    assert response.headers["x-keyway-attempts"] == "2"
    assert hosts(lc) == {"oai.example"}  # the redirect was not followed
    assert await breaker_failures(lc, redirected) == 1
    assert await breaker_failures(lc, served) == 0
    client = await client_ledger(lc.gw, "alice")
    assert (client.requests, client.tokens) == (1, PROMPT_TOKENS + COMPLETION_TOKENS)
    await assert_settled(lc.gw)


async def test_when_every_key_redirects_the_client_gets_502_and_pays_nothing(
    lc: Lifecycle,
) -> None:
    lc.upstream.handler = lambda request: REDIRECT
    response = await lc.post(CHAT.path, CHAT.body())
    await lc.settle()

    assert_dialect_error(CHAT, response.status_code, response.content)
    assert response.status_code == 502
    assert msgspec.json.decode(response.content)["error"]["code"] == "upstream_redirect"
    assert sorted(key_of(r) for r in lc.upstream.requests) == ["o1", "o2"]  # both were tried
    assert hosts(lc) == {"oai.example"}
    for key_id in ("o1", "o2"):
        assert await breaker_failures(lc, key_id) == 1
    client = await client_ledger(lc.gw, "alice")
    assert (client.requests, client.tokens, client.spend_day) == (0, 0, 0)
    await assert_settled(lc.gw)
