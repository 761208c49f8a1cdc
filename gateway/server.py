"""Run the gateway under Granian (ASGI, uvloop), one or more worker processes.

Before the workers start: a fresh directory for their Prometheus samples (so `/metrics` sums
every worker), and Granian's own log lines in Keyway's format, through the secret guard.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.log import LogLevels

from gateway.config import Config
from gateway.telemetry.access_log import granian_log_config
from gateway.telemetry.metrics import prepare_multiprocess_dir

__all__ = ["serve"]

log = logging.getLogger("keyway")


def serve(config_path: Path, cfg: Config, *, reload: bool = False) -> None:
    """Start Granian on cfg.server; blocks until the server stops (SIGTERM/SIGINT)."""
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
        workers_kill_timeout=int(cfg.server.shutdown_timeout_s) + 5,
        respawn_failed_workers=True,
    )
    server.serve()
