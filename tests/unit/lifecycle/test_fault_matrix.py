"""The fault matrix: every endpoint x dialect pairing x stream, broken at every stage of its life.

Each row sends one request through the HTTP surface of an in-process gateway (the embedded
store, a scripted upstream), with one fault arranged by its stage (stages.py). Afterwards:

1. the client saw an answer, an error in the endpoint's dialect, or a stream ending with an
   error event; never a traceback (combos.py);
2. the store is settled: no request in flight, no lease, no admission hold (ledger.py);
3. the charge policy holds, read from the store:

   refused          refused before any upstream call (bad body, no key, admission refused, a
                    fault before the send): no upstream call, the client's window and spend
                    untouched, nothing in any key's window
   upstream_failed  every attempt failed upstream (4xx/429/5xx, connection failure, no answer):
                    each attempt counts in its key's RPM window with 0 tokens in its TPM window;
                    the client pays nothing (0 tokens in its window, spend 0)
   rejected         the upstream refused the request as invalid (400): the key as above; the
                    request counts in the client's RPM window, with 0 tokens and spend 0
   usage            a success: exactly the usage the upstream reported, in the client's window,
                    spend (tokens x price per million), usage counters, and the key's window
   streamed         a stream that ended without usage (cut, abandoned or just silent about it):
                    output = ceil(UTF-8 bytes of the text streamed / 4), input = len(request
                    body) // 4, priced at the output and input prices; the key's window the same

Rows are expected to fail on today's code where it breaks these rules; they are not xfail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.unit.lifecycle.combos import COMBOS, Combo
from tests.unit.lifecycle.in_process import Lifecycle
from tests.unit.lifecycle.ledger import assert_settled, client_ledger, pool_ledger
from tests.unit.lifecycle.stages import STAGES, Stage

CASES = [
    pytest.param(combo, stage, id=f"{combo.id}-{stage.name}")
    for combo in COMBOS
    for stage in STAGES
    if stage.applies(combo)
]


async def _charges(lc: Lifecycle, combo: Combo, stage: Stage, body: bytes) -> None:
    pool = await pool_ledger(lc.gw, combo.provider)
    client = await client_ledger(lc.gw, stage.client)
    calls = len(lc.upstream.requests)
    got = {
        "upstream calls": calls,
        "key RPM entries": pool.requests,
        "key TPM tokens": pool.tokens,
        "client RPM entries": client.requests,
        "client TPM tokens": client.tokens,
        "client spend": client.spend_day,
        "client usage req": client.usage["req"],
        "client usage in": client.usage["in"],
        "client usage out": client.usage["out"],
        "client usage cost": client.usage["cost"],
        "key usage in": pool.usage["in"],
        "key usage out": pool.usage["out"],
    }
    nothing = {"client TPM tokens": 0, "client spend": 0}
    if stage.policy == "refused":
        want = {"upstream calls": 0, "key RPM entries": 0, "key TPM tokens": 0,
                "client RPM entries": 0, **nothing}  # fmt: skip
    elif stage.policy == "upstream_failed":
        assert calls >= 1, "the fault was meant to reach the upstream"
        want = {"key RPM entries": calls, "key TPM tokens": 0, **nothing}
    elif stage.policy == "rejected":
        want = {"upstream calls": 1, "key RPM entries": 1, "key TPM tokens": 0,
                "client RPM entries": 1, **nothing}  # fmt: skip
    else:
        tokens_in, tokens_out = stage.tokens(combo, body)
        total, cost = tokens_in + tokens_out, combo.cost(tokens_in, tokens_out)
        want = {"upstream calls": 1, "key RPM entries": 1, "key TPM tokens": total,
                "client RPM entries": 1, "client TPM tokens": total, "client spend": cost,
                "client usage req": 1, "client usage in": tokens_in,
                "client usage out": tokens_out, "client usage cost": cost,
                "key usage in": tokens_in, "key usage out": tokens_out}  # fmt: skip
    wrong = [
        f"{name} {got[name]} (want {value})" for name, value in want.items() if got[name] != value
    ]
    if wrong:
        raise AssertionError(f"charge policy '{stage.policy}': " + ", ".join(wrong))


async def _check(
    failures: list[str], what: str, check: Callable[[], Awaitable[None] | None]
) -> None:
    """Run one check; a failure is noted and the next check still runs (a row reports them all)."""
    try:
        result = check()
        if result is not None:
            await result
    except AssertionError as exc:
        failures.append(f"[{what}] {exc}")


@pytest.mark.parametrize(("combo", "stage"), CASES)
async def test_fault(
    lc: Lifecycle, monkeypatch: pytest.MonkeyPatch, combo: Combo, stage: Stage
) -> None:
    extra = await stage.arrange(lc, combo, monkeypatch)
    body = combo.body()[:-2] if stage.malformed else combo.body()
    failures: list[str] = []
    status, reply = await lc.drive(combo.path, body, stage.client, stage.drive)
    await _check(failures, "client", lambda: stage.check_client(combo, status, reply))
    await lc.settle()
    await _check(failures, "settled", lambda: assert_settled(lc.gw))
    await _check(failures, "charges", lambda: _charges(lc, combo, stage, body))
    unreleased = lc.upstream.unreleased()
    if unreleased:
        failures.append(f"[transport] {len(unreleased)} upstream responses never released")
    if extra is not None:
        await _check(failures, "replay", extra)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
