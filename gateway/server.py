"""Run the gateway under Granian (ASGI, uvloop), one or more worker processes.

Before the workers start: the listen address is tried (a busy port is one line naming it, not
Granian's traceback), a fresh directory for their Prometheus samples (so `/metrics` sums every
worker), and Granian's own log lines in Keyway's format, through the secret guard.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import re
import socket
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.log import LogLevels

from gateway.config import Config
from gateway.telemetry.access_log import granian_log_config
from gateway.telemetry.metrics import prepare_multiprocess_dir

__all__ = ["ListenError", "check_listen", "reload_problem", "serve"]

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

    Raises `ListenError` when the address cannot be listened on.
    """
    check_listen(cfg.server.host, cfg.server.port)
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
        match = _OS_ERROR.search(str(exc))
        if match is None or int(match.group(1)) not in _BIND_ERRNOS:
            raise
        where = _address(cfg.server.host, cfg.server.port)
        reason = _reason(int(match.group(1)), str(exc))
        raise ListenError(f"cannot listen on {where}: {reason}") from None
