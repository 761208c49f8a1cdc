"""Real JavaScript clients drive Keyway: Claude Code and the Vercel AI SDK, as users install them.

The clients are pinned in `tests/clients/js/package-lock.json` and installed once per session
with `npm ci` (node and npm missing: skipped locally, a failure in CI). Each run is one script
in `tests/clients/js/` in a subprocess, pointed at a Keyway in front of the fake provider, on
an OpenAI-kind alias (`gpt-4o-mini`) and an Anthropic-kind one (`claude-haiku`): every client
reaches every alias, Keyway translating between the dialects. A script prints one JSON line,
what the client returned; the tests assert on that and on what reached the upstream.

The fake provider calls the first tool it is offered when the last message is the user's,
filling a string enum with its first value, answers in text after a tool result, and answers a
request for structured output with a JSON document its schema accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.clients.upstream import (
    ALIASES,
    ANTHROPIC_ALIAS,
    CLIENT_KEY,
    OPENAI_ALIAS,
    FakeUpstream,
    tool_results,
    upstream_path,
)
from tests.harness import Proc, require_binary

JS_DIR = Path(__file__).resolve().parent / "js"
TEXT = "Hello from fake provider"
"""How the fake's text answers begin (gateway/fake_provider/reply.py)."""

PROVIDERS = ("responses", "chat", "anthropic")
"""The AI SDK's `openai(model)` (Responses API), `openai.chat(model)`, `anthropic(model)`."""
API_PATH = {
    "responses": "/v1/responses",
    "chat": "/v1/chat/completions",
    "anthropic": "/v1/chat/completions",
}
"""What each provider's request becomes on an OpenAI-kind deployment (Anthropic: translated)."""

pytestmark = pytest.mark.timeout(600)
"""The first test pays for `npm ci` on a fresh clone: Claude Code is a 100 MB+ native binary."""

_ACCESS_LINE = re.compile(r" keyway\.access (\S+) (\S+) (\d{3}) .* model=(\S+) ")


@pytest.fixture(scope="session")
def js_clients() -> Path:
    """`tests/clients/js` with its locked packages installed (`npm ci`, skipped when current)."""
    require_binary("node", "install Node.js 18.20 or later (apt-get install nodejs npm)")
    npm = require_binary("npm", "apt-get install npm (Node.js from nodejs.org brings it)")
    locked = (JS_DIR / "package.json").read_bytes() + (JS_DIR / "package-lock.json").read_bytes()
    digest = hashlib.sha256(locked).hexdigest()
    stamp = JS_DIR / "node_modules" / ".keyway-lock-sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {JS_DIR}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        stamp.write_text(digest)
    return JS_DIR


def run_script(keyway: Proc, alias: str, script: str, *args: str) -> dict[str, Any]:
    """Run `node <script> <args>` against `keyway` and `alias`; its JSON line, decoded."""
    env = {**os.environ, "KEYWAY_URL": keyway.url, "KEYWAY_KEY": CLIENT_KEY, "KEYWAY_ALIAS": alias}
    done = subprocess.run(
        ["node", script, *args],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, (
        f"{script} {args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def ai_sdk(keyway: Proc, provider: str, case: str, alias: str, *flags: str) -> dict[str, Any]:
    return run_script(keyway, alias, "ai_sdk.mjs", provider, case, *flags)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"], json.dumps(result, indent=1)[:4000]
    return result


def access_lines(keyway: Proc, since: int) -> list[tuple[str, str, int, str]]:
    """(method, route, status, alias) of each access line Keyway logged after byte `since`.

    A line is written just after its answer: wait until the log stops growing.
    """
    size, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:
        current = keyway.log_path.stat().st_size
        if current == size:
            break
        size = current
        time.sleep(0.3)
    with keyway.log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [
        (m[1], m[2], int(m[3]), m[4])
        for line in text.splitlines()
        if (m := _ACCESS_LINE.search(line))
    ]


# -- the Vercel AI SDK ------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_ai_sdk_generate_text(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, provider: str, alias: str
) -> None:
    result = ok(ai_sdk(keyway, provider, "text", alias))
    assert result["text"].startswith(TEXT)
    assert result["finishReason"] == "stop"
    assert result["usage"]["inputTokens"] > 0 and result["usage"]["outputTokens"] > 0
    assert upstream.last_request()["path"] == upstream_path(alias, API_PATH[provider])


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_ai_sdk_stream_text(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, provider: str, alias: str
) -> None:
    result = ok(ai_sdk(keyway, provider, "stream", alias))
    assert len(result["deltas"]) > 1, "the answer arrived in one piece, not streamed"
    assert "".join(result["deltas"]) == result["text"]
    assert result["text"].startswith(TEXT)
    assert result["finishReason"] == "stop"
    assert result["usage"]["outputTokens"] > 0
    seen = upstream.last_request()
    assert (
        seen["path"] == upstream_path(alias, API_PATH[provider]) and seen["body"]["stream"] is True
    )


@pytest.mark.parametrize("case", ["tools", "stream-tools"])
@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_ai_sdk_tool_loop_completes(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, provider: str, alias: str, case: str
) -> None:
    """The model calls `weather` with the city, the SDK runs it and sends the result back, and
    the model's text ends the loop: two steps, whichever dialect the upstream speaks."""
    result = ok(ai_sdk(keyway, provider, case, alias))
    call, answer = result["steps"]
    assert call["finishReason"] == "tool-calls"
    assert call["toolCalls"] == [{"toolName": "weather", "input": {"city": "Paris"}}]
    assert call["toolResults"] == [
        {"toolName": "weather", "output": {"city": "Paris", "temperature_c": 21}}
    ]
    assert answer["toolCalls"] == [] and answer["text"].startswith(TEXT)
    assert result["finishReason"] == "stop"
    first, second = upstream.api_requests()
    assert first["path"] == second["path"] == upstream_path(alias, API_PATH[provider])
    # the tool's output went back upstream, in the upstream's own dialect
    assert "temperature_c" in second["raw_body"] and "temperature_c" not in first["raw_body"]


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_ai_sdk_generate_object(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, provider: str, alias: str
) -> None:
    """`generateObject` with a zod schema: the answer parses and validates into the object."""
    result = ok(ai_sdk(keyway, provider, "object", alias))
    person = result["object"]
    assert set(person) == {"name", "age", "tags"}
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert person["tags"] and all(isinstance(tag, str) for tag in person["tags"])
    assert upstream.last_request()["path"] == upstream_path(alias, API_PATH[provider])


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_ai_sdk_conversation_sends_the_answer_back(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, provider: str, alias: str
) -> None:
    """A second turn carries the first answer (`response.messages`), as a chat app sends it;
    the Responses provider with `store: false`, as the README says."""
    result = ok(ai_sdk(keyway, provider, "conversation", alias))
    assert all(text.startswith(TEXT) for text in result["texts"])
    second = upstream.api_requests()[-1]
    assert result["texts"][0] in second["raw_body"]


def test_ai_sdk_responses_store_default_on_an_openai_alias(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream
) -> None:
    """`openai(model)` without `store: false`: the second turn refers to the first answer by
    `item_reference`, which passes to an OpenAI upstream (that stored the answer)."""
    result = ok(ai_sdk(keyway, "responses", "conversation", OPENAI_ALIAS, "--store-default"))
    assert all(text.startswith(TEXT) for text in result["texts"])
    items = upstream.api_requests()[-1]["body"]["input"]
    assert [item.get("type") for item in items if "type" in item] == ["item_reference"]


def test_ai_sdk_responses_store_default_on_an_anthropic_alias(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream
) -> None:
    """The same on an Anthropic deployment: one turn works, but Anthropic stores nothing, so
    the `item_reference` of the second turn is a 400 naming it, before any upstream call."""
    ok(ai_sdk(keyway, "responses", "text", ANTHROPIC_ALIAS, "--store-default"))
    result = ai_sdk(keyway, "responses", "conversation", ANTHROPIC_ALIAS, "--store-default")
    assert not result["ok"]
    error = result["error"]
    assert error["statusCode"] == 400, error
    body = json.loads(error["responseBody"])["error"]
    assert body["code"] == "unsupported_parameter" and body["param"] == "input[1]", body
    assert "store: false" in body["message"]
    assert len(upstream.api_requests()) == 2  # the one-turn run and the first turn only


# -- Claude Code --------------------------------------------------------------------------------


def claude_code(keyway: Proc, case: str, alias: str) -> tuple[dict[str, Any], list[Any]]:
    """One `claude -p` run, and the access lines it left in Keyway's log."""
    since = keyway.log_path.stat().st_size
    result = run_script(keyway, alias, "claude_code.mjs", case)
    return result, access_lines(keyway, since)


def assert_served_or_refused_gracefully(calls: list[tuple[str, str, int, str]], alias: str) -> None:
    """Claude Code calls POST /v1/messages only (telemetry and non-essential traffic off), for
    the alias it was given only, and every call is answered. A 400 is Claude Code trying a
    mid-conversation `system` message, which the upstream model refuses: Claude Code then
    retries without it, and that succeeds."""
    assert calls, "no request reached Keyway"
    assert {(method, route, model) for method, route, _, model in calls} == {
        ("POST", "/v1/messages", alias)
    }, calls
    statuses = [status for _, _, status, _ in calls]
    assert set(statuses) <= {200, 400} and statuses[-1] == 200, calls
    assert statuses.count(200) >= 2, calls  # the tool call, then the answer after its result


@pytest.mark.parametrize("alias", ALIASES)
def test_claude_code_answers_with_its_default_tools(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, alias: str
) -> None:
    """`claude -p "Say hello"` with every default tool offered: the fake calls the first one,
    Claude Code refuses or runs it and sends the result back, and prints the final answer."""
    result, calls = claude_code(keyway, "text", alias)
    assert result["ok"], result
    assert result["result"].startswith(TEXT)
    assert_served_or_refused_gracefully(calls, alias)
    last = upstream.api_requests()[-1]
    assert last["path"] == upstream_path(alias, "/v1/chat/completions")
    assert last["body"]["stream"] is True  # Claude Code always streams
    assert tool_results(last["body"]), "the tool result did not reach the upstream"


@pytest.mark.parametrize("alias", ALIASES)
def test_claude_code_tool_loop_streams_events(
    js_clients: Path, keyway: Proc, upstream: FakeUpstream, alias: str
) -> None:
    """`--tools Read --output-format stream-json --verbose`: the model asks for Read, Claude
    Code runs it (the fake's arguments may make it an error result) and sends the result
    back, the model answers; every step shows in the event stream."""
    result, calls = claude_code(keyway, "tools", alias)
    assert result["ok"], result
    assert result["initTools"] == ["Read"] and result["initModel"] == alias
    [use] = result["toolUses"]
    assert use["name"] == "Read" and isinstance(use["input"]["file_path"], str), use
    [tool_result] = result["toolResults"]
    assert tool_result["toolUseId"] == use["id"] and tool_result["content"]
    assert result["texts"][-1].startswith(TEXT) and result["result"].startswith(TEXT)
    assert result["numTurns"] == 2
    assert_served_or_refused_gracefully(calls, alias)
    # the last upstream request carries the call as Claude Code received it, and its result
    last = upstream.api_requests()[-1]["body"]
    assert tool_results(last) == [tool_result["content"]]
    if alias == ANTHROPIC_ALIAS:
        [echoed] = [b for b in last["messages"][-2]["content"] if b["type"] == "tool_use"]
        assert (echoed["id"], echoed["input"]) == (use["id"], use["input"])
    else:
        [echoed] = last["messages"][-2]["tool_calls"]
        assert echoed["id"] == use["id"]
        assert json.loads(echoed["function"]["arguments"]) == use["input"]
