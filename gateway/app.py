"""The Litestar application: hot endpoints as raw ASGI handlers, lifecycle bound to the Gateway.

One port serves everything, or, with `server.admin_port`, two apps on one Gateway per worker:
the public one (the API and the probes) and the admin one (the admin API, /docs, /metrics and
the probes), each answering the other's paths with the unknown-URL 404.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Mapping
from typing import Any

from litestar import Litestar
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.types import Scope

from gateway.admin.auth import AdminAuth
from gateway.admin.router import admin_router
from gateway.api.cors import CORSGate
from gateway.api.health import health_handlers
from gateway.api.hot_paths import ASGIHandler, HotPathDispatcher
from gateway.api.metrics_route import metrics_handler
from gateway.api.routes import api_handlers, hot_routes
from gateway.apidocs.routes import docs_openapi_config
from gateway.config import Config
from gateway.config_load import load_config
from gateway.runtime import Gateway
from gateway.server import AdminListener
from gateway.telemetry.access_log import configure_logging

__all__ = ["app_from_env", "create_admin_app", "create_app", "log_server_errors"]

log = logging.getLogger("keyway")


def create_app(cfg: Config, gateway: Gateway | None = None) -> Litestar:
    """Build the app for `cfg`; the Gateway connects on start-up and drains on shutdown.

    With `server.admin_port` set, the app serves the API and the probes only, and its lifespan
    starts and stops the admin port's listener (`create_admin_app`, same Gateway) with it.
    """
    gw = gateway or Gateway(cfg)
    hot = api_handlers(gw)
    if cfg.server.admin_port is None:
        app = Litestar(
            route_handlers=[*health_handlers(gw), *hot, *_operator_handlers(gw)],
            openapi_config=_docs(gw),
            on_startup=[gw.start],
            on_shutdown=[gw.stop],
            **_settings(),
        )
    else:
        listener = AdminListener(_front(create_admin_app(gw), {}, cfg), cfg.server)
        app = Litestar(
            route_handlers=[*health_handlers(gw), *hot],
            openapi_config=None,  # not even Litestar's default /schema
            on_startup=[gw.start, listener.start],
            on_shutdown=[listener.stop, gw.stop],
            **_settings(),
        )
    app.state.gateway = gw
    app.state.hot_routes = hot_routes(hot)
    return app


def create_admin_app(gw: Gateway) -> Litestar:
    """The admin port's app on `gw`: the admin API, /docs, /metrics and the probes (so a load
    balancer can check the admin port too). No lifespan: the public app's starts the Gateway."""
    return Litestar(
        route_handlers=[*health_handlers(gw), *_operator_handlers(gw)],
        openapi_config=_docs(gw),
        **_settings(),
    )


def _operator_handlers(gw: Gateway) -> list[Any]:
    """What the admin port takes off the public one when it is set (/docs comes with _docs)."""
    return [metrics_handler(), admin_router(gw)]


def _docs(gw: Gateway) -> OpenAPIConfig:
    # /docs: the public API always, the admin API when KEYWAY_ADMIN_KEYS enables it
    return docs_openapi_config(admin_enabled=AdminAuth.from_env(gw.control.env).enabled)


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


def _settings() -> dict[str, Any]:
    """The Litestar settings both apps share (fresh objects for each)."""
    return {
        "after_exception": [log_server_errors],
        "logging_config": _litestar_logging(),
        "debug": False,
    }


def _front(
    app: Litestar, routes: Mapping[str, ASGIHandler], cfg: Config
) -> HotPathDispatcher | CORSGate:
    """What a listener serves: the hot-path dispatcher (and the unknown-URL 404) in front of
    `app`, behind CORS when origins are configured."""
    dispatcher = HotPathDispatcher(app, routes)
    if cfg.server.cors_origins:
        return CORSGate(dispatcher, cfg.server.cors_origins)
    return dispatcher


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
    return _front(app, app.state.hot_routes, cfg)
