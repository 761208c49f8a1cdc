"""Property: any mix of faulted requests, one after another or concurrent, keeps the books on Redis.

Hypothesis draws a batch of 5-30 requests; each is an endpoint x dialect pairing x stream combo
(tests/unit/lifecycle/combos.py), a fault stage of the lifecycle matrix (stages.py), a client,
and whether it runs concurrently with the request before it (`asyncio.gather`). The batch goes
through one in-process gateway on a real redis-server, under a key prefix of its own per example;
the scripted upstream answers each request by its own stage's script (a tag in its prompt says
whose request it is). Then every settlement is drained and the store is read back.

What this proves, for every batch drawn:

1. nothing is held: every key's in-flight count is 0, no lease and no admission hold remains,
   every window's running `_sum` equals its entries (ledger.assert_settled);
2. the charge policy of test_fault_matrix.py holds for the batch as a whole, so a request's
   charge neither leaks into nor is lost to another's: per provider, the keys' RPM windows hold
   exactly one entry per upstream call, their TPM windows exactly the tokens of the successful
   and streamed requests (`Stage.tokens`), and the pool's usage counters the same tokens; per
   client, the TPM window, daily spend and usage counters hold exactly the sum of what each of
   its requests should cost, and its RPM window every charged or rejected request (plus, at most,
   those that failed upstream, which the matrix does not pin);
3. each request's client saw what its stage says (`Stage.check_client`), never a traceback, and
   made the number of upstream calls its policy allows; no upstream response was leaked.

Requests interact: a failure cools its key or opens a breaker, so a later request on the same
provider may be refused before any upstream call (429/503, charged nothing). That is accepted
only when the batch holds a failing request on that provider, and it is then charged as
`refused`.

Stages whose arrangement reaches into the gateway for every request at once are left out: `admit`
and `acquire` (the first store round trip of whichever request comes first fails), `prepare` (the
translation of every request of that pairing) and `no_key` (the whole pool disabled).
`settle_lost` is a fault of the store's: once per batch that holds it, the first settlement of
whichever request comes first loses its reply and must be replayed exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from gateway.providers.transport import ConnectError
from tests.unit.lifecycle.combos import COMBOS, Combo, assert_dialect_error
from tests.unit.lifecycle.in_process import Lifecycle, lifecycle_config, running
from tests.unit.lifecycle.ledger import assert_settled, client_ledger, pool_ledger
from tests.unit.lifecycle.scripted_transport import Reply, SentRequest
from tests.unit.lifecycle.stages import STAGES, Stage
from tests.unit.lifecycle.upstream_replies import answer

ONCE_PER_BATCH = frozenset({"settle_lost"})
"""Stages whose fault is the store's, arranged once for the whole batch."""

CASES = [
    (combo, stage)
    for combo in COMBOS
    for stage in STAGES
    if stage.applies(combo) and (stage.upstream_script is not None or stage.name in ONCE_PER_BATCH)
]
CLIENTS = ("alice", "bob")
"""Clients with room in their limits and budgets; a stage with a client of its own keeps it."""


@dataclass(frozen=True, slots=True)
class Planned:
    combo: Combo
    stage: Stage
    client: str
    together: bool
    """Runs concurrently with the request before it."""

    def __repr__(self) -> str:
        joined = " (with the one before)" if self.together else ""
        return f"{self.combo.id}-{self.stage.name} as {self.client}{joined}"


def _planned(case: tuple[Combo, Stage], client: str, together: bool) -> Planned:
    combo, stage = case
    return Planned(combo, stage, stage.client if stage.client not in CLIENTS else client, together)


batches = st.lists(
    st.builds(_planned, st.sampled_from(CASES), st.sampled_from(CLIENTS), st.booleans()),
    min_size=5,
    max_size=30,
)


@dataclass(frozen=True, slots=True)
class Sent:
    planned: Planned
    tag: bytes
    body: bytes
    status: int | None
    reply: bytes


def _waves(batch: list[Planned]) -> list[list[int]]:
    """Indexes of the batch, grouped into runs of requests sent concurrently."""
    waves: list[list[int]] = []
    for index, planned in enumerate(batch):
        if planned.together and waves:
            waves[-1].append(index)
        else:
            waves.append([index])
    return waves


def _fails_upstream(stage: Stage) -> bool:
    """The stage's request reaches the upstream and does not end in a plain success."""
    return stage.policy != "refused" and stage.expect != "answer"


def _tag(index: int) -> str:
    """In the prompt of the batch's request `index`: whose request the upstream is answering."""
    return f"[r{index:02d}]"


async def _send(lc: Lifecycle, index: int, planned: Planned) -> Sent:
    tag = _tag(index)
    body = planned.combo.body(prompt=f"Say hello to the world {tag}")
    if planned.stage.malformed:
        body = body[:-2]
    status, reply = await lc.drive(
        planned.combo.path,
        body,
        planned.client,
        planned.stage.drive,
        hangs=lambda request: tag.encode() in request.body,
    )
    return Sent(planned, tag.encode(), body, status, reply)


def _counter() -> Counter[str]:
    return Counter()


@dataclass
class Totals:
    """What the store must hold, summed over the requests that should have put it there: by
    provider (`calls`, `key_*`) and by client (`client_*`)."""

    calls: Counter[str] = field(default_factory=_counter)
    key_tokens: Counter[str] = field(default_factory=_counter)
    key_in: Counter[str] = field(default_factory=_counter)
    key_out: Counter[str] = field(default_factory=_counter)
    client_tokens: Counter[str] = field(default_factory=_counter)
    client_cost: Counter[str] = field(default_factory=_counter)
    client_in: Counter[str] = field(default_factory=_counter)
    client_out: Counter[str] = field(default_factory=_counter)
    client_requests: Counter[str] = field(default_factory=_counter)
    client_maybe_requests: Counter[str] = field(default_factory=_counter)
    """Requests that failed upstream: the matrix does not pin whether they stay in the window."""
    """Requests that failed upstream: the matrix does not pin whether they stay in the window."""


def _account(
    sent: list[Sent], upstream: list[SentRequest], problems: list[str]
) -> tuple[Totals, list[str]]:
    """Each request's charge under its policy, checked against what it did, summed; and a line
    per request saying what happened to it (for the failure message)."""
    failing = {s.planned.combo.provider for s in sent if _fails_upstream(s.planned.stage)}
    t = Totals()
    story: list[str] = []
    for s in sent:
        combo, stage, client = s.planned.combo, s.planned.stage, s.planned.client
        calls = sum(s.tag in request.body for request in upstream)
        policy = stage.policy
        try:
            if policy != "refused" and calls == 0 and combo.provider in failing:
                # every key of the pool cooling or breaker-open after another request's failure
                assert s.status in (429, 503), f"no upstream call, yet status {s.status}"
                assert_dialect_error(combo, s.status, s.reply)
                policy = "refused"
                event("a request refused after another's failure (key cooldown or breaker)")
            else:
                stage.check_client(combo, s.status, s.reply)
            if policy == "refused":
                assert calls == 0, f"{calls} upstream calls for a refused request"
            elif policy == "upstream_failed":
                assert calls >= 1, "the fault was meant to reach the upstream"
            else:
                assert calls == 1, f"{calls} upstream calls, want 1"
        except AssertionError as exc:
            problems.append(f"{s.tag.decode()} {s.planned!r}: {exc}")
        story.append(
            f"{s.tag.decode()} {s.planned!r}: status {s.status}, {calls} upstream calls, "
            f"charged as {policy}"
        )
        t.calls[combo.provider] += calls
        if policy in ("usage", "streamed"):
            tokens_in, tokens_out = stage.tokens(combo, s.body)
            cost = combo.cost(tokens_in, tokens_out)
            for counter, key, value in (
                (t.key_tokens, combo.provider, tokens_in + tokens_out),
                (t.key_in, combo.provider, tokens_in),
                (t.key_out, combo.provider, tokens_out),
                (t.client_tokens, client, tokens_in + tokens_out),
                (t.client_cost, client, cost),
                (t.client_in, client, tokens_in),
                (t.client_out, client, tokens_out),
            ):
                counter[key] += value
        if policy in ("usage", "streamed", "rejected"):
            t.client_requests[client] += 1
        elif policy == "upstream_failed":
            t.client_maybe_requests[client] += 1
    return t, story


def _compare(problems: list[str], where: str, got: dict[str, int], want: dict[str, int]) -> None:
    wrong = [f"{name} {got[name]} (want {want[name]})" for name in want if got[name] != want[name]]
    if wrong:
        problems.append(f"{where}: " + ", ".join(wrong))


async def _check_books(lc: Lifecycle, t: Totals, problems: list[str]) -> None:
    for provider in lc.gw.table.pools:
        pool = await pool_ledger(lc.gw, provider)
        got = {"key RPM entries": pool.requests, "key TPM tokens": pool.tokens,
               "key usage in": pool.usage["in"], "key usage out": pool.usage["out"]}  # fmt: skip
        want = {"key RPM entries": t.calls[provider], "key TPM tokens": t.key_tokens[provider],
                "key usage in": t.key_in[provider], "key usage out": t.key_out[provider]}  # fmt: skip
        _compare(problems, f"pool {provider}", got, want)
    for client in lc.gw.cfg.clients:
        ledger = await client_ledger(lc.gw, client.id)
        cid = client.id
        got = {"TPM tokens": ledger.tokens, "spend": ledger.spend_day,
               "usage in": ledger.usage["in"], "usage out": ledger.usage["out"],
               "usage cost": ledger.usage["cost"]}  # fmt: skip
        want = {"TPM tokens": t.client_tokens[cid], "spend": t.client_cost[cid],
                "usage in": t.client_in[cid], "usage out": t.client_out[cid],
                "usage cost": t.client_cost[cid]}  # fmt: skip
        _compare(problems, f"client {cid}", got, want)
        low, high = t.client_requests[cid], t.client_requests[cid] + t.client_maybe_requests[cid]
        if not low <= ledger.requests <= high:
            problems.append(f"client {cid}: RPM entries {ledger.requests} not in [{low}, {high}]")


async def run_batch(redis_url: str, prefix: str, batch: list[Planned]) -> None:
    cfg = lifecycle_config({"REDIS_URL": redis_url, "KEYWAY_REDIS_PREFIX": prefix})
    async with running(cfg) as lc:
        with pytest.MonkeyPatch.context() as mp:
            scripts = {
                _tag(i).encode(): p.stage.upstream_script or answer for i, p in enumerate(batch)
            }
            strays: list[SentRequest] = []

            def upstream(request: SentRequest) -> Reply:
                script = next((s for tag, s in scripts.items() if tag in request.body), None)
                if script is None:
                    strays.append(request)
                    return Reply(connect_error=ConnectError("no request of the batch"))
                return script(request)

            replayed = None
            once = next((p for p in batch if p.stage.name in ONCE_PER_BATCH), None)
            if once is not None:
                replayed = await once.stage.arrange(lc, once.combo, mp)
            lc.upstream.handler = upstream

            sent: list[Sent] = []
            waves = _waves(batch)
            event(f"largest concurrent wave: {max(len(w) for w in waves)}")
            for wave in waves:
                sent += await asyncio.gather(*(_send(lc, i, batch[i]) for i in wave))
            await lc.settle()

            problems: list[str] = []
            if strays:
                problems.append(f"{len(strays)} upstream requests of no request in the batch")
            try:
                await assert_settled(lc.gw)
            except AssertionError as exc:
                problems.append(str(exc))
            if replayed is not None:
                try:
                    replayed()
                except AssertionError as exc:
                    problems.append(str(exc))
            totals, story = _account(sent, lc.upstream.requests, problems)
            await _check_books(lc, totals, problems)
            unreleased = lc.upstream.unreleased()
            if unreleased:
                problems.append(f"{len(unreleased)} upstream responses never released")
            if lc.gw.degraded_mode:
                problems.append("the gateway went into degraded mode (Redis unreachable)")
        if problems:
            raise AssertionError(
                "\n  ".join(["the books do not balance:", *problems, "the batch:", *story])
            )


async def _forget(redis_url: str, prefix: str) -> None:
    """Delete every key the examples wrote under `prefix`."""
    redis = aioredis.from_url(redis_url)  # owns its pool: aclose() closes the connections
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await redis.unlink(*keys[start : start + 500])
    finally:
        await redis.aclose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # no `explain` phase: it re-runs a failing batch for minutes, and the failure message already
    # tells the batch request by request
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
)
@given(batch=batches)
def test_any_mix_of_faults_keeps_the_books(
    redis_url: str, prefix: dict[str, str], batch: list[Planned]
) -> None:
    base = prefix["KEYWAY_REDIS_PREFIX"]
    example = f"{base}-{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(run_batch(redis_url, example, batch))
    finally:
        asyncio.run(_forget(redis_url, example))
