"""Load and check a config file: YAML -> env overrides -> schema -> cross-references -> secrets.

Every failure raises `ConfigError` whose message names the offending field, so `keyway serve`
stops with a line an operator can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gateway.config import Config

__all__ = ["ConfigError", "apply_env", "load_config", "parse_config", "resolve_secret"]

_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ConfigError(ValueError):
    """The config cannot be used; the message names the field."""


def resolve_secret(ref: str, field: str, env: Mapping[str, str] | None = None) -> str:
    """`env:NAME` -> the variable's value; anything else is the literal secret."""
    match = _ENV_REF.match(ref)
    if match is None:
        if not ref:
            raise ConfigError(f"{field}: must not be empty")
        return ref
    value = (os.environ if env is None else env).get(match.group(1))
    if not value:
        raise ConfigError(f"{field}: environment variable {match.group(1)} is not set")
    return value


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


_ENV_OVERRIDES: tuple[tuple[str, tuple[str, ...], Callable[[str], Any]], ...] = (
    ("REDIS_URL", ("redis", "url"), str),
    ("KEYWAY_REDIS_PREFIX", ("redis", "prefix"), str),
    ("KEYWAY_HOST", ("server", "host"), str),
    ("KEYWAY_PORT", ("server", "port"), int),
    ("KEYWAY_WORKERS", ("server", "workers"), int),
    ("KEYWAY_LOG_LEVEL", ("server", "log_level"), str),
    ("KEYWAY_MAX_BODY_BYTES", ("server", "max_body_bytes"), int),
    ("SHUTDOWN_TIMEOUT_SECONDS", ("server", "shutdown_timeout_s"), float),
    (
        "KEYWAY_CORS_ORIGINS",
        ("server", "cors_origins"),
        lambda v: [o.strip() for o in v.split(",") if o.strip()],
    ),
    ("KEY_COOLDOWN_SECONDS", ("routing", "cooldown_s"), float),
)


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay the environment's knobs (REDIS_URL, KEYWAY_PORT, ...) on the parsed file."""
    for name, path, kind in _ENV_OVERRIDES:
        value = env.get(name)
        if value is None or value == "":
            continue
        try:
            converted: Any = kind(value.lower() if path[-1] == "log_level" else value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {value!r} is not valid here") from exc
        _set(raw, path, converted)
    return raw


def _check_references(cfg: Config) -> None:
    if not cfg.providers:
        raise ConfigError("providers: at least one provider is required")
    for name, provider in cfg.providers.items():
        where = f"providers.{name}"
        if not provider.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.base_url: must start with http:// or https://")
        if not provider.keys:
            raise ConfigError(f"{where}.keys: at least one key is required")
        if provider.kind == "azure-openai" and not provider.api_version:
            raise ConfigError(f"{where}.api_version: required for kind azure-openai")
        seen: set[str] = set()
        for i, key in enumerate(provider.keys):
            if not _ID.match(key.id):
                raise ConfigError(f"{where}.keys[{i}].id: use 1-64 of A-Z a-z 0-9 . _ -")
            if key.id in seen:
                raise ConfigError(f"{where}.keys[{i}].id: duplicate id {key.id!r}")
            seen.add(key.id)
            for limit in ("rpm", "tpm", "max_concurrency"):
                value = getattr(key, limit)
                if value is not None and value <= 0:
                    raise ConfigError(f"{where}.keys[{i}].{limit}: must be positive")
            if key.weight < 0:
                raise ConfigError(f"{where}.keys[{i}].weight: must not be negative")
    if not cfg.models:
        raise ConfigError("models: at least one model alias is required")
    for alias, model in cfg.models.items():
        if not model.deployments:
            raise ConfigError(f"models.{alias}.deployments: at least one deployment is required")
        for i, dep in enumerate(model.deployments):
            if dep.provider not in cfg.providers:
                raise ConfigError(
                    f"models.{alias}.deployments[{i}].provider: unknown provider {dep.provider!r}"
                )
        for i, fallback in enumerate(model.fallbacks):
            if fallback not in cfg.models:
                raise ConfigError(f"models.{alias}.fallbacks[{i}]: unknown model {fallback!r}")
            if fallback == alias:
                raise ConfigError(
                    f"models.{alias}.fallbacks[{i}]: an alias cannot fall back to itself"
                )
    ids: set[str] = set()
    for i, client in enumerate(cfg.clients):
        if not _ID.match(client.id):
            raise ConfigError(f"clients[{i}].id: use 1-64 of A-Z a-z 0-9 . _ -")
        if client.id in ids:
            raise ConfigError(f"clients[{i}].id: duplicate id {client.id!r}")
        ids.add(client.id)
        for j, allowed in enumerate(client.models):
            if allowed != "*" and allowed not in cfg.models:
                raise ConfigError(f"clients[{i}].models[{j}]: unknown model {allowed!r}")
    if cfg.server.workers < 1:
        raise ConfigError("server.workers: must be at least 1")
    if cfg.routing.max_attempts < 1:
        raise ConfigError("routing.max_attempts: must be at least 1")


def parse_config(raw: Any) -> Config:
    """Validate an already parsed document (a dict) into a `Config`."""
    if not isinstance(raw, dict):
        raise ConfigError("config: the document must be a mapping")
    try:
        cfg = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.providers.openai.keys[0].rpm`": lead with the field
        text = str(exc)
        message, sep, where = text.rpartition(" - at `$.")
        if sep:
            raise ConfigError(f"{where.rstrip('`')}: {message}") from None
        raise ConfigError(f"config: {text}") from None
    _check_references(cfg)
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read `path`, overlay the environment, validate; raises `ConfigError`."""
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the document must be a mapping")
    return parse_config(apply_env(raw, env))
