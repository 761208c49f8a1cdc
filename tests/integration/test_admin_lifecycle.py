"""The admin API's guard and limits, master-key rotation under traffic, restarts vs the file."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.harness import FakeControl, Proc, make_config, start_gateway
from tests.integration.test_admin_replicas import (
    ADMIN_KEY,
    Admin,
    caught_up,
    chat,
    control_env,
)

SECURITY_HEADERS = ("cache-control", "x-content-type-options", "x-frame-options",
                    "content-security-policy", "referrer-policy")  # fmt: skip


def test_only_admin_keys_pass_bad_input_gets_400_and_failures_are_limited(
    logs: Path, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    gw = start_gateway(
        logs, make_config(fake_proc.url), redis_url=redis_url, env=control_env(prefix)
    )
    admin = Admin(gw)
    try:
        anonymous = httpx.get(f"{gw.url}/admin/providers", timeout=10)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        as_client = httpx.get(f"{gw.url}/admin/providers", timeout=10,
                              headers={"authorization": "Bearer sk-client-a"})  # fmt: skip
        assert as_client.status_code == 403
        wrong = "wrong-admin-key-" + secrets.token_hex(8)
        assert httpx.get(f"{gw.url}/admin/clients", headers={"x-api-key": wrong}).status_code == 401
        for response in (anonymous, as_client, admin.get("/admin/providers")):
            assert all(h in response.headers for h in SECURITY_HEADERS), response.headers
            assert response.headers["cache-control"] == "no-store"

        bad = [
            ("POST", "/admin/clients", {"id": "x", "rpm": 5, "color": "red"}, 400, "unknown field"),
            ("POST", "/admin/clients", {"id": "x", "rpm": "many"}, 400, "Expected `int"),
            ("POST", "/admin/clients", {"id": "x", "rpm": 0}, 400, ">= 1"),
            ("POST", "/admin/clients", {"id": "bad id!"}, 400, "regex"),
            ("POST", "/admin/clients", {"id": "x", "budget_daily_usd": 1e300}, 400, "<="),
            ("POST", "/admin/providers/fake/keys", {"id": "kx", "secret": "has space in it"}, 400, "regex"),
            ("POST", "/admin/providers/fake/keys", {"id": "kx", "secret": "sk-a\\r\\nX: y"}, 400, "regex"),
            ("POST", "/admin/providers", {"name": "evil", "kind": "openai",
                                          "base_url": "http://169.254.169.254/latest"}, 400, "metadata"),
            ("POST", "/admin/providers", {"name": "evil", "kind": "gopher", "base_url": "http://x.y"}, 400, "kind"),
            ("PUT", "/admin/models/new", {"deployments": []}, 400, "length"),
            ("PUT", "/admin/models/new", {"deployments": [{"provider": "nope", "model": "m"}]}, 400, "unknown provider"),
            ("PUT", "/admin/models/new", {"deployments": [{"provider": "fake", "model": "m"}],
                                          "fallbacks": ["missing"]}, 400, "unknown model alias"),
            ("DELETE", "/admin/providers/fake", None, 409, "used by model aliases"),
            ("POST", "/admin/providers/fake/keys", {"id": "k1", "secret": "sk-duplicate-1"}, 409, "already exists"),
            ("GET", "/admin/providers/nope/keys", None, 404, "does not exist"),
            ("GET", "/admin/providers/fake/keys/%7Bevil%7D", None, 404, "does not exist"),
            ("PATCH", "/admin/clients/nobody", {"rpm": 3}, 404, "does not exist"),
            ("GET", "/admin/usage/models?period=week", None, 400, "period"),
            ("GET", "/admin/usage/models?last=0", None, 400, "last"),
        ]  # fmt: skip
        for method, path, body, status, fragment in bad:
            r = (
                admin.request(method, path, json=body)
                if body is not None
                else admin.request(method, path)
            )
            assert r.status_code == status, (method, path, r.status_code, r.text)
            assert fragment in r.text, (path, r.text)
        raw = admin.post("/admin/clients", content=b'{"id": "x", "rpm": ',
                         headers={"content-type": "application/json"})  # fmt: skip
        assert raw.status_code == 400
        deep = admin.post("/admin/clients", content=b"[" * 5000 + b"]" * 5000,
                          headers={"content-type": "application/json"})  # fmt: skip
        assert deep.status_code == 400
        huge = admin.post("/admin/clients", json={"id": "x", "models": ["a" * 200] * 500})
        assert huge.status_code == 413

        spec = httpx.get(f"{gw.url}/docs/openapi.json", timeout=10).json()
        assert (
            "/admin/clients" in spec["paths"]
            and "AdminKey" in spec["components"]["securitySchemes"]
        )

        log_text = gw.log_path.read_text()
        assert "admin auth failed: client key from 127.0.0.1 on /admin/providers" in log_text
        assert "admin auth failed: unknown key from 127.0.0.1 on /admin/clients" in log_text
        assert wrong not in log_text and ADMIN_KEY not in log_text

        # failures from one address are limited; the right key is never refused for them
        statuses = [httpx.get(f"{gw.url}/admin/config", headers={"x-api-key": wrong})
                    for _ in range(12)]  # fmt: skip
        assert 429 in [r.status_code for r in statuses]
        assert {r.status_code for r in statuses} <= {401, 429}
        assert int(statuses[-1].headers["retry-after"]) >= 1
        assert admin.get("/admin/config").status_code == 200
        assert "admin auth refused: too many failures from 127.0.0.1" in gw.log_path.read_text()
        assert chat(gw, "sk-client-a").status_code == 200  # the public API is not affected
    finally:
        admin.close()
        gw.stop()


def _traffic(urls: list[str], statuses: list[int], stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as http:
        i = 0
        while not stop.is_set():
            r = http.post(f"{urls[i % len(urls)]}/v1/chat/completions",
                          json={"model": "gpt-4o-mini", "max_tokens": 4,
                                "messages": [{"role": "user", "content": "hi"}]},
                          headers={"authorization": "Bearer sk-client-a"})  # fmt: skip
            statuses.append(r.status_code)
            i += 1


def test_master_key_rotation_under_traffic_loses_no_request(
    procs: contextlib.ExitStack,
    logs: Path,
    fake_proc: Proc,
    fake: FakeControl,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    old, new = base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode()
    config = make_config(fake_proc.url, keys=2)
    seeding = procs.enter_context(
        start_gateway(
            logs,
            config,
            redis_url=redis_url,
            env=control_env(prefix, KEYWAY_MASTER_KEY=f"m1:{old}"),
        )
    )
    admin = Admin(seeding)
    for i in range(3):
        admin.ok("POST", "/admin/providers/fake/keys", 201,
                 json={"id": f"r{i}", "secret": f"sk-rotate-{i:02d}-{secrets.token_hex(6)}"})  # fmt: skip
    for key_id in ("k1", "k2"):
        admin.ok("POST", f"/admin/providers/fake/keys/{key_id}/disable")
    admin.close()
    seeding.stop()

    both = control_env(prefix, KEYWAY_MASTER_KEY=f"m2:{new},m1:{old}")
    a = procs.enter_context(start_gateway(logs, config, redis_url=redis_url, env=both))
    b = procs.enter_context(start_gateway(logs, config, redis_url=redis_url, env=both))
    admin_a, admin_b = Admin(a), Admin(b)
    statuses: list[int] = []
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=([a.url, b.url], statuses, stop))
    try:
        traffic.start()
        while len(statuses) < 10:  # traffic flows before the rotation starts
            assert traffic.is_alive()
            threading.Event().wait(0.01)
        cli_env = {**os.environ, **both, "REDIS_URL": redis_url}
        rotate = subprocess.Popen([sys.executable, "-m", "gateway", "secrets", "rotate"], env=cli_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        procs.callback(rotate.kill)  # a no-op once it has exited
        admin_b.ok("PATCH", "/admin/providers/fake/keys/r1", json={"rpm": 1000})
        out, err = rotate.communicate(timeout=60)
        assert rotate.returncode == 0, (out, err)
        assert "resealed under m2: 3" in out
        during = len(statuses)
        admin_a.ok("PATCH", "/admin/providers/fake/keys/r2", json={"weight": 2})  # replicas reload
        caught_up(admin_b, admin_a)
        while len(statuses) < during + 20:
            assert traffic.is_alive()
            threading.Event().wait(0.01)
    finally:
        stop.set()
        traffic.join(timeout=30)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    status = admin_a.ok("GET", "/admin/secrets")
    assert status["sealed_by_key_id"] == {"m2": 3}
    assert status["removable_key_ids"] == ["m1"]
    listed = {k["id"]: k for k in admin_a.ok("GET", "/admin/providers/fake/keys")}
    assert listed["r1"]["rpm"] == 1000 and listed["r2"]["weight"] == 2
    for admin in (admin_a, admin_b):
        admin.close()
        admin.proc.stop()

    only_new = procs.enter_context(
        start_gateway(
            logs,
            config,
            redis_url=redis_url,
            env=control_env(prefix, KEYWAY_MASTER_KEY=f"m2:{new}"),
        )
    )
    admin_new = Admin(only_new)
    try:
        assert admin_new.ok("GET", "/admin/config")["problems"] == []
        r = chat(only_new, "sk-client-a")
        assert r.status_code == 200 and r.headers["x-keyway-key"] in ("r0", "r1", "r2")
    finally:
        admin_new.close()
        only_new.stop()


def test_a_restart_keeps_runtime_changes_unless_the_file_is_told_to_win(
    procs: contextlib.ExitStack,
    logs: Path,
    fake_proc: Proc,
    fake: FakeControl,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    config = make_config(fake_proc.url, keys=2)
    first = procs.enter_context(
        start_gateway(logs, config, redis_url=redis_url, env=control_env(prefix))
    )
    admin = Admin(first)
    admin.ok("POST", "/admin/clients/team-b/revoke")
    admin.ok("PATCH", "/admin/providers/fake/keys/k1", json={"rpm": 7})
    extra = admin.ok("POST", "/admin/clients", 201, json={"id": "team-x"})["key"]
    admin.close()
    first.stop()

    def embed(proc: Proc) -> httpx.Response:
        """team-b's file key may only call the embeddings alias."""
        return httpx.post(f"{proc.url}/v1/embeddings", timeout=30,
                          json={"model": "text-embedding-3-small", "input": "hi"},
                          headers={"authorization": "Bearer sk-client-b"})  # fmt: skip

    restarted = procs.enter_context(
        start_gateway(logs, config, redis_url=redis_url, env=control_env(prefix))
    )
    admin = Admin(restarted)
    try:
        assert embed(restarted).status_code == 401
        assert chat(restarted, extra).status_code == 200
        keys = {k["id"]: k for k in admin.ok("GET", "/admin/providers/fake/keys")}
        assert keys["k1"]["rpm"] == 7 and keys["k1"]["origin"] == "file+runtime"
    finally:
        admin.close()
        restarted.stop()

    overwritten = procs.enter_context(
        start_gateway(
            logs, config, redis_url=redis_url, env=control_env(prefix, KEYWAY_CONFIG_OVERWRITE="1")
        )
    )
    admin = Admin(overwritten)
    try:
        assert embed(overwritten).status_code == 200
        assert chat(overwritten, extra).status_code == 200  # runtime-only objects stay
        keys = {k["id"]: k for k in admin.ok("GET", "/admin/providers/fake/keys")}
        assert keys["k1"]["rpm"] is None and keys["k1"]["origin"] == "file"
        assert "config overwrite: removed 2 runtime records" in overwritten.log_path.read_text()
    finally:
        admin.close()
        overwritten.stop()
