"""Load and check a config file: YAML -> env overrides -> schema -> cross-references -> secrets.

Every problem is collected, not just the first: `ConfigError.problems` holds one line per problem,
each led by the field's path with provider and alias names in it
(`providers.openai.keys[0].rpm: expected int, got str`), so `keyway check-config` and
`keyway serve` report everything an operator has to fix in one go (`report`).
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from gateway.config import Config
from gateway.control.url_policy import UnsafeUpstream, check_base_url

__all__ = [
    "ConfigError",
    "apply_env",
    "check_config",
    "config_problems",
    "load_config",
    "parse_config",
    "report",
    "resolve_secret",
]

_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}?")
_FLAGS = {"1": True, "true": True, "yes": True, "on": True,
          "0": False, "false": False, "no": False, "off": False}  # fmt: skip


class ConfigError(ValueError):
    """The config cannot be used; each problem names its field. `str()` joins them by newlines."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


def report(exc: ConfigError, source: str | Path) -> str:
    """What the CLI prints for an invalid config: a header line, then one indented line each."""
    count = len(exc.problems)
    lines = [f"keyway: invalid config {source}: {count} problem{'s' if count != 1 else ''}"]
    for problem in exc.problems:  # a YAML error runs over several lines: indent the rest deeper
        first, *rest = problem.splitlines() or [""]
        lines += [f"  {first}", *(f"    {line}" for line in rest)]
    return "\n".join(lines)


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


def _flag(value: str) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off; anything else is wrong."""
    try:
        return _FLAGS[value.strip().lower()]
    except KeyError:
        raise ValueError(value) from None


def _names(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


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
    ("KEYWAY_ADMIN_HOST", ("server", "admin_host"), str),
    ("KEYWAY_ADMIN_PORT", ("server", "admin_port"), int),
    ("KEYWAY_WORKERS", ("server", "workers"), int),
    ("KEYWAY_LOG_LEVEL", ("server", "log_level"), str),
    ("KEYWAY_MAX_BODY_BYTES", ("server", "max_body_bytes"), int),
    ("SHUTDOWN_TIMEOUT_SECONDS", ("server", "shutdown_timeout_s"), float),
    ("KEYWAY_CORS_ORIGINS", ("server", "cors_origins"), _names),
    ("KEYWAY_TRUSTED_PROXY_HOPS", ("server", "trusted_proxy_hops"), int),
    ("KEYWAY_ALLOW_PRIVATE_UPSTREAMS", ("server", "allow_private_upstreams"), _flag),
    ("KEYWAY_UPSTREAM_HOSTS_ALLOWED", ("server", "upstream_hosts_allowed"), _names),
    ("KEY_COOLDOWN_SECONDS", ("routing", "cooldown_s"), float),
    ("KEYWAY_DEGRADED_REPLICAS", ("routing", "degraded_replicas"), int),
    ("KEYWAY_CLIENT_MAX_CONCURRENCY", ("routing", "client_max_concurrency"), int),
)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, path, kind in _ENV_OVERRIDES:
        value = env.get(name)
        if value is None or value == "":
            continue
        try:
            converted: Any = kind(value.lower() if path[-1] == "log_level" else value)
        except ValueError:
            problems.append(f"{name}: {value!r} is not valid here")
            continue
        _set(raw, path, converted)
    return problems


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay the environment's knobs (REDIS_URL, KEYWAY_PORT, ...) on the parsed file."""
    problems = _apply_env(raw, env)
    if problems:
        raise ConfigError(*problems)
    return raw


# -- schema: every field of every section, against gateway/config.py -------------------------------


def _at(path: str, key: object) -> str:
    """`path.key`; a name that would not read as one (empty, spaces, not a string) is quoted."""
    if isinstance(key, str) and key and not any(c.isspace() or c in "[]" for c in key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _got(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _expected(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct | dict):
        return "mapping"
    origin = typing.get_origin(tp)
    if origin is dict:
        return "mapping"
    if origin is list:
        return "list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in typing.get_args(tp))
    if tp is float:
        return "number"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _did_you_mean(word: object, choices: Iterable[str]) -> str | None:
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def _placeholder(value: object, path: str, out: list[str]) -> bool:
    """A `${...}` left in a value (Keyway expands none): a problem naming the field."""
    if not isinstance(value, str):
        return False
    match = _PLACEHOLDER.search(value)
    if match is None:
        return False
    out.append(
        f"{path}: unresolved placeholder {match.group(0)}: Keyway does not expand ${{...}} "
        f'in config files; write the value itself (secrets: "env:NAME")'
    )
    return True


def _check_struct(value: object, tp: type[msgspec.Struct], path: str, out: list[str]) -> None:
    where = path or "config"
    if not isinstance(value, dict):
        out.append(f"{where}: expected mapping, got {_got(value)}")
        return
    fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
    for key, item in value.items():
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            hint = _did_you_mean(key, fields)
            more = f"did you mean `{hint}`?" if hint else f"allowed: {', '.join(fields)}"
            out.append(f"{_at(path, key)}: unknown field; {more}")
            continue
        _check(item, field.type, _at(path, key), out)
    for name, field in fields.items():
        if field.required and name not in value:
            out.append(f"{_at(path, name)}: required field is missing")


def _check(value: object, tp: Any, path: str, out: list[str]) -> None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        _check_struct(value, tp, path, out)
        return
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            _check(value, rest[0], path, out)
            return
    if _placeholder(value, path, out):
        return
    if origin is Literal:
        if not (isinstance(value, str) and value in args):
            allowed = [str(arg) for arg in args]
            hint = _did_you_mean(value, allowed)
            shown = repr(value) if isinstance(value, str | int | float | bool) else _got(value)
            out.append(
                f"{path}: {shown} is not allowed; expected one of: {', '.join(allowed)}"
                + (f"; did you mean `{hint}`?" if hint else "")
            )
        return
    if origin is list:
        if not isinstance(value, list):
            out.append(f"{path}: expected list, got {_got(value)}")
            return
        for i, item in enumerate(value):
            _check(item, args[0], f"{path}[{i}]", out)
        return
    if origin is dict:
        if not isinstance(value, dict):
            out.append(f"{path}: expected mapping, got {_got(value)}")
            return
        for key, item in value.items():
            if not isinstance(key, str):
                out.append(f"{_at(path, key)}: a name must be a string, got {_got(key)}")
                continue
            _check(item, args[1], _at(path, key), out)
        return
    if origin is Annotated:  # a bound (`Meta(ge=1)`): the type first, then msgspec's words
        before = len(out)
        _check(value, args[0], path, out)
        if len(out) == before:
            try:
                msgspec.convert(value, tp, strict=False)
            except msgspec.ValidationError as exc:  # "Expected `int` >= 1"
                bound = str(exc).removeprefix("Expected ").replace("`", "")
                out.append(f"{path}: expected {bound}, got {value!r}")
        return
    try:
        msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError:
        out.append(f"{path}: expected {_expected(tp)}, got {_got(value)}")


# -- cross-references and limits, on the document (so they are reported with schema problems) -----


def _int(value: object) -> int | None:
    try:
        return msgspec.convert(value, int, strict=False)
    except msgspec.ValidationError:
        return None


def _dict(value: object) -> dict[Any, Any] | None:
    return value if isinstance(value, dict) else None


def _items(value: object) -> list[tuple[int, dict[Any, Any]]]:
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _unknown(kind: str, name: object, known: Iterable[str]) -> str:
    hint = _did_you_mean(name, known)
    return f"unknown {kind} {name!r}" + (f"; did you mean `{hint}`?" if hint else "")


def _check_provider(
    name: object, provider: dict[Any, Any], allow_private: bool, out: list[str]
) -> None:
    where = _at("providers", name)
    base_url = provider.get("base_url")
    if isinstance(base_url, str) and not _PLACEHOLDER.search(base_url):
        try:  # the admin API's policy: metadata and link-local hosts, in every spelling
            check_base_url(base_url, allow_private=allow_private)
        except UnsafeUpstream as exc:
            out.append(f"{where}.{exc}")
    keys = provider.get("keys")
    if isinstance(keys, list) and not keys:
        out.append(f"{where}.keys: at least one key is required")
    if provider.get("kind") == "azure-openai" and not provider.get("api_version"):
        out.append(f"{where}.api_version: required for kind azure-openai")
    seen: set[str] = set()
    for i, key in _items(keys):
        key_id = key.get("id")
        if isinstance(key_id, str):
            if not _ID.match(key_id):
                out.append(f"{where}.keys[{i}].id: use 1-64 of A-Z a-z 0-9 . _ -")
            elif key_id in seen:
                out.append(f"{where}.keys[{i}].id: duplicate id {key_id!r}")
            seen.add(key_id)
        for limit in ("rpm", "tpm", "max_concurrency"):
            value = _int(key.get(limit))
            if value is not None and value <= 0:
                out.append(f"{where}.keys[{i}].{limit}: must be positive")
        weight = _int(key.get("weight"))
        if weight is not None and weight < 0:
            out.append(f"{where}.keys[{i}].weight: must not be negative")


def _bool(value: object) -> bool:
    try:
        return msgspec.convert(value, bool, strict=False)
    except msgspec.ValidationError:
        return False


def _check_server(server: dict[Any, Any], out: list[str]) -> None:
    admin_port = _int(server.get("admin_port"))
    if admin_port is not None and not 1 <= admin_port <= 65535:
        out.append("server.admin_port: must be 1-65535")
    elif admin_port is not None and admin_port == _int(server.get("port", 8080)):
        host = server.get("host", "127.0.0.1")
        if server.get("admin_host") in (None, host):  # on one address both would share it
            out.append("server.admin_port: must differ from server.port")
    if server.get("admin_host") is not None and server.get("admin_port") is None:
        out.append("server.admin_host: set server.admin_port too (KEYWAY_ADMIN_PORT)")
    hops = _int(server.get("trusted_proxy_hops"))
    if hops is not None and not 0 <= hops <= 16:
        out.append("server.trusted_proxy_hops: must be between 0 and 16")
    hosts = server.get("upstream_hosts_allowed")
    for i, host in enumerate(hosts if isinstance(hosts, list) else []):
        if isinstance(host, str) and (
            not host or any(c.isspace() or c in "/@?#" for c in host) or "://" in host
        ):
            out.append(f"server.upstream_hosts_allowed[{i}]: a bare host name, e.g. api.openai.com")


def _check_references(raw: dict[str, Any], out: list[str]) -> None:
    providers = _dict(raw.get("providers"))
    models = _dict(raw.get("models"))
    server = _dict(raw.get("server")) or {}
    if providers is not None:
        if not providers:
            out.append("providers: at least one provider is required")
        allow_private = _bool(server.get("allow_private_upstreams"))
        for name, provider in providers.items():
            if isinstance(provider, dict):
                _check_provider(name, provider, allow_private, out)
    if models is not None:
        if not models:
            out.append("models: at least one model alias is required")
        known_providers = [str(p) for p in providers] if providers is not None else None
        for alias, model in models.items():
            if not isinstance(model, dict):
                continue
            where = _at("models", alias)
            deployments = model.get("deployments")
            if isinstance(deployments, list) and not deployments:
                out.append(f"{where}.deployments: at least one deployment is required")
            for i, dep in _items(deployments):
                limit = _int(dep.get("max_output_tokens"))
                if limit is not None and limit < 1:
                    out.append(f"{where}.deployments[{i}].max_output_tokens: must be positive")
                target = dep.get("provider")
                if (
                    known_providers is not None
                    and isinstance(target, str)
                    and target not in known_providers
                ):
                    problem = _unknown("provider", target, known_providers)
                    out.append(f"{where}.deployments[{i}].provider: {problem}")
            fallbacks = model.get("fallbacks")
            for i, fallback in enumerate(fallbacks if isinstance(fallbacks, list) else []):
                if not isinstance(fallback, str):
                    continue
                if fallback == alias:
                    out.append(f"{where}.fallbacks[{i}]: an alias cannot fall back to itself")
                elif fallback not in models:
                    problem = _unknown("model", fallback, map(str, models))
                    out.append(f"{where}.fallbacks[{i}]: {problem}")
    ids: set[str] = set()
    for i, client in _items(raw.get("clients")):
        client_id = client.get("id")
        if isinstance(client_id, str):
            if not _ID.match(client_id):
                out.append(f"clients[{i}].id: use 1-64 of A-Z a-z 0-9 . _ -")
            elif client_id in ids:
                out.append(f"clients[{i}].id: duplicate id {client_id!r}")
            ids.add(client_id)
        allowed = client.get("models")
        if models is None or not isinstance(allowed, list):
            continue
        for j, alias in enumerate(allowed):
            if isinstance(alias, str) and alias != "*" and alias not in models:
                problem = _unknown("model", alias, map(str, models))
                out.append(f"clients[{i}].models[{j}]: {problem}")
    _check_server(server, out)
    workers = _int(server.get("workers"))
    if workers is not None and workers < 1:
        out.append("server.workers: must be at least 1")
    attempts = _int((_dict(raw.get("routing")) or {}).get("max_attempts"))
    if attempts is not None and attempts < 1:
        out.append("routing.max_attempts: must be at least 1")


def _check_secrets(raw: dict[str, Any], env: Mapping[str, str] | None, out: list[str]) -> None:
    refs: list[tuple[object, str]] = []
    for name, provider in (_dict(raw.get("providers")) or {}).items():
        if isinstance(provider, dict):
            for i, key in _items(provider.get("keys")):
                refs.append((key.get("secret"), f"{_at('providers', name)}.keys[{i}].secret"))
    refs += [(c.get("key"), f"clients[{i}].key") for i, c in _items(raw.get("clients"))]
    for ref, field in refs:
        if isinstance(ref, str) and not _PLACEHOLDER.search(ref):
            try:
                resolve_secret(ref, field, env)
            except ConfigError as exc:
                out.extend(exc.problems)


def config_problems(
    raw: object, env: Mapping[str, str] | None = None, *, secrets: bool = False
) -> list[str]:
    """Every problem of a parsed document, one line each (empty: valid).

    With `secrets`, every `env:NAME` reference must also resolve in `env` (default os.environ).
    """
    if not isinstance(raw, dict):
        return ["config: the document must be a mapping"]
    problems: list[str] = []
    _check_struct(raw, Config, "", problems)
    _check_references(raw, problems)
    if secrets:
        _check_secrets(raw, env, problems)
    return problems


def parse_config(
    raw: Any, env: Mapping[str, str] | None = None, *, secrets: bool = False
) -> Config:
    """Validate an already parsed document (a dict) into a `Config`; raises `ConfigError`."""
    problems = config_problems(raw, env, secrets=secrets)
    if problems:
        raise ConfigError(*problems)
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:  # a case the walk above does not know: msgspec's words
        text = str(exc)
        message, sep, where = text.rpartition(" - at `$.")
        if sep:
            raise ConfigError(f"{where.rstrip('`')}: {message}") from None
        raise ConfigError(f"config: {text}") from None


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, secrets: bool = False
) -> Config:
    """Read `path`, overlay the environment, validate; raises `ConfigError` with every problem."""
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
    problems = _apply_env(raw, env)
    problems += config_problems(raw, env, secrets=secrets)
    if problems:
        raise ConfigError(*problems)
    return parse_config(raw)


def check_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """What `keyway check-config` and start-up run: load, validate, resolve every secret."""
    from gateway.routing.table import RouteTable

    cfg = load_config(path, env, secrets=True)
    RouteTable(cfg, env)
    return cfg
