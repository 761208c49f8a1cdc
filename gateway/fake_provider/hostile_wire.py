"""A hostile upstream on a raw socket: the HTTP/1.1 no ASGI server would send, on purpose.

The fake provider (app.py) speaks through Granian, which frames every response correctly; the
faults here are in the framing itself. The first segment of the request's path names the answer,
so one provider per fault points at it (`base_url: http://127.0.0.1:<port>/<fault>/v1`):

    smuggle        a complete 200 chat completion and, in the same write, a second response: 401
    smuggle_split  the same, the 401 in a write of its own right after the 200
    huge_head      a 200 whose head is ~600 KiB of headers, then a valid body
    endless_head   a 200 status line, then header lines without end, as fast as they are taken
    slow_head      a status line, then one byte of a header every 100 ms, never its end
    slow_body      a 200 promising 100,000 bytes of JSON, one byte every 100 ms (slowloris)
    redirect       307 to `redirect_to` (another host) + the request's path
    gzip_bomb      a 200 `content-encoding: gzip` chat completion that inflates to 64 MiB

Every request is recorded (`requests`: fault, credential, connection), and a request that
arrives on a connection after a smuggled response counts in `reused_after_smuggle`: a client
that reads it would be reading the smuggled 401 as its answer. `HostileUpstream` serves from
threads of this process (`start()` ... `close()`); nothing here is used by the gateway itself.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Final

import msgspec

__all__ = ["FAULTS", "HostileRequest", "HostileUpstream", "chat_completion"]

FAULTS: Final = (
    "smuggle",
    "smuggle_split",
    "huge_head",
    "endless_head",
    "slow_head",
    "slow_body",
    "redirect",
    "gzip_bomb",
)
_TRICKLE_S = 0.1
_MAX_HEAD = 64 * 1024
"""Request heads above this are not read (the gateway sends small ones)."""


@dataclass(frozen=True, slots=True)
class HostileRequest:
    fault: str
    """The first path segment (the fault the request asked for, or anything else)."""
    path: str
    credential: str
    """The `authorization` or `x-api-key` value as received (the secret the gateway sent)."""
    connection: int


def chat_completion(content: str) -> bytes:
    """An OpenAI chat completion saying `content`."""
    return msgspec.json.encode(
        {
            "id": "chatcmpl-hostile",
            "object": "chat.completion",
            "created": 0,
            "model": "hostile-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def _response(status: str, body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 " + status.encode(), b"content-type: application/json", *extra,
            b"content-length: %d" % len(body)]  # fmt: skip
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_ANSWER: Final = _response("200 OK", chat_completion("the first answer"))
_SMUGGLED: Final = _response(
    "401 Unauthorized",
    b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error",'
    b'"code":"invalid_api_key"}}',
)


@cache
def _bomb() -> bytes:
    """A chat completion of 64 MiB of text, gzipped to well under 1 MiB (made once)."""
    text = chat_completion("a" * (64 * 1024 * 1024))
    return gzip.compress(text, compresslevel=6, mtime=0)


class HostileUpstream:
    """The hostile server on `host` (an ephemeral port), serving from daemon threads."""

    def __init__(self, host: str = "127.0.0.1", *, redirect_to: str = "http://127.0.0.2:9") -> None:
        self.redirect_to = redirect_to
        self.requests: list[HostileRequest] = []
        self.reused_after_smuggle = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._closing = threading.Event()
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream._serve(self.request)

        self._server = socketserver.ThreadingTCPServer((host, 0), Handler, bind_and_activate=True)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> HostileUpstream:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, and cut every connection still served (a trickle ends with it)."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def credentials(self, fault: str) -> set[str]:
        """The credentials the requests for `fault` carried."""
        return {r.credential for r in self.requests if r.fault == fault}

    # -- one connection -------------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        connection = next(self._ids)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.add(conn)
        smuggled = False
        buffer = b""
        try:
            while not self._closing.is_set():
                request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                path, credential = request
                fault = path.lstrip("/").split("/", 1)[0]
                with self._lock:
                    self.requests.append(HostileRequest(fault, path, credential, connection))
                    if smuggled:
                        self.reused_after_smuggle += 1
                smuggled = fault.startswith("smuggle")
                if not self._answer(conn, fault, path):
                    return
        except OSError:  # the gateway cut the connection: what a hostile answer should cause
            return
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    def _answer(self, conn: socket.socket, fault: str, path: str) -> bool:
        """Answer one request; False when the connection must end."""
        if fault == "smuggle":
            conn.sendall(_ANSWER + _SMUGGLED)
        elif fault == "smuggle_split":
            conn.sendall(_ANSWER)
            conn.sendall(_SMUGGLED)
        elif fault == "huge_head":
            pad = b"x-pad-%d: " + b"p" * 1000
            head = [pad % i for i in range(600)]
            conn.sendall(_response("200 OK", chat_completion("a huge head"), *head))
        elif fault == "endless_head":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
            for i in itertools.count():
                if self._closing.is_set():
                    return False
                conn.sendall(b"x-more-%d: %s\r\n" % (i, b"m" * 1000))
        elif fault == "slow_head":
            conn.sendall(b"HTTP/1.1 200 OK\r\nx-slow: ")
            self._trickle(conn)
            return False
        elif fault == "slow_body":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: 100000\r\n\r\n{")  # fmt: skip
            self._trickle(conn)
            return False
        elif fault == "redirect":
            location = f"{self.redirect_to}{path}".encode()
            conn.sendall(_response("307 Temporary Redirect", b"", b"location: " + location))
        elif fault == "gzip_bomb":
            conn.sendall(_response("200 OK", _bomb(), b"content-encoding: gzip"))
        else:
            conn.sendall(_ANSWER)
        return True

    def _trickle(self, conn: socket.socket) -> None:
        """One space every 100 ms until the peer leaves or the server closes."""
        while not self._closing.is_set():
            conn.sendall(b" ")
            time.sleep(_TRICKLE_S)


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[tuple[str, str] | None, bytes]:
    """((path, credential), what follows it), or (None, b"") when the peer has gone."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            return None, b""
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
    length, credential = 0, ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length" and value.isdigit():
            length = int(value)
        elif name in ("authorization", "x-api-key", "api-key"):
            credential = value.removeprefix("Bearer ")
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return (path, credential), rest[length:]
