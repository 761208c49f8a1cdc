"""One tenant's failed request must not cost another tenant its next request.

The `solo` pool has one key with a TPM limit of 5000. Alice sends a request whose token
estimate (its `max_tokens` plus a quarter of its body) nearly fills that window, and the
upstream refuses it (400: invalid) or fails (503). No token was consumed, so the key's TPM
window must not keep the estimate: Bob's small request right after must be served. (An
estimate left in the window blocks the key for the window's 60 s.)
"""

from __future__ import annotations

import msgspec
import pytest

from tests.unit.lifecycle.in_process import Lifecycle
from tests.unit.lifecycle.ledger import assert_settled, pool_ledger
from tests.unit.lifecycle.scripted_transport import Reply, SentRequest
from tests.unit.lifecycle.upstream_replies import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    answer,
    error_reply,
)

KEY_TPM = 5000
"""conftest's `solo` pool: one key, s1, with this TPM limit."""


def _chat(max_tokens: int) -> bytes:
    return msgspec.json.encode(
        {"model": "solo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    )


@pytest.mark.parametrize("status", [400, 503], ids=["rejected-400", "server_error-503"])
async def test_a_failed_request_leaves_the_key_to_the_next_tenant(
    lc: Lifecycle, status: int
) -> None:
    big = _chat(KEY_TPM - 100)
    assert len(big) // 4 + KEY_TPM - 100 <= KEY_TPM, "the estimate must fit the key to be sent"

    def script(request: SentRequest) -> Reply:
        first = len(lc.upstream.requests) == 1
        return error_reply(request, status) if first else answer(request)

    lc.upstream.handler = script

    refused = await lc.post("/v1/chat/completions", big, client="alice")
    assert refused.status_code == (400 if status == 400 else 502), refused.text
    await lc.settle()

    served = await lc.post("/v1/chat/completions", _chat(200), client="bob")
    assert served.status_code == 200, f"bob's request failed after alice's: {served.text}"
    await lc.settle()

    assert len(lc.upstream.requests) == 2
    (key,) = (await pool_ledger(lc.gw, "solo")).keys
    assert key.tokens == PROMPT_TOKENS + COMPLETION_TOKENS, key.window
    await assert_settled(lc.gw)
