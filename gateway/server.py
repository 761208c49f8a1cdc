"""Run the gateway under Granian (ASGI, uvloop), one or more worker processes.

Before the workers start: the listen addresses are tried (a busy port is one line naming it, not
Granian's traceback), a fresh directory for their Prometheus samples (so `/metrics` sums every
worker), and Granian's own log lines in Keyway's format, through the secret guard.

With `server.admin_port` set, every worker also serves the admin port (`AdminListener`).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.log import LogLevels
from granian.server.embed import Server as EmbeddedServer

from gateway.config import Config, ServerConfig
from gateway.telemetry.access_log import configure_logging, granian_log_config
from gateway.telemetry.metrics import prepare_multiprocess_dir

__all__ = ["AdminListener", "ListenError", "check_listen", "reload_problem", "serve"]

log = logging.getLogger("keyway")

_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


class ListenError(Exception):
    """The server cannot listen where it was told; the message names the address."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(code: int | None, fallback: str) -> str:
    return os.strerror(code).lower() if code else fallback


def check_listen(host: str, port: int) -> None:
    """Raise `ListenError` ("cannot listen on 127.0.0.1:8080: address already in use") when
    `host:port` cannot be bound right now; the probe socket is closed again at once."""
    where = _address(host, port)
    if not 0 <= port <= 65535:
        raise ListenError(f"cannot listen on {where}: the port must be 0-65535")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise ListenError(f"cannot listen on {where}: unknown host ({exc})") from None
    with socket.socket(family, kind, proto) as probe:
        if os.name == "posix":  # like the server: a port in TIME_WAIT is free, a listener is not
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            raise ListenError(f"cannot listen on {where}: {_reason(exc.errno, str(exc))}") from None


def _bind_error(exc: BaseException, host: str, port: int) -> ListenError | None:
    """Granian's bind failure ("Address already in use (os error 98)") as a `ListenError`."""
    match = _OS_ERROR.search(str(exc))
    if not isinstance(exc, RuntimeError) or match is None:
        return None
    code = int(match.group(1))
    if code not in _BIND_ERRNOS:
        return None
    return ListenError(f"cannot listen on {_address(host, port)}: {_reason(code, str(exc))}")


def reload_problem() -> str | None:
    """Why `--reload` cannot work here (Granian's reloader needs watchfiles), or None."""
    if importlib.util.find_spec("watchfiles") is None:
        return (
            "--reload needs the watchfiles package (Granian's reload extra), which is not "
            "installed: pip install 'granian[reload]', or run without --reload"
        )
    return None


def serve(config_path: Path, cfg: Config, *, reload: bool = False) -> None:
    """Start Granian on cfg.server; blocks until the server stops (SIGTERM/SIGINT).

    Raises `ListenError` when an address (the public one, the admin one) cannot be listened on.
    """
    check_listen(cfg.server.host, cfg.server.port)
    if cfg.server.admin_port is not None:
        check_listen(admin_host(cfg.server), cfg.server.admin_port)
    workers = cfg.server.workers
    if not cfg.redis.url and workers > 1:
        log.warning("the embedded store is per process: running 1 worker instead of %d", workers)
        workers = 1
    # Granian imports the factory in each worker: hand it the config through the environment
    os.environ["KEYWAY_CONFIG"] = str(config_path.resolve())
    prepare_multiprocess_dir()
    server = Granian(
        "gateway.app:app_from_env",
        factory=True,
        address=cfg.server.host,
        port=cfg.server.port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        log_level=LogLevels(cfg.server.log_level),
        log_dictconfig=granian_log_config(),
        log_access=False,
        backlog=2048,
        reload=reload,
        # the code, not the working directory (which may be anything, e.g. $HOME)
        reload_paths=[Path(__file__).resolve().parent],
        workers_kill_timeout=int(cfg.server.shutdown_timeout_s) + 5,
        respawn_failed_workers=True,
    )
    try:
        server.serve()
    except RuntimeError as exc:  # the port was taken between check_listen and Granian's bind
        problem = _bind_error(exc, cfg.server.host, cfg.server.port)
        if problem is None:
            raise
        raise problem from None


def admin_host(server: ServerConfig) -> str:
    """Where the admin port listens: `server.admin_host`, else the public `server.host`."""
    return server.host if server.admin_host is None else server.admin_host


class _EmbeddedNotice(logging.Filter):
    """Drops Granian's "Embedded server is experimental!" (once per worker start): Keyway pins
    Granian and tests the admin listener end to end (tests/integration/test_admin_listener.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Embedded server is experimental!"


class AdminListener:
    """The admin port, served inside every worker by Granian's embedded server.

    Granian binds one address per server, so a worker's second port is a second Granian server:
    the embedded one, which runs on the worker's own event loop. Every worker binds the admin
    port with SO_REUSEPORT, as Granian binds the public one, and the kernel spreads admin
    connections over them. So the admin API, /docs and /metrics run in the processes that
    route: one Gateway per worker for both ports (control plane, decision log, embedded store,
    metrics), no process of their own to supervise, signal or count as a replica.

    The public app's lifespan starts it after the Gateway and stops it before the Gateway: on
    SIGTERM Granian drains the public port first, so the admin port stays up for the drain.
    """

    STOP_TIMEOUT_S = 10.0
    """An admin request still running after this long at shutdown is cut."""

    def __init__(self, app: Any, server: ServerConfig) -> None:
        if server.admin_port is None:
            raise ValueError("AdminListener needs server.admin_port")
        self.app = app
        self.host = admin_host(server)
        self.port: int = server.admin_port
        self.address = _address(self.host, self.port)
        self.log_level = server.log_level
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Listen; raises `ListenError` when the port cannot be bound (the worker then fails
        its start-up, as it would on the public port)."""
        server = EmbeddedServer(
            self.app,
            address=self.host,
            port=self.port,
            interface=Interfaces.ASGINL,  # no lifespan: the public app's runs the Gateway
            websockets=False,
            backlog=256,
            log_level=LogLevels(self.log_level),
            log_dictconfig=granian_log_config(),
            log_access=False,
        )
        # Granian's constructor re-applies its logging config (dictConfig): put Keyway's back
        configure_logging(self.log_level)
        logging.getLogger("_granian").addFilter(_EmbeddedNotice())
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve())
        # serve() binds before its first await: a port it cannot take has failed by now
        for _ in range(3):
            await asyncio.sleep(0)
        if self._task.done():
            exc = self._task.exception()
            problem = _bind_error(exc, self.host, self.port) if exc is not None else None
            raise problem or ListenError(f"cannot listen on {self.address}: {exc}")
        self._task.add_done_callback(self._ended)
        log.info("admin API, /docs and /metrics on http://%s (off the public port)", self.address)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        reason = task.exception() or "its Granian worker exited"
        log.error("the admin listener on %s stopped: %s", self.address, reason)

    async def stop(self) -> None:
        """Stop listening, let admin requests in flight finish (up to STOP_TIMEOUT_S)."""
        if self._server is None or self._task is None:
            return
        self._stopping = True
        self._server.stop()  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("admin requests still running after %.0f s: cut", self.STOP_TIMEOUT_S)
            self._task.cancel()
        except Exception:  # it failed on its own earlier (logged by _ended); stopping is done
            pass
