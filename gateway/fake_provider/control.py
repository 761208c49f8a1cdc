"""The ``/_fake/*`` control API: arm faults, read stats and the last request, reset.

    POST   /_fake/faults        {"key", "mode", "count", "retry_after_s", "retry_after_ms", "delay_ms",
                                 "chunks"} (modes: ``faults.py``)
    GET    /_fake/faults        the armed faults (keys masked)
    DELETE /_fake/faults[?key=] disarm every fault, or one key's
    GET    /_fake/stats         {"total", "requests_by_key", "in_flight_by_key", "max_in_flight_by_key"}
    GET    /_fake/last_request  {"method", "path", "query", "headers", "body", "raw_body"}
                                (credentials masked; raw_body: the body's text as sent)
    GET    /_fake/requests      {"requests": [...]}: the last 64 requests in that shape, oldest
                                first
    POST   /_fake/reset         forget stats, faults and rate-limit windows
    GET    /_fake/health        {"ok": true}

The state lives in the process: run the fake provider with one worker when a test uses faults
or stats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import msgspec

from gateway.fake_provider.asgi import JSON_CONTENT_TYPE, Receive, Scope, Send, read_body, send_body
from gateway.fake_provider.faults import Fault, FaultBook
from gateway.fake_provider.ledger import Ledger
from gateway.fake_provider.quota import QuotaBook

__all__ = ["ControlAPI"]

_encoder = msgspec.json.Encoder()
_fault_decoder = msgspec.json.Decoder(Fault)
_OK = _encoder.encode({"ok": True})


class ControlAPI:
    """Serves ``/_fake/*`` over the state of one fake provider."""

    def __init__(self, faults: FaultBook, ledger: Ledger, quota: QuotaBook) -> None:
        self.faults = faults
        self.ledger = ledger
        self.quota = quota
        self._routes: dict[tuple[str, str], Callable[[Scope, bytes], tuple[int, Any]]] = {
            ("POST", "/_fake/faults"): self._arm,
            ("GET", "/_fake/faults"): self._list_faults,
            ("DELETE", "/_fake/faults"): self._clear_faults,
            ("GET", "/_fake/stats"): self._stats,
            ("GET", "/_fake/last_request"): self._last_request,
            ("GET", "/_fake/requests"): self._requests,
            ("POST", "/_fake/reset"): self._reset,
            ("GET", "/_fake/health"): self._health,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        route = self._routes.get((scope["method"], scope["path"]))
        if route is None:
            status, payload = 404, {"error": f"no control route {scope['method']} {scope['path']}"}
        else:
            status, payload = route(scope, body)
        encoded = payload if isinstance(payload, bytes) else _encoder.encode(payload)
        await send_body(send, status, [JSON_CONTENT_TYPE], encoded)

    def _arm(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        try:
            fault = _fault_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return 400, {"error": str(exc)}
        self.faults.arm(fault)
        return 200, {"ok": True, "faults": self.faults.listing()}

    def _list_faults(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, {"faults": self.faults.listing()}

    def _clear_faults(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        keys = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key")
        if keys:
            for key in keys:
                self.faults.clear(key)
        else:
            self.faults.clear()
        return 200, _OK

    def _stats(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, self.ledger.stats()

    def _last_request(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        last = self.ledger.last_request
        if last is None:
            return 404, {"error": "no request has reached the fake provider yet"}
        return 200, last.render()

    def _requests(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, {"requests": [request.render() for request in self.ledger.recent]}

    def _reset(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        self.ledger.clear()
        self.faults.clear()
        self.quota.clear()
        return 200, _OK

    def _health(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, _OK
