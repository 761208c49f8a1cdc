"""The admin API across two replicas on one Redis: changes made on A reach B through pub/sub.

The replicas poll for config changes only every 60 s here, so anything B learns within the
tests' 10 s deadline it learned from the invalidation message.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import FakeControl, Proc, make_config, start_gateway

ADMIN_KEY = "admin-key-for-tests-" + secrets.token_hex(8)
CLIENT_KEY_SECRET = "integration-hmac-secret-" + secrets.token_hex(8)
MASTER = base64.b64encode(os.urandom(32)).decode()
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def control_env(prefix: dict[str, str], **extra: str) -> dict[str, str]:
    return {**prefix, "KEYWAY_ADMIN_KEYS": ADMIN_KEY, "KEYWAY_CLIENT_KEY_SECRET": CLIENT_KEY_SECRET,
            "KEYWAY_MASTER_KEY": f"m1:{MASTER}", "KEYWAY_CONFIG_POLL_S": "60", **extra}  # fmt: skip


class Admin:
    """An admin API client for one replica."""

    def __init__(self, proc: Proc, key: str = ADMIN_KEY) -> None:
        self.proc = proc
        self.http = httpx.Client(
            base_url=proc.url, headers={"authorization": f"Bearer {key}"}, timeout=10
        )

    def __getattr__(self, method: str) -> Callable[..., httpx.Response]:
        return getattr(self.http, method)  # type: ignore[no-any-return]

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json() if r.content else None

    def version(self) -> int:
        return int(self.ok("GET", "/admin/config")["version"])

    def close(self) -> None:
        self.http.close()


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    """Poll for an eventual condition; the deadline only bounds a hang."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline_s}s: {what}")
        time.sleep(0.02)


def caught_up(b: Admin, a: Admin) -> None:
    target = a.version()
    wait_until(lambda: b.version() >= target, f"replica B applies config version {target}")


def chat(proc: Proc, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{proc.url}/v1/chat/completions",
        json={**CHAT, **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


@pytest.fixture()
def replicas(
    logs: Path, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> Iterator[tuple[Admin, Admin]]:
    config = make_config(fake_proc.url, keys=2)
    with contextlib.ExitStack() as stack:  # on teardown, or if B does not start: A stops too
        a = stack.enter_context(
            start_gateway(logs, config, redis_url=redis_url, env=control_env(prefix))
        )
        b = stack.enter_context(
            start_gateway(logs, config, redis_url=redis_url, env=control_env(prefix))
        )
        admins = (Admin(a), Admin(b))
        for admin in admins:
            stack.callback(admin.close)  # each client closes before its process stops
        yield admins


def test_a_key_added_on_a_is_used_by_b_on_its_next_request(
    replicas: tuple[Admin, Admin], fake: FakeControl
) -> None:
    a, b = replicas
    canary = "sk-canary-" + secrets.token_hex(12)
    added = a.ok("POST", "/admin/providers/fake/keys", 201, json={"id": "kc", "secret": canary})
    assert added["secret"] == "..." + canary[-4:] and added["origin"] == "runtime"
    for key_id in ("k1", "k2"):
        disabled = a.ok(
            "POST", f"/admin/providers/fake/keys/{key_id}/disable", json={"reason": "test"}
        )
        assert disabled["disabled"] == "test"
    caught_up(b, a)

    r = chat(b.proc, "sk-client-a")
    assert r.status_code == 200, r.text
    assert r.headers["x-keyway-key"] == "kc"
    assert fake.requests_by_key() == {canary[-8:]: 1}
    listed = {k["id"]: k for k in b.ok("GET", "/admin/providers/fake/keys")}
    assert listed["kc"]["secret"] == "..." + canary[-4:]
    assert listed["k1"]["disabled"] == "test"

    b.ok("POST", "/admin/providers/fake/keys/k1/enable")
    detail = a.ok("GET", "/admin/providers/fake/keys/k1")
    assert detail["state"]["status"] == "available" and detail["key"]["disabled"] is None
    b.ok("POST", "/admin/providers/fake/keys/kc/disable")
    r = chat(a.proc, "sk-client-a")
    assert r.status_code == 200 and r.headers["x-keyway-key"] == "k1"


def test_a_client_key_created_on_a_works_on_b_and_a_revocation_reaches_both(
    replicas: tuple[Admin, Admin], fake: FakeControl
) -> None:
    a, b = replicas
    created = a.ok("POST", "/admin/clients", 201,
                   json={"id": "team-new", "rpm": 100, "models": ["gpt-4o-mini"]})  # fmt: skip
    key = created["key"]
    assert key.startswith("kw-") and len(key) == 35
    assert created["client"]["key_hint"] == "..." + key[-4:]
    assert chat(a.proc, key).status_code == 200  # live where it was made, at once
    caught_up(b, a)
    assert chat(b.proc, key).status_code == 200
    assert chat(b.proc, key, model="renamed").status_code == 403
    listing = b.get("/admin/clients")
    assert key not in listing.text and "team-new" in listing.text

    a.ok("POST", "/admin/clients/team-new/revoke")
    assert chat(a.proc, key).status_code == 401
    caught_up(b, a)
    assert chat(b.proc, key).status_code == 401

    # a client key the config file defines is revoked the same way
    b.ok("POST", "/admin/clients/team-a/revoke")
    assert chat(b.proc, "sk-client-a").status_code == 401
    caught_up(a, b)
    assert chat(a.proc, "sk-client-a").status_code == 401
    assert a.get("/admin/clients/team-a").status_code == 404


def test_enable_clears_the_disable_an_upstream_401_caused(
    replicas: tuple[Admin, Admin], fake: FakeControl
) -> None:
    a, b = replicas
    fake.fault("sk-fake-test-0001", "401")

    def k1_disabled() -> bool:
        assert chat(a.proc, "sk-client-a").status_code == 200  # k2 serves what k1 refuses
        return b.ok("GET", "/admin/providers/fake/keys/k1")["state"]["status"] == "disabled"

    wait_until(k1_disabled, "an upstream 401 disables k1")
    detail = b.ok("GET", "/admin/providers/fake/keys/k1")
    assert "401" in detail["key"]["disabled"]
    fake.clear_faults()
    b.ok("POST", "/admin/providers/fake/keys/k1/enable")
    a.ok("POST", "/admin/providers/fake/keys/k2/disable")
    r = chat(b.proc, "sk-client-a")
    assert r.status_code == 200 and r.headers["x-keyway-key"] == "k1"


def test_usage_by_client_key_upstream_key_and_model(
    replicas: tuple[Admin, Admin], fake: FakeControl
) -> None:
    a, b = replicas
    key = a.ok("POST", "/admin/clients", 201, json={"id": "team-usage"})["key"]
    caught_up(b, a)
    for proc in (a.proc, a.proc, a.proc, b.proc, b.proc):
        assert chat(proc, key).status_code == 200

    def client_rows(period: str) -> list[dict[str, Any]]:
        view = a.ok("GET", "/admin/usage/clients/team-usage", params={"period": period, "last": 2})
        rows: list[dict[str, Any]] = view["rows"]
        return rows

    wait_until(lambda: client_rows("hour")[-1]["requests"] == 5, "5 requests in this hour's usage")
    hour = client_rows("hour")[-1]
    assert hour["tokens_in"] > 0 and hour["tokens_out"] > 0 and hour["cost_usd"] > 0
    assert hour["errors"] == 0
    assert client_rows("day")[-1]["requests"] == 5

    def key_requests() -> int:
        return sum(
            b.ok("GET", f"/admin/usage/keys/fake/{k}", params={"period": "hour"})["total"][
                "requests"
            ]
            for k in ("k1", "k2")
        )

    wait_until(lambda: key_requests() == 5, "5 requests over the pool's keys")
    models = {(m["provider"], m["model"]): m for m in b.ok("GET", "/admin/usage/models")}
    assert models[("fake", "gpt-4o-mini")]["total"]["requests"] == 5
    details = [a.ok("GET", f"/admin/providers/fake/keys/{k}") for k in ("k1", "k2")]
    assert sum(d["usage_today"]["requests"] for d in details) == 5
    served = [d for d in details if d["usage_today"]["requests"]]
    assert all(d["state"]["latency_ms"] is not None for d in served)


def test_the_cli_drives_the_admin_api(
    replicas: tuple[Admin, Admin], fake: FakeControl, redis_url: str, prefix: dict[str, str]
) -> None:
    a, b = replicas
    upstream_secret = "sk-cli-upstream-" + secrets.token_hex(8)
    env = {**os.environ, "KEYWAY_ADMIN_URL": a.proc.url, "KEYWAY_ADMIN_KEY": ADMIN_KEY,
           "KW_TEST_UPSTREAM": upstream_secret, "REDIS_URL": redis_url,
           "KEYWAY_MASTER_KEY": f"m1:{MASTER}", **prefix}  # fmt: skip

    def keyway(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "gateway", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    key = keyway("clients", "create", "cli-team", "--rpm", "50", "--models", "gpt-4o-mini",
                 "--max-concurrency", "3").strip()  # fmt: skip
    assert key.startswith("kw-")
    assert "cli-team" in keyway("clients", "list")
    assert a.ok("GET", "/admin/clients/cli-team")["max_concurrency"] == 3
    assert '"max_concurrency": 0' in keyway("clients", "set", "cli-team", "--max-concurrency", "0",
                                            "--json")  # fmt: skip
    keyway("clients", "set", "cli-team", "--max-concurrency", "default")
    assert a.ok("GET", "/admin/clients/cli-team")["max_concurrency"] is None
    added = keyway("keys", "add", "fake", "kcli", "--secret-env", "KW_TEST_UPSTREAM", "--rpm", "5")
    assert "..." + upstream_secret[-4:] in added and upstream_secret not in added
    keyway("keys", "add", "fake", "kstdin", stdin="sk-from-stdin-0000000001\n")
    listed = keyway("keys", "list", "fake")
    assert "kcli" in listed and "kstdin" in listed and upstream_secret not in listed
    keyway("keys", "disable", "fake", "k1", "--reason", "maintenance")
    keyway("keys", "disable", "fake", "k2")
    keyway("keys", "disable", "fake", "kstdin")
    caught_up(b, a)
    r = chat(b.proc, key)
    assert r.status_code == 200 and r.headers["x-keyway-key"] == "kcli"
    assert '"status": "available"' in keyway("keys", "show", "fake", "kcli")
    keyway("keys", "enable", "fake", "k1")
    wait_until(lambda: "total" in keyway("usage", "--client", "cli-team", "--period", "hour")
               and a.ok("GET", "/admin/usage/clients/cli-team")["total"]["requests"] == 1,
               "the CLI shows the client's request")  # fmt: skip
    status = keyway("secrets", "status")
    assert '"m1": 2' in status
    keyway("clients", "revoke", "cli-team")
    assert chat(a.proc, key).status_code == 401
    failed = subprocess.run([sys.executable, "-m", "gateway", "clients", "create", "cli-team"],
                            env={**env, "KEYWAY_ADMIN_KEY": "sk-client-a"}, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert failed.returncode == 1 and "403" in failed.stderr


def test_canary_secrets_never_reach_the_logs_redis_or_metrics(
    replicas: tuple[Admin, Admin], fake: FakeControl, redis_url: str
) -> None:
    a, b = replicas
    canary = "sk-canary-" + secrets.token_hex(12)
    canary2 = "sk-canary-" + secrets.token_hex(12)
    a.ok("POST", "/admin/providers/fake/keys", 201, json={"id": "kc", "secret": canary})
    client_key = a.ok("POST", "/admin/clients", 201, json={"id": "team-canary"})["key"]
    for key_id in ("k1", "k2"):
        a.ok("POST", f"/admin/providers/fake/keys/{key_id}/disable")
    caught_up(b, a)
    fake.fault(canary, "500", count=1)  # an upstream error on the canary key is logged
    for proc in (a.proc, b.proc):
        assert chat(proc, client_key).status_code in (200, 502)
        assert chat(proc, client_key).status_code == 200
        with httpx.stream("POST", f"{proc.url}/v1/chat/completions", timeout=30,
                          json={**CHAT, "stream": True},
                          headers={"authorization": f"Bearer {client_key}"}) as streamed:  # fmt: skip
            assert streamed.status_code == 200
            assert b"[DONE]" in b"".join(streamed.iter_bytes())
    b.ok("PUT", "/admin/providers/fake/keys/kc/secret", json={"secret": canary2})
    caught_up(a, b)
    assert chat(a.proc, client_key).status_code == 200
    assert fake.requests_by_key().get(canary2[-8:], 0) >= 1
    # the client key presented in a wrong place is not echoed either
    assert (
        b.get("/admin/config", headers={"authorization": f"Bearer {client_key}"}).status_code == 403
    )

    needles = [canary, canary2, client_key, ADMIN_KEY]
    logs = b"".join(admin.proc.log_path.read_bytes() for admin in replicas)
    assert b"admin change: add key fake/kc" in logs  # the logs did record this flow
    for needle in needles:
        assert needle.encode() not in logs

    for admin in replicas:
        metrics = httpx.get(f"{admin.proc.url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "keyway" in metrics.text
        for needle in needles:
            assert needle not in metrics.text

    import redis

    r = redis.Redis.from_url(redis_url)
    compression = r.config_get("rdbcompression")["rdbcompression"]
    r.config_set("rdbcompression", "no")  # LZF could hide a plaintext inside a DUMP
    try:
        control = "sk-control-" + secrets.token_hex(12)
        r.hset("control:{canary-check}", "f", control)
        assert control.encode() in (r.dump("control:{canary-check}") or b"")
        r.delete("control:{canary-check}")
        dumped = [r.dump(name) or b"" for name in r.scan_iter(count=1000)]
    finally:
        r.config_set("rdbcompression", compression)
        r.close()
    assert len(dumped) > 10
    for needle in needles:
        assert not any(needle.encode() in blob for blob in dumped), "plaintext secret in Redis"
