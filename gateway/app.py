"""The Litestar application: hot endpoints as raw ASGI handlers, lifecycle bound to the Gateway."""

from __future__ import annotations

import gc
import logging
import os

from litestar import Litestar
from litestar.logging.config import LoggingConfig
from litestar.types import Scope

from gateway.admin.auth import AdminAuth
from gateway.admin.router import admin_router
from gateway.api.cors import CORSGate
from gateway.api.health import health_handlers
from gateway.api.hot_paths import HotPathDispatcher
from gateway.api.metrics_route import metrics_handler
from gateway.api.routes import api_handlers, hot_routes
from gateway.apidocs.routes import docs_openapi_config
from gateway.config import Config
from gateway.config_load import load_config
from gateway.runtime import Gateway
from gateway.telemetry.access_log import configure_logging

__all__ = ["app_from_env", "create_app", "log_server_errors"]

log = logging.getLogger("keyway")


def create_app(cfg: Config, gateway: Gateway | None = None) -> Litestar:
    """Build the app for `cfg`; the Gateway connects on start-up and drains on shutdown."""
    gw = gateway or Gateway(cfg)
    hot = api_handlers(gw)
    app = Litestar(
        route_handlers=[
            *health_handlers(gw),
            *hot,
            metrics_handler(),
            admin_router(gw),
        ],
        after_exception=[log_server_errors],
        on_startup=[gw.start],
        on_shutdown=[gw.stop],
        # /docs: the public API always, the admin API when KEYWAY_ADMIN_KEYS enables it
        openapi_config=docs_openapi_config(
            admin_enabled=AdminAuth.from_env(gw.control.env).enabled
        ),
        logging_config=_litestar_logging(),
        debug=False,
    )
    app.state.gateway = gw
    app.state.hot_routes = hot_routes(hot)
    return app


async def log_server_errors(exc: Exception, scope: Scope) -> None:
    """Log what became a 5xx with its traceback; client errors (4xx) are answered, not logged."""
    status = getattr(exc, "status_code", 500)
    if isinstance(status, int) and status >= 500:
        log.error("unhandled error on %s", scope.get("path", "?"), exc_info=exc)


def _litestar_logging() -> LoggingConfig:
    """Litestar's records go to the root handlers (`configure_logging`), never its own."""
    return LoggingConfig(
        configure_root_logger=False,
        log_exceptions="never",  # 5xx only, through log_server_errors: a 401 is not an incident
        loggers={"litestar": {"level": "INFO", "propagate": True, "handlers": []}},
    )


def app_from_env() -> HotPathDispatcher | CORSGate:
    """Granian's factory target: the config path comes from KEYWAY_CONFIG (set by `keyway serve`).

    The hot endpoints are dispatched in front of Litestar (see gateway/api/hot_paths.py).
    """
    path = os.environ["KEYWAY_CONFIG"]
    cfg = load_config(path)
    configure_logging(cfg.server.log_level)
    app = create_app(cfg)
    # everything built so far lives as long as the worker: keep it out of the cycle collector,
    # and collect the young generation less often (profiles showed it at ~5% of a busy worker)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    dispatcher = HotPathDispatcher(app, app.state.hot_routes)
    if cfg.server.cors_origins:
        return CORSGate(dispatcher, cfg.server.cors_origins)
    return dispatcher
