"""Schemathesis fuzzes the admin and the public API of a real gateway: no request gets a 500.

The admin API is fuzzed from the OpenAPI document the gateway serves (/docs/openapi.json), the
public API (its /v1 paths) from gateway/apidocs/openapi-public.yaml, the file /docs serves, each
against its own gateway process and Redis prefix.
Schemathesis runs its examples, coverage and fuzzing phases in positive and negative mode with a
fixed seed and no example database, so a CI run is reproducible (about 2,900 requests, ~45 s).

What fails a case:
- a 500, or any 5xx whose body is not the documented error object of that API (502/503/504
  with the right body are answers a gateway may give; the fake upstream here does not fail);
- a 503 saying Redis is unavailable (Redis is up: a script refused what the request carried);
- a 401 although the request carried a valid key (the fuzzer must get past authentication);
- on the public API: a status the spec does not list, an error body not in the dialect's shape
  (OpenAI on /v1/chat|completions|embeddings|models|responses, Anthropic on /v1/messages* and on
  /v1/models* with an anthropic-version header), or anything but 405 for a method the route
  does not have.

To reach past the 404s the admin document gets examples naming objects of the test config (the
examples phase sends each operation once with them) and path parameters name those objects half
of the time; the deletes run last. `test_fuzzers_reached_the_handlers` then checks from the
tally that every operation of both APIs answered 2xx at least once.
"""

from __future__ import annotations

import os
import secrets
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, HookContext

from tests.harness import ROOT, FakeControl, Proc, make_config, start_gateway
from tests.integration.test_admin_replicas import control_env

PUBLIC_SPEC = ROOT / "gateway" / "apidocs" / "openapi-public.yaml"
ADMIN_KEY = "fuzz-admin-key-" + secrets.token_hex(8)
CLIENT_KEY = "sk-client-a"  # make_config's client that may use every model
MAX_EXAMPLES = 25
SEED = 20_261_123
ALIASES = ["gpt-4o-mini", "renamed", "text-embedding-3-small", "claude-haiku"]

# objects of make_config, for admin path parameters of these names
KNOWN_IDS: dict[str, list[str]] = {
    "name": ["fake", "fake-anthropic"],
    "provider": ["fake", "fake-anthropic"],
    "client_id": ["team-a", "team-b"],
    "alias": ALIASES,
}
KNOWN_KEYS = [("fake", "k1"), ("fake", "k2"), ("fake", "k3"), ("fake-anthropic", "a1")]
# one valid request per admin operation: path parameters, and the body where there is one
EXAMPLE_IDS = {"name": "fake", "provider": "fake", "key_id": "k1", "client_id": "team-b",
               "alias": "gpt-4o-mini"}  # fmt: skip
EXAMPLE_PATHS: dict[str, dict[str, str]] = {
    "PUT /admin/models/{alias}": {"alias": "example-alias"},
    "DELETE /admin/models/{alias}": {"alias": "example-alias"},
    "DELETE /admin/providers/{name}": {"name": "example-provider"},
    "DELETE /admin/providers/{provider}/keys/{key_id}": {"key_id": "example-key"},
}
EXAMPLE_BODIES: dict[str, Any] = {
    "POST /admin/providers": {"name": "example-provider", "kind": "openai-compatible",
                              "base_url": "http://127.0.0.1:9/v1"},
    "PATCH /admin/providers/{name}": {"timeout_s": 30},
    "POST /admin/providers/{provider}/keys": {"id": "example-key", "secret": "sk-example-0001",
                                              "rpm": 100},
    "PATCH /admin/providers/{provider}/keys/{key_id}": {"rpm": 50, "weight": 2},
    "POST /admin/providers/{provider}/keys/{key_id}/disable": {"reason": "fuzz example"},
    "PUT /admin/providers/{provider}/keys/{key_id}/secret": {"secret": "sk-example-0002"},
    "PUT /admin/models/{alias}": {"deployments": [{"provider": "fake", "model": "gpt-4o"}]},
    "POST /admin/clients": {"id": "example-client", "rpm": 10, "models": ["*"]},
    "PATCH /admin/clients/{client_id}": {"rpm": 20, "models": ["gpt-4o-mini"]},
}  # fmt: skip

# what a 503 says when Redis cannot answer (admin API, public API)
REDIS_DOWN = (b"shared state (Redis) is unavailable", b"routing state is unavailable")

# (api, operation) -> the statuses it answered, for the coverage test at the end
TALLY: dict[tuple[str, str], Counter[int]] = {}


class OpenAIErrorBody(msgspec.Struct):
    class Detail(msgspec.Struct):
        message: str
        type: str
        param: str | None = None
        code: Any = None

    error: Detail


class AnthropicErrorBody(msgspec.Struct):
    class Detail(msgspec.Struct):
        type: str
        message: str

    type: str
    error: Detail


class AdminErrorBody(msgspec.Struct):
    status_code: int
    detail: str


def redis_prefix(api: str) -> dict[str, str]:
    """A key prefix of this run's own: the admin fuzzer must not delete other tests' objects."""
    return {"KEYWAY_REDIS_PREFIX": f"fuzz-{api}-{os.getpid()}-{secrets.token_hex(4)}"}


def fuzz_config(base_url: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            "cache": {"enabled": False},  # no state between runs: CI replays nothing old
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                "with-security-parameters": False,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "output": {"sanitization": {"enabled": False}},
            "request-timeout": 30,
        }
    )


def well_formed_error(case: Case[Any], content: bytes) -> bool:
    """The body is the error object of the API `case.path` belongs to, in its dialect."""
    path = case.path
    anthropic_version = any(name.lower() == "anthropic-version" for name in case.headers or {})
    shape: type[msgspec.Struct] = (
        AdminErrorBody
        if path.startswith("/admin")
        else AnthropicErrorBody
        if path.startswith("/v1/messages") or (path.startswith("/v1/models") and anthropic_version)
        else OpenAIErrorBody
    )
    try:
        body = msgspec.json.decode(content, type=shape)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return not isinstance(body, AnthropicErrorBody) or body.type == "error"


def repro(case: Case[Any], headers: dict[str, str], status: int, content: bytes) -> str:
    return f"{status} {content[:500]!r}\n{case.as_curl_command(headers)}"


def check(api: str, case: Case[Any], headers: dict[str, str], status: int, content: bytes) -> None:
    """What every answer of both APIs must satisfy."""
    TALLY.setdefault((api, case.operation.label), Counter())[status] += 1
    where = repro(case, headers, status, content)
    assert status != 500, f"500 Internal Server Error\n{where}"
    if status >= 500:
        assert well_formed_error(case, content), f"a {status} not in the error shape\n{where}"
        # Redis is up all along: a request that makes Keyway say otherwise broke a script
        assert not any(m in content for m in REDIS_DOWN), f"blamed on Redis\n{where}"
    if headers.get("authorization") in (f"Bearer {ADMIN_KEY}", f"Bearer {CLIENT_KEY}"):
        assert status != 401, f"a valid key was refused\n{where}"


# -- the admin API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin_gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    env = control_env(redis_prefix("admin"), KEYWAY_ADMIN_KEYS=ADMIN_KEY)
    gw = start_gateway(logs, make_config(fake_proc.url), redis_url=redis_url, env=env)
    yield gw
    gw.stop()


def with_examples(document: dict[str, Any]) -> dict[str, Any]:
    """The admin document, each operation given one valid request as its example."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            ids = {**EXAMPLE_IDS, **EXAMPLE_PATHS.get(label, {})}
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    parameter["example"] = ids[parameter["name"]]
            if label in EXAMPLE_BODIES:
                body = operation["requestBody"]["content"]["application/json"]
                body["example"] = EXAMPLE_BODIES[label]
    return document


@pytest.fixture(scope="module")
def admin_schema(admin_gateway: Proc) -> Any:
    response = httpx.get(f"{admin_gateway.url}/docs/openapi.json", timeout=10)
    response.raise_for_status()
    document = with_examples(msgspec.json.decode(response.content))
    schema = schemathesis.openapi.from_dict(document, config=fuzz_config(admin_gateway.url))

    @schema.hook
    def flatmap_path_parameters(
        context: HookContext, path_parameters: dict[str, Any] | None
    ) -> st.SearchStrategy[dict[str, Any] | None]:
        """Half of the time the path names objects that exist (until the fuzzer deletes them)."""
        if not path_parameters:
            return st.just(path_parameters)
        original = dict(path_parameters)
        if "key_id" in original:
            pairs = st.sampled_from(KNOWN_KEYS)
            existing = pairs.map(lambda p: {**original, "provider": p[0], "key_id": p[1]})
        else:
            known = {k: st.sampled_from(KNOWN_IDS[k]) for k in original if k in KNOWN_IDS}
            existing = st.fixed_dictionaries(known).map(lambda ids: {**original, **ids})
        return st.one_of(st.just(path_parameters), existing)

    return schema


admin_api = schemathesis.pytest.from_fixture("admin_schema")


def test_admin_document_describes_bodies_as_msgspec_checks_them(admin_gateway: Proc) -> None:
    """What Litestar's generator leaves out is there: refused extra fields, constraints inside
    optional fields and on list items (without them the fuzzer's valid bodies got 400s)."""
    as_json = httpx.get(f"{admin_gateway.url}/docs/openapi.json", timeout=10)
    as_yaml = httpx.get(f"{admin_gateway.url}/docs/openapi.yaml", timeout=10)
    assert as_json.status_code == as_yaml.status_code == 200
    for document in (msgspec.json.decode(as_json.content), msgspec.yaml.decode(as_yaml.content)):
        schemas = document["components"]["schemas"]
        assert schemas["ClientCreate"]["additionalProperties"] is False
        assert schemas["ClientCreate"]["properties"]["models"]["items"]["pattern"]
        assert schemas["ProviderPatch"]["properties"]["timeout_s"]["exclusiveMinimum"] == 0
        assert schemas["ProviderCreate"]["properties"]["base_url"]["pattern"].startswith("^https?")
        assert "KeyView" in schemas  # the response bodies stay Litestar's
    assert httpx.get(f"{admin_gateway.url}/docs", timeout=10).status_code == 200


def call_admin(case: Case[Any], gateway: Proc) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    response = case.call(base_url=gateway.url, headers=headers)
    check("admin", case, headers, response.status_code, response.content)


@admin_api.exclude(method="DELETE").parametrize()
def test_admin_api_never_answers_500(case: Case[Any], admin_gateway: Proc) -> None:
    call_admin(case, admin_gateway)


@admin_api.include(method="DELETE").parametrize()
def test_admin_deletes_never_answer_500(case: Case[Any], admin_gateway: Proc) -> None:
    call_admin(case, admin_gateway)


# -- the public API ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_gateway(logs: Path, fake_proc: Proc, redis_url: str) -> Iterator[Proc]:
    FakeControl(fake_proc.url).reset()  # no fault an earlier test left behind
    env = control_env(redis_prefix("public"))
    gw = start_gateway(logs, make_config(fake_proc.url), redis_url=redis_url, env=env)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def public_schema(public_gateway: Proc) -> Any:
    document = msgspec.yaml.decode(PUBLIC_SPEC.read_bytes())
    # the API of the SDKs only: the probes and /metrics answer in their own formats, not a dialect's
    document["paths"] = {p: item for p, item in document["paths"].items() if p.startswith("/v1/")}
    # the spec says "a model alias"; these are the aliases this gateway routes
    document["components"]["schemas"]["ModelAlias"] = {"type": "string", "enum": ALIASES}
    return schemathesis.openapi.from_dict(document, config=fuzz_config(public_gateway.url))


public_api = schemathesis.pytest.from_fixture("public_schema")
# how a request authenticates: mostly with a valid client key, sometimes none or a wrong one
CREDENTIALS: dict[str, dict[str, str]] = {
    "bearer": {"authorization": f"Bearer {CLIENT_KEY}"},
    "x-api-key": {"x-api-key": CLIENT_KEY},
    "none": {},
    "wrong": {"authorization": "Bearer sk-not-a-client-key"},
}
_CHOICES = ["bearer", "x-api-key", "bearer", "x-api-key", "bearer", "none", "wrong"]


def credentials_for(case: Case[Any]) -> str:
    """Chosen by a digest of the case, not drawn: `hypothesis.given` would switch off the
    coverage phase, and the digest is as reproducible as the seed."""
    # path parameters and headers too: a GET with no query or body differs only in those
    digest = zlib.crc32(
        repr(
            (case.method, case.path, case.path_parameters, case.headers, case.query, case.body)
        ).encode()
    )
    return _CHOICES[digest % len(_CHOICES)]


@public_api.parametrize()
def test_public_api_never_answers_500(case: Case[Any], public_gateway: Proc) -> None:
    credentials = credentials_for(case)
    headers = CREDENTIALS[credentials]
    response = case.call(base_url=public_gateway.url, headers=headers)
    status, content = response.status_code, response.content
    check("public", case, headers, status, content)
    where = repro(case, headers, status, content)
    if credentials == "x-api-key":
        assert status != 401, f"a valid x-api-key was refused\n{where}"
    if case.method.upper() != case.operation.method.upper():
        assert status == 405, f"{case.method} on {case.path} is not 405\n{where}"
    documented = case.operation.definition.raw["responses"]
    assert str(status) in documented, f"status {status} is not in the spec\n{where}"
    if status >= 400:
        assert well_formed_error(case, content), f"error body not in the spec\n{where}"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_huge_max_tokens_is_not_blamed_on_redis(public_gateway: Proc, path: str) -> None:
    """Beyond the spec's maximum, which the fuzzer keeps to: the answer is the client's (4xx) or
    the upstream's, never a Redis outage."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2**63 - 1}  # fmt: skip
    response = httpx.post(f"{public_gateway.url}{path}", json=body, timeout=30,
                          headers={"x-api-key": CLIENT_KEY})  # fmt: skip
    assert response.status_code == 400, response.text


# -- did the fuzzers get anywhere? ------------------------------------------------------------


def test_fuzzers_reached_the_handlers() -> None:
    """Every operation of both APIs was called, and answered 2xx at least once."""
    if not TALLY:
        pytest.skip("runs after the fuzz tests above, and reads their tally")
    lines = [f"{api:6} {label:55} {dict(sorted(c.items()))}"
             for (api, label), c in sorted(TALLY.items())]  # fmt: skip
    print("\n".join(["", *lines, f"requests: {sum(sum(c.values()) for c in TALLY.values())}"]))
    public = {label for api, label in TALLY if api == "public"}
    assert public == {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/embeddings",
        "POST /v1/responses",
        "GET /v1/models",
        "GET /v1/models/{model_id}",
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
    }
    assert len([api for api, _ in TALLY if api == "admin"]) >= 27, lines
    # GET /v1/models takes no input: the fuzzer makes only a handful of cases for it, mostly
    # wrong methods (405) and bad keys (401); its 200 is covered by tests/e2e/test_openai_sdk.py
    never = [f"{api} {label}: {dict(c)}" for (api, label), c in sorted(TALLY.items())
             if not any(200 <= status < 300 for status in c)
             and (api, label) != ("public", "GET /v1/models")]  # fmt: skip
    assert not never, "never answered 2xx:\n" + "\n".join(never)
