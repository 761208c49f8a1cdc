"""An attacker against real processes: a stolen admin key, a shared proxy address, a forged log,
a hostile upstream, a hostile client.

- With a stolen admin key, nobody can lift the upstream policy (`allow_private_upstreams`) or
  move a provider's base_url to a host of theirs without giving every key's secret again: a
  listener on 127.0.0.2 (the attacker's host) and one on another port of 127.0.0.1 must see no
  connection at all, while the fake provider keeps serving.
- Behind haproxy every admin shares the proxy's address: 20 failed attempts from one client
  lock out that client only, never a valid admin key, and a client cannot choose its address
  by sending its own X-Forwarded-For.
- A %0a in an admin path cannot write a line of its own into the gateway's log.
- A hostile upstream (gateway/fake_provider/hostile_wire.py: a response smuggled after a
  complete 200, heads too large or without end, a head or body trickled forever, a redirect to
  another host, a gzip bomb) gets its key neither disabled nor followed: the client gets the
  first answer or a clear 502 / 504 in its dialect, the key stays enabled (admin API), and the
  upstream secret reaches no host but the configured one (the redirect's target, 127.0.0.2,
  sees no connection).
- A client that writes CR LF into a model name gets a 404 in its dialect: no header, no log
  line, no upstream request of its making.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.fake_provider.hostile_wire import FAULTS, HostileUpstream
from tests.harness import FakeControl, Proc, make_config, start_gateway, start_haproxy
from tests.integration.test_admin_replicas import ADMIN_KEY, Admin, chat, control_env

FORGED = "2026-01-01 00:00:00,000 INFO keyway.audit admin change: delete provider fake by admin#1"


class Listener:
    """The attacker's server: accepts on `host`, records every connection and byte, answers none."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.1)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received += conn.recv(65536)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture()
def listeners() -> Iterator[tuple[Listener, Listener]]:
    other_host, other_port = Listener("127.0.0.2"), Listener("127.0.0.1")
    yield other_host, other_port
    other_host.close()
    other_port.close()


def test_a_stolen_admin_key_cannot_lift_the_policy_or_redirect_the_secrets(
    procs: contextlib.ExitStack,
    logs: Path,
    fake_proc: Proc,
    fake: FakeControl,
    redis_url: str,
    prefix: dict[str, str],
    listeners: tuple[Listener, Listener],
) -> None:
    gw = procs.enter_context(
        start_gateway(
            logs, make_config(fake_proc.url, keys=2), redis_url=redis_url, env=control_env(prefix)
        )
    )
    stolen = Admin(gw)
    procs.callback(stolen.close)
    evil = {"name": "evil", "kind": "openai-compatible", "base_url": f"{listeners[0].url}/v1"}

    lifted = stolen.post("/admin/providers", json={**evil, "allow_private_upstreams": True})
    assert lifted.status_code == 403 and "allow_private_upstreams" in lifted.text, lifted.text
    patched = stolen.patch("/admin/providers/fake", json={"allow_private_upstreams": True})
    assert patched.status_code == 403 and "allow_private_upstreams" in patched.text
    for spelling in ("0251.0376.0251.0376", "169.254.43518", "0xa9.0xfe.0xa9.0xfe"):
        metadata = {**evil, "base_url": f"http://{spelling}/latest"}
        refused = stolen.post("/admin/providers", json=metadata)
        assert refused.status_code == 400 and "metadata" in refused.text, (spelling, refused.text)

    for listener in listeners:
        moved = stolen.patch("/admin/providers/fake", json={"base_url": f"{listener.url}/v1"})
        assert moved.status_code == 403, moved.text
        assert "missing: k1, k2" in moved.text and "KEYWAY_UPSTREAM_HOSTS_ALLOWED" in moved.text
        partly = stolen.patch(
            "/admin/providers/fake",
            json={"base_url": f"{listener.url}/v1", "key_secrets": {"k1": "sk-attacker-0001"}},
        )
        assert partly.status_code == 403 and "missing: k2" in partly.text
    assert stolen.ok("GET", "/admin/providers/fake")["base_url"] == f"{fake_proc.url}/v1"
    for _ in range(4):
        served = chat(gw, "sk-client-a")
        assert served.status_code == 200, served.text
    assert sum(fake.requests_by_key().values()) == 4
    for listener in listeners:
        assert (listener.connections, listener.received) == (0, b"")

    # with every key's secret the move is allowed (those secrets are the mover's own), audited
    port = fake_proc.url.rsplit(":", 1)[1]
    moved = stolen.ok(
        "PATCH",
        "/admin/providers/fake",
        json={"base_url": f"http://localhost:{port}/v1",
              "key_secrets": {"k1": "sk-moved-secret-0001", "k2": "sk-moved-secret-0002"}},
    )  # fmt: skip
    assert moved["base_url"] == f"http://localhost:{port}/v1"
    fake.reset()
    assert chat(gw, "sk-client-a").status_code == 200
    by_key = fake.requests_by_key()  # secrets by their last 8 characters: the new ones only
    assert sum(by_key.values()) == 1 and set(by_key) <= {"ret-0001", "ret-0002"}, by_key
    log = gw.log_path.read_text()
    assert (
        f"admin change: update provider fake by admin#1 from 127.0.0.1; base_url "
        f"http://127.0.0.1:{port} -> http://localhost:{port}, secrets replaced: k1, k2"
    ) in log
    assert "sk-moved-secret" not in log and "sk-attacker" not in log


def test_behind_haproxy_failures_lock_out_their_client_only(
    procs: contextlib.ExitStack,
    logs: Path,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    env = control_env(prefix, KEYWAY_TRUSTED_PROXY_HOPS="1")
    gw = procs.enter_context(
        start_gateway(logs, make_config(fake_proc.url), redis_url=redis_url, env=env)
    )
    lb = procs.enter_context(start_haproxy(logs, [gw.port], forwardfor=True))

    def client(source: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source)
        http = httpx.Client(base_url=lb.url, transport=transport, timeout=10)
        procs.callback(http.close)
        return http

    attacker, colleague, admin = client("127.0.0.2"), client("127.0.0.3"), client("127.0.0.1")
    statuses = [
        attacker.get(
            "/admin/config", headers={"x-api-key": f"guessed-admin-key-{i:04d}"}
        ).status_code
        for i in range(20)
    ]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}, statuses
    # a header of its own does not make the attacker someone else: haproxy appends the peer
    spoofed = attacker.get(
        "/admin/config", headers={"x-api-key": "guessed-again-0001", "x-forwarded-for": "10.9.9.9"}
    )
    assert spoofed.status_code == 429 and int(spoofed.headers["retry-after"]) >= 1

    key = {"authorization": f"Bearer {ADMIN_KEY}"}
    assert admin.get("/admin/config", headers=key).status_code == 200
    assert attacker.get("/admin/config", headers=key).status_code == 200  # never a valid key
    typo = colleague.get("/admin/config", headers={"x-api-key": "typo-admin-key-0001"})
    assert typo.status_code == 401

    log = gw.log_path.read_text()
    assert "admin auth failed: unknown key from 127.0.0.2 on /admin/config" in log
    assert "admin auth refused: too many failures from 127.0.0.2" in log
    assert "admin auth failed: unknown key from 127.0.0.3 on /admin/config" in log
    assert "10.9.9.9" not in log


def test_a_newline_in_an_admin_path_forges_no_log_line(
    procs: contextlib.ExitStack,
    logs: Path,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
) -> None:
    gw = procs.enter_context(
        start_gateway(
            logs, make_config(fake_proc.url), redis_url=redis_url, env=control_env(prefix)
        )
    )
    encoded = FORGED.replace(" ", "%20").replace("#", "%23").replace(":", "%3A")
    for path in (f"/admin/providers/x%0a{encoded}", f"/admin/providers/x%0d%0a{encoded}"):
        answer = httpx.get(f"{gw.url}{path}", timeout=10)
        assert answer.status_code == 401, answer.text
    log = gw.log_path.read_text()
    assert not [line for line in log.splitlines() if line.startswith(FORGED[:23])], log
    assert f'admin auth failed: no key from 127.0.0.1 on "/admin/providers/x\\n{FORGED}"' in log
    assert f'on "/admin/providers/x\\r\\n{FORGED}"' in log


# -- a hostile upstream ---------------------------------------------------------------------------

HOSTILE_ANSWERS: dict[str, tuple[int, str | None]] = {
    "smuggle": (200, None),  # the first response stands; the 401 after it is not an answer
    "smuggle_split": (200, None),
    "huge_head": (502, "upstream_unreachable"),
    "endless_head": (502, "upstream_unreachable"),
    "slow_head": (504, "upstream_timeout"),  # routing.deadline_s ends it, not a read timeout
    "slow_body": (502, "upstream_cut"),
    "redirect": (502, "upstream_redirect"),
    "gzip_bomb": (502, "bad_upstream_body"),  # passed as bytes, never inflated
}
assert set(HOSTILE_ANSWERS) == set(FAULTS)
ANTHROPIC_TYPES = {502: "api_error", 504: "timeout_error"}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def hostile_secret(fault: str) -> str:
    return f"sk-hostile-{fault}-0001"


def hostile_config(upstream: HostileUpstream) -> str:
    providers = "".join(
        f"""  {fault}:
    kind: openai-compatible
    base_url: {upstream.url}/{fault}/v1
    timeout_s: 10
    keys:
      - {{id: h1, secret: {hostile_secret(fault)}}}
"""
        for fault in FAULTS
    )
    models = "".join(
        f"  {fault}: {{deployments: [{{provider: {fault}, model: hostile-model}}]}}\n"
        for fault in FAULTS
    )
    return f"""providers:
{providers}models:
{models}clients:
  - {{id: team-a, key: sk-client-a}}
routing:
  deadline_s: 2
"""


@pytest.fixture(scope="module")
def hostile(logs: Path, redis_url: str) -> Iterator[tuple[Proc, HostileUpstream, Listener, Admin]]:
    elsewhere = Listener("127.0.0.2")
    upstream = HostileUpstream(redirect_to=elsewhere.url).start()
    prefix = {"KEYWAY_REDIS_PREFIX": f"hostile{os.getpid()}"}
    try:
        with start_gateway(
            logs, hostile_config(upstream), redis_url=redis_url, env=control_env(prefix)
        ) as gw:
            admin = Admin(gw)
            try:
                yield gw, upstream, elsewhere, admin
            finally:
                admin.close()
    finally:
        upstream.close()
        elsewhere.close()


def ask(gw: Proc, fault: str, dialect: str) -> httpx.Response:
    say = [{"role": "user", "content": "hi"}]
    body: dict[str, Any] = {"model": fault, "messages": say}
    if dialect == "anthropic":
        body["max_tokens"] = 8
    headers = {"authorization": "Bearer sk-client-a", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{gw.url}{PATHS[dialect]}", json=body, headers=headers, timeout=30)


def assert_answer(response: httpx.Response, dialect: str, status: int, code: str | None) -> None:
    assert response.status_code == status, response.text[:500]
    doc = response.json()
    if status == 200:
        text = (
            doc["content"][0]["text"]
            if dialect == "anthropic"
            else doc["choices"][0]["message"]["content"]
        )
        assert text == "the first answer", doc
    elif dialect == "anthropic":
        assert doc["type"] == "error" and doc["error"]["type"] == ANTHROPIC_TYPES[status], doc
    else:
        assert set(doc["error"]) == {"message", "type", "param", "code"}, doc
        assert doc["error"]["code"] == code, doc


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_hostile_upstream_disables_no_key_and_gets_no_secret_elsewhere(
    hostile: tuple[Proc, HostileUpstream, Listener, Admin], fault: str, dialect: str
) -> None:
    gw, upstream, elsewhere, admin = hostile
    status, code = HOSTILE_ANSWERS[fault]
    for _ in range(2):  # the second request finds no trace of the first (no smuggled 401)
        assert_answer(ask(gw, fault, dialect), dialect, status, code)

    detail = admin.ok("GET", f"/admin/providers/{fault}/keys/h1")
    assert detail["key"]["disabled"] is None, detail
    assert detail["state"]["status"] != "disabled", detail
    assert upstream.reused_after_smuggle == 0, "a connection was used after a smuggled response"
    assert upstream.credentials(fault) == {hostile_secret(fault)}
    assert all(r.credential == hostile_secret(r.fault) for r in upstream.requests)
    assert (elsewhere.connections, elsewhere.received) == (0, b"")


# -- a hostile client ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_crlf_in_a_model_name_injects_no_header_and_no_log_line(
    hostile: tuple[Proc, HostileUpstream, Listener, Admin], dialect: str
) -> None:
    gw, upstream, elsewhere, _ = hostile
    sent = len(upstream.requests)
    injected = "smuggle\r\nx-injected: yes\r\n\r\nHTTP/1.1 200 OK"
    response = ask(gw, injected, dialect)
    assert response.status_code == 404, response.text
    assert "x-injected" not in response.headers
    doc = response.json()
    if dialect == "anthropic":
        assert (doc["type"], doc["error"]["type"]) == ("error", "not_found_error"), doc
    else:
        assert doc["error"]["code"] == "model_not_found", doc
    assert len(upstream.requests) == sent and elsewhere.connections == 0
    lines = gw.log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith(("x-injected", "HTTP/1.1"))]
    assert any(f"POST {PATHS[dialect]} 404" in line and "model_not_found" in line for line in lines)
