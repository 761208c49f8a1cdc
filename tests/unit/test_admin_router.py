"""The admin gate, in process: authentication from the headers alone, before any body is read.

An unauthenticated caller must not make Keyway buffer (up to 64 KiB) or parse anything: the key
is checked first, and only an admin's body is read, size- and depth-checked, then replayed.
"""

from __future__ import annotations

from typing import Any

from gateway.admin.auth import AdminAuth
from gateway.admin.router import ADMIN_ACTOR, ADMIN_REMOTE, admin_gate

__all__: list[str] = []

ADMIN = "first-admin-key-0001"


class FakeClients:
    def lookup(self, key: str) -> object | None:
        return object() if key == "sk-client-key-1" else None


class FakeGateway:
    clients = FakeClients()


class Exchange:
    """One request through the gate: what it read, what the app got, what it answered."""

    def __init__(self, headers: list[tuple[bytes, bytes]], body: bytes = b"{}") -> None:
        self.scope: dict[str, Any] = {
            "type": "http", "method": "POST", "path": "/admin/clients",
            "headers": [(b"content-type", b"application/json"), *headers],
            "client": ("10.0.0.1", 40000),
        }  # fmt: skip
        self.body = body
        self.reads = 0
        self.app_body: bytes | None = None
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.app_body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def run(self, auth: AdminAuth) -> int:
        gate = admin_gate(FakeGateway(), auth)(self.app)  # type: ignore[arg-type]
        await gate(self.scope, self.receive, self.send)  # type: ignore[arg-type]
        status: int = self.sent[0]["status"]
        return status


async def test_an_unauthenticated_body_is_never_read() -> None:
    auth = AdminAuth([ADMIN])
    for headers, status in [
        ([], 401),
        ([(b"authorization", b"Bearer wrong-admin-key-000")], 401),
        ([(b"authorization", b"Bearer sk-client-key-1")], 403),
    ]:
        exchange = Exchange(headers, body=b"[" * 5000)
        assert await exchange.run(auth) == status
        assert exchange.reads == 0 and exchange.app_body is None
        names = {name for name, _ in exchange.sent[0]["headers"]}
        assert b"content-security-policy" in names


async def test_an_admin_body_is_checked_then_replayed() -> None:
    auth = AdminAuth([ADMIN])
    ok = Exchange([(b"x-api-key", ADMIN.encode())], body=b'{"id": "x"}')
    assert await ok.run(auth) == 200
    assert ok.app_body == b'{"id": "x"}'
    assert ok.scope["state"][ADMIN_ACTOR] == "admin#1"
    deep = Exchange([(b"x-api-key", ADMIN.encode())], body=b"[" * 40 + b"]" * 40)
    assert await deep.run(auth) == 400 and deep.app_body is None


async def test_the_address_is_taken_from_trusted_hops_only() -> None:
    forwarded = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-api-key", ADMIN.encode())]
    trusting = Exchange(forwarded)
    await trusting.run(AdminAuth([ADMIN], trusted_proxy_hops=1))
    assert trusting.scope["state"][ADMIN_REMOTE] == "203.0.113.9"
    direct = Exchange(forwarded)
    await direct.run(AdminAuth([ADMIN]))
    assert direct.scope["state"][ADMIN_REMOTE] == "10.0.0.1"


async def test_failures_behind_a_proxy_lock_out_only_their_own_client() -> None:
    auth = AdminAuth([ADMIN], trusted_proxy_hops=1)
    attacker = [(b"x-forwarded-for", b"203.0.113.66")]
    statuses = [await Exchange([*attacker, (b"x-api-key", b"guess-" + bytes([65 + i]) * 20)])
                .run(auth) for i in range(20)]  # fmt: skip
    assert 429 in statuses
    colleague = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-api-key", b"typo-admin-key-0001")]
    assert await Exchange(colleague).run(auth) == 401
    assert await Exchange([*attacker, (b"x-api-key", ADMIN.encode())]).run(auth) == 200
