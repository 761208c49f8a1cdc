"""The fault axis of the matrix: where a request's life is broken, and what must hold afterwards.

A `Stage` arranges one fault, says how the client drives the request (over HTTP, or leaving /
cancelled mid-way), what the client must see, and which charge policy applies (the policies
are in test_fault_matrix.py's docstring):

    ok                 no fault (usage reported)
    no_usage           a complete stream that never reports usage
    decode             a request body that is not JSON
    admission_refused  a client whose daily budget cannot hold the estimate
    no_key             every key of the pool disabled
    admit              the store's first round trip (admit + acquire) raises RuntimeError
    acquire            the first key answers 503; the acquire of the next one raises RuntimeError
    prepare            the body's re-encoding / translation for the upstream raises RuntimeError
    connect            the transport cannot connect (ConnectError), on every attempt
    connect_bug        the transport raises RuntimeError instead of sending
    rejected           the upstream answers 400 (the request is invalid)
    rate_limited       the upstream answers 429 (retry-after-ms: 1000), every key
    server_error       the upstream answers 503, every key
    redirect           the upstream answers 307 to another host, every key: never followed,
                       each key's failure like a 503 (502 `upstream_redirect` at the end)
    headers            a 200 with the headers x-ratelimit-remaining-requests: inf and
                       retry-after-ms: nan
    headers_429        a 429 whose retry-after-ms is nan
    first_chunk        a JSON body cut before it arrived / a stream cut before its first chunk
    mid_stream         a stream cut after two pieces of text
    shape              a 200 JSON answer whose body is not JSON
    disconnect         the client disconnects after two pieces of text
    cancel             the request task is cancelled after two pieces of text / while the
                       upstream has not answered
    settle_lost        the settlement runs, but its reply is lost once (StateUnavailable): it
                       must be replayed and applied once

A stage whose fault is the upstream's alone (or that has none) says what the upstream answers
as `upstream_script`: such stages can share one gateway, each request answered by its own
stage's script (tests/integration/test_conservation_properties.py mixes them).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from gateway.providers.transport import ConnectError
from gateway.state.layout import pool_prefix
from gateway.state.scripts import ACQUIRE, CLIENT_ADMIT, CLIENT_SETTLE, SETTLE
from gateway.state.store import ScriptCall, StateUnavailable
from tests.unit.lifecycle.combos import (
    Combo,
    assert_clean_stream,
    assert_cut_stream,
    assert_dialect_error,
    assert_no_traceback,
)
from tests.unit.lifecycle.in_process import Lifecycle
from tests.unit.lifecycle.scripted_transport import Handler, Reply, SentRequest
from tests.unit.lifecycle.upstream_replies import (
    COMPLETION_TOKENS,
    PIECES,
    PROMPT_TOKENS,
    answer,
    canned_stream,
    error_reply,
)

__all__ = ["STAGES", "Stage", "UpstreamFault"]

Check = Callable[[], None]
Arrange = Callable[[Lifecycle, Combo, pytest.MonkeyPatch], Awaitable[Check | None]]


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    arrange: Arrange
    policy: str
    """refused | upstream_failed | rejected | usage | streamed (test_fault_matrix.py)."""
    expect: str
    """answer | error | cut | gone: what the client sees."""
    status: int | None = None
    """The error status the client gets; None: any error in the endpoint's dialect (a fault
    inside the gateway may be the request's fault, 4xx, or the gateway's, 5xx)."""
    streams: bool | None = None
    """Only for streaming requests (True), only for JSON ones (False), or both (None)."""
    drive: str = "http"
    """http | disconnect (the client leaves mid-stream) | cancel (the request task is cancelled)."""
    pieces: int = 3
    """`streamed` policy: how many pieces of the answer text reached the client."""
    client: str = "alice"
    malformed: bool = False
    """Send a body that is not JSON."""

    def __repr__(self) -> str:
        return f"Stage({self.name})"

    def applies(self, combo: Combo) -> bool:
        return self.streams is None or self.streams == combo.stream

    @property
    def upstream_script(self) -> Handler | None:
        """What the upstream answers when the fault is its alone (`answer` when there is no
        arranged fault); None when the arrangement reaches into the gateway or its store."""
        if self.arrange is _nothing:
            return answer
        if isinstance(self.arrange, UpstreamFault):
            return self.arrange.script
        return None

    def tokens(self, combo: Combo, body: bytes) -> tuple[int, int]:
        """(input, output) tokens the request sent as `body` is charged; (0, 0) unless the
        policy is `usage` (what the upstream reported) or `streamed` (from the text streamed)."""
        if self.policy == "usage":
            return PROMPT_TOKENS, 0 if combo.endpoint == "embeddings" else COMPLETION_TOKENS
        if self.policy == "streamed":
            streamed = "".join(PIECES[: self.pieces]).encode()
            return len(body) // 4, math.ceil(len(streamed) / 4)
        return 0, 0

    def check_client(self, combo: Combo, status: int | None, body: bytes) -> None:
        """The client saw what this stage says it must (`expect`, `status`)."""
        if self.expect == "gone":
            assert_no_traceback(body)
        elif self.expect == "answer":
            assert status == 200, f"expected an answer, got {status}: {body[:300]!r}"
            if combo.stream:
                assert_clean_stream(combo, body)
            else:
                doc = msgspec.json.decode(body)
                # a Responses API object carries `"error": null` when all is well
                assert isinstance(doc, dict) and doc.get("error") is None, body[:300]
        elif self.expect == "cut":
            assert status == 200, f"expected a stream, got {status}: {body[:300]!r}"
            assert_cut_stream(combo, body)
        else:
            assert status is not None
            assert_dialect_error(combo, status, body)
            if self.status is not None:
                assert status == self.status, f"status {status}, want {self.status}: {body[:300]!r}"


# -- arrangements ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamFault:
    """An arrangement that only scripts the upstream: `script` answers every request."""

    script: Handler

    async def __call__(self, lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
        lc.upstream.handler = self.script
        return None


_upstream = UpstreamFault


async def _nothing(lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
    return None


def _stream_cut(pieces: int, *, hang: bool) -> Callable[[SentRequest], Reply]:
    """A stream without usage that breaks (or hangs) once `pieces` pieces of text went out."""

    def script(request: SentRequest) -> Reply:
        stream = canned_stream(request, usage=False)
        assert stream is not None
        at = stream.after_pieces(pieces)
        reply = answer(request, usage=False)
        return reply.hang(at) if hang else reply.cut(at)

    return script


def _failing_run(
    lc: Lifecycle,
    mp: pytest.MonkeyPatch,
    when: Callable[[Sequence[ScriptCall]], bool],
    error: BaseException,
    *,
    after: bool,
) -> list[int]:
    """`gw.state.run` raises `error` once, on the first batch `when` picks: before running it,
    or after it ran (`after`: the reply was lost). Returns a counter of the picked batches run."""
    real = lc.gw.state.run
    ran = [0]
    fired = [False]

    async def run(calls: Sequence[ScriptCall]) -> list[Any]:
        if not when(calls):
            return await real(calls)
        if fired[0]:
            ran[0] += 1
            return await real(calls)
        fired[0] = True
        if after:
            await real(calls)
            ran[0] += 1
        raise error

    mp.setattr(lc.gw.state, "run", run)
    return ran


def _scripts(calls: Sequence[ScriptCall]) -> set[str]:
    return {c.script.name for c in calls}


async def _admit_fails(lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
    _failing_run(
        lc, mp, lambda c: CLIENT_ADMIT.name in _scripts(c), RuntimeError("store bug"), after=False
    )
    return None


async def _retry_acquire_fails(lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
    """The first key answers 503; the acquire of the next key raises."""

    def script(request: SentRequest) -> Reply:
        return error_reply(request, 503) if len(lc.upstream.requests) == 1 else answer(request)

    lc.upstream.handler = script

    def retry(calls: Sequence[ScriptCall]) -> bool:
        names = _scripts(calls)
        return ACQUIRE.name in names and CLIENT_ADMIT.name not in names

    _failing_run(lc, mp, retry, RuntimeError("store bug"), after=False)
    return None


class _Exploding:
    """Stands for a translation function (or a decoder) that has a bug."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("translation bug")

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("translation bug")


async def _prepare_fails(lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
    module_name, names = combo.prepare_target
    module = importlib.import_module(module_name)
    present = [name for name in names if hasattr(module, name)]
    assert present, f"{module_name} has none of {names}: update combos._PREPARE"
    for name in present:
        mp.setattr(module, name, _Exploding())
    return None


async def _settle_reply_lost(lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
    def settles(calls: Sequence[ScriptCall]) -> bool:
        return bool(_scripts(calls) & {SETTLE.name, CLIENT_SETTLE.name})

    ran = _failing_run(lc, mp, settles, StateUnavailable("reply lost"), after=True)

    def replayed() -> None:
        assert ran[0] >= 2, f"the settlement whose reply was lost was not replayed (ran {ran[0]}x)"

    return replayed


async def _keys_disabled(lc: Lifecycle, combo: Combo, mp: pytest.MonkeyPatch) -> Check | None:
    redis = lc.gw.state.handle.client
    disabled = f"{pool_prefix(lc.gw.state.prefix, combo.provider)}:disabled"
    for key in lc.gw.table.pools[combo.provider].keys:
        await redis.hset(disabled, key.id, "disabled by the test")
    return None


_WEIRD_HEADERS = {"x-ratelimit-remaining-requests": "inf", "retry-after-ms": "nan"}
_ELSEWHERE = {"location": "https://elsewhere.example/v1/chat/completions", "content-length": "0"}

STAGES = (
    Stage("ok", _nothing, "usage", "answer"),
    Stage("no_usage", _upstream(lambda r: answer(r, usage=False)), "streamed", "answer",
          streams=True),
    Stage("decode", _nothing, "refused", "error", 400, malformed=True),
    Stage("admission_refused", _nothing, "refused", "error", 429, client="broke"),
    Stage("no_key", _keys_disabled, "refused", "error", 503),
    Stage("admit", _admit_fails, "refused", "error"),
    Stage("acquire", _retry_acquire_fails, "upstream_failed", "error"),
    Stage("prepare", _prepare_fails, "refused", "error"),
    Stage("connect", _upstream(lambda r: Reply(connect_error=ConnectError("refused"))),
          "upstream_failed", "error", 502),
    Stage("connect_bug", _upstream(lambda r: Reply(connect_error=RuntimeError("client bug"))),
          "upstream_failed", "error"),
    Stage("rejected", _upstream(lambda r: error_reply(r, 400)), "rejected", "error", 400),
    Stage("rate_limited", _upstream(lambda r: error_reply(r, 429, {"retry-after-ms": "1000"})),
          "upstream_failed", "error", 429),
    Stage("server_error", _upstream(lambda r: error_reply(r, 503)), "upstream_failed", "error",
          502),
    Stage("redirect", _upstream(lambda r: Reply(status=307, headers=_ELSEWHERE, body=b"")),
          "upstream_failed", "error", 502),
    Stage("headers", _upstream(lambda r: answer(r).with_headers(_WEIRD_HEADERS)), "usage",
          "answer"),
    Stage("headers_429", _upstream(lambda r: error_reply(r, 429, {"retry-after-ms": "nan"})),
          "upstream_failed", "error", 429),
    Stage("first_chunk", _upstream(lambda r: answer(r).failing_read()),
          "upstream_failed", "error", 502, streams=False),
    Stage("first_chunk", _upstream(_stream_cut(0, hang=False)), "streamed", "cut",
          streams=True, pieces=0),
    Stage("mid_stream", _upstream(_stream_cut(2, hang=False)), "streamed", "cut",
          streams=True, pieces=2),
    Stage("shape", _upstream(lambda r: Reply(body=b"<html><p>502 Bad Gateway</p></html>")),
          "upstream_failed", "error", 502, streams=False),
    Stage("disconnect", _upstream(_stream_cut(2, hang=True)), "streamed", "gone",
          streams=True, drive="disconnect", pieces=2),
    Stage("cancel", _upstream(_stream_cut(2, hang=True)), "streamed", "gone",
          streams=True, drive="cancel", pieces=2),
    Stage("cancel", _upstream(lambda r: Reply(hang_at_connect=True)), "upstream_failed", "gone",
          streams=False, drive="cancel"),
    Stage("settle_lost", _settle_reply_lost, "usage", "answer"),
)  # fmt: skip
