"""`keyway clients|keys|usage|secrets`: the operator's CLI, speaking HTTP to the admin API.

The admin API is found at KEYWAY_ADMIN_URL (default http://127.0.0.1:8080) with the admin key in
KEYWAY_ADMIN_KEY. Upstream secrets are read from an environment variable (--secret-env) or stdin,
never from the command line (where `ps` would show them). `keyway secrets rotate|status` talk to
Redis directly (REDIS_URL, KEYWAY_REDIS_PREFIX, KEYWAY_MASTER_KEY) because they may run while no
replica has the new master key loaded yet.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

__all__ = ["add_admin_commands"]

_encoder = msgspec.json.Encoder()


class CommandError(Exception):
    """Printed as `keyway: <message>`, exit status 1."""


def _api(method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
    base = os.environ.get("KEYWAY_ADMIN_URL", "http://127.0.0.1:8080").rstrip("/")
    key = os.environ.get("KEYWAY_ADMIN_KEY")
    if not key:
        raise CommandError("set KEYWAY_ADMIN_KEY to an admin key (one of KEYWAY_ADMIN_KEYS)")
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    content = None if body is None else _encoder.encode(body)
    try:
        response = httpx.request(
            method, base + path, headers=headers, content=content, params=params, timeout=30
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the admin API at {base}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        try:
            detail = msgspec.json.decode(response.content).get("detail", response.text)
        except (msgspec.DecodeError, AttributeError):
            detail = response.text[:300]
        raise CommandError(f"{response.status_code}: {detail}")
    return msgspec.json.decode(response.content) if response.content else None


def _q(part: str) -> str:
    return quote(part, safe="")


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _show(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None) -> None:
    if getattr(args, "json", False) or columns is None:
        print(msgspec.json.format(_encoder.encode(data), indent=2).decode())
    else:
        print(_table(data if isinstance(data, list) else [data], columns))


def _limits(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if getattr(args, "models", None):
        out["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    return out


# -- clients ----------------------------------------------------------------------------------

_CLIENT_COLUMNS = (
    "id", "key_hint", "rpm", "tpm", "models", "budget_daily_usd", "max_concurrency", "origin",
)  # fmt: skip
_CLIENT_LIMITS = ("rpm", "tpm", "budget_daily_usd", "budget_monthly_usd", "max_concurrency")
_DEFAULT = "default"
"""`--max-concurrency default`: null, the routing default (routing.client_max_concurrency)."""


def _concurrency(text: str) -> int | str:
    if text == _DEFAULT:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or {_DEFAULT!r}: {text!r}") from None


def _client_limits(args: argparse.Namespace) -> dict[str, Any]:
    body = _limits(args, _CLIENT_LIMITS)
    if body.get("max_concurrency") == _DEFAULT:
        body["max_concurrency"] = None
    return body


def _clients_create(args: argparse.Namespace) -> None:
    body = {"id": args.id, **_client_limits(args)}
    created = _api("POST", "/admin/clients", body)
    print(f"client {args.id} created; its key is shown this once:", file=sys.stderr)
    print(created["key"])


def _clients_list(args: argparse.Namespace) -> None:
    _show(args, _api("GET", "/admin/clients"), _CLIENT_COLUMNS)


def _clients_set(args: argparse.Namespace) -> None:
    body = _client_limits(args)
    if not body:
        raise CommandError(
            "nothing to change: give --rpm, --tpm, --models, a budget or --max-concurrency"
        )
    _show(args, _api("PATCH", f"/admin/clients/{_q(args.id)}", body), _CLIENT_COLUMNS)


def _clients_revoke(args: argparse.Namespace) -> None:
    _api("POST", f"/admin/clients/{_q(args.id)}/revoke")
    print(f"client {args.id} revoked")


# -- upstream keys ----------------------------------------------------------------------------

_KEY_COLUMNS = ("provider", "id", "secret", "rpm", "tpm", "max_concurrency", "origin", "disabled")
_KEY_LIMITS = ("rpm", "tpm", "max_concurrency", "weight")


def _read_secret(args: argparse.Namespace) -> str:
    if args.secret_env:
        secret = os.environ.get(args.secret_env, "")
        if not secret:
            raise CommandError(f"environment variable {args.secret_env} is empty or unset")
        return secret.strip()
    if sys.stdin.isatty():
        return getpass.getpass("upstream secret: ").strip()
    return sys.stdin.readline().strip()


def _keys_add(args: argparse.Namespace) -> None:
    body = {"id": args.id, "secret": _read_secret(args), **_limits(args, _KEY_LIMITS)}
    _show(args, _api("POST", f"/admin/providers/{_q(args.provider)}/keys", body), _KEY_COLUMNS)


def _keys_list(args: argparse.Namespace) -> None:
    providers = (
        [args.provider] if args.provider else [p["name"] for p in _api("GET", "/admin/providers")]
    )
    rows: list[dict[str, Any]] = []
    for provider in providers:
        rows.extend(_api("GET", f"/admin/providers/{_q(provider)}/keys"))
    _show(args, rows, _KEY_COLUMNS)


def _keys_show(args: argparse.Namespace) -> None:
    _show(args, _api("GET", f"/admin/providers/{_q(args.provider)}/keys/{_q(args.id)}"))


def _keys_state(args: argparse.Namespace, action: str) -> None:
    path = f"/admin/providers/{_q(args.provider)}/keys/{_q(args.id)}/{action}"
    body = {"reason": args.reason} if action == "disable" and args.reason else None
    _show(args, _api("POST", path, body), _KEY_COLUMNS)


def _keys_replace(args: argparse.Namespace) -> None:
    path = f"/admin/providers/{_q(args.provider)}/keys/{_q(args.id)}/secret"
    _show(args, _api("PUT", path, {"secret": _read_secret(args)}), _KEY_COLUMNS)


# -- usage ------------------------------------------------------------------------------------

_USAGE_COLUMNS = ("start", "requests", "tokens_in", "tokens_out", "cost_usd", "errors")


def _usage(args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"period": args.period}
    if args.last:
        params["last"] = args.last
    if args.client:
        data = _api("GET", f"/admin/usage/clients/{_q(args.client)}", params=params)
    elif args.key:
        provider, sep, key_id = args.key.partition("/")
        if not sep:
            raise CommandError("--key takes PROVIDER/KEY_ID")
        data = _api("GET", f"/admin/usage/keys/{_q(provider)}/{_q(key_id)}", params=params)
    else:
        models = _api("GET", "/admin/usage/models", params=params)
        rows = [{"provider": m["provider"], "model": m["model"], **m["total"]} for m in models]
        _show(args, models if args.json else rows, None if args.json else
              ("provider", "model", "requests", "tokens_in", "tokens_out", "cost_usd", "errors"))  # fmt: skip
        return
    if args.json:
        _show(args, data)
        return
    print(f"{data['subject']}, by {data['period']}:")
    print(_table([*data["rows"], {**data["total"], "start": "total"}], _USAGE_COLUMNS))


# -- secrets (Redis directly) -----------------------------------------------------------------


async def _secrets(args: argparse.Namespace) -> None:
    from gateway.admin.usage import secrets_status
    from gateway.config_load import load_config
    from gateway.control.store import ConfigStore
    from gateway.secrets.keyring import load_keyring
    from gateway.secrets.rotation import census, rotate
    from gateway.state.connection import open_redis
    from gateway.state.store import SharedState

    cfg = load_config(args.config) if args.config else None
    url = os.environ.get("REDIS_URL") or (cfg.redis.url if cfg else None)
    prefix = os.environ.get("KEYWAY_REDIS_PREFIX") or (cfg.redis.prefix if cfg else "kw")
    if not url:
        raise CommandError(
            "set REDIS_URL (or --config): the embedded store lives inside the server"
        )
    keyring = load_keyring()
    state = SharedState(open_redis(url, timeout_s=5.0), prefix=prefix)
    try:
        store = ConfigStore(state)
        if args.action == "rotate":
            if keyring is None:
                raise CommandError("set KEYWAY_MASTER_KEY (new key first, then the old ones)")
            await state.load_scripts()
            report = await rotate(store, keyring)
            print(f"resealed under {keyring.current}: {report.resealed}; already current: "
                  f"{report.already_current}; retried after a concurrent change: "
                  f"{report.retried_after_concurrent_change}")  # fmt: skip
            for failure in report.failed:
                print(f"failed: {failure}", file=sys.stderr)
            if report.failed:
                raise CommandError(f"{len(report.failed)} records were not resealed")
        status = secrets_status(keyring, await census(store))
        _show(args, msgspec.to_builtins(status))
    finally:
        await state.aclose()


def _run(func: Any) -> Any:
    def runner(args: argparse.Namespace) -> int:
        try:
            result = func(args)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except CommandError as exc:
            print(f"keyway: {exc}", file=sys.stderr)
            return 1
        return 0

    return runner


def add_admin_commands(sub: Any) -> None:
    """Add `clients`, `keys`, `usage` and `secrets` to the `keyway` parser's subcommands."""
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print the API's JSON")

    clients = sub.add_parser("clients", help="client keys (admin API)").add_subparsers(
        dest="action", required=True
    )
    c = clients.add_parser("create", help="create a client key; prints the key once")
    c.add_argument("id")
    c.set_defaults(func=_run(_clients_create))
    s = clients.add_parser(
        "set", help="change a client's limits, budgets or models", parents=[json_flag]
    )
    s.add_argument("id")
    s.set_defaults(func=_run(_clients_set))
    for p in (c, s):
        p.add_argument("--rpm", type=int)
        p.add_argument("--tpm", type=int)
        p.add_argument("--models", help="comma-separated aliases, * for all")
        p.add_argument(
            "--budget-daily", dest="budget_daily_usd", type=float, help="USD per UTC day"
        )
        p.add_argument("--budget-monthly", dest="budget_monthly_usd", type=float)
        p.add_argument(
            "--max-concurrency",
            type=_concurrency,
            metavar="N",
            help="requests in flight at once per worker process; 0 = no cap, "
            "`default` = routing.client_max_concurrency",
        )
    ls = clients.add_parser("list", help="list client keys", parents=[json_flag])
    ls.set_defaults(func=_run(_clients_list))
    rv = clients.add_parser("revoke", help="revoke a client key on every replica")
    rv.add_argument("id")
    rv.set_defaults(func=_run(_clients_revoke))

    keys = sub.add_parser("keys", help="upstream keys (admin API)").add_subparsers(
        dest="action", required=True
    )
    add = keys.add_parser(
        "add",
        help="add an upstream key; the secret comes from stdin or --secret-env",
        parents=[json_flag],
    )
    rep = keys.add_parser(
        "replace-secret", help="replace a key's secret (stdin or --secret-env)", parents=[json_flag]
    )
    for p in (add, rep):
        p.add_argument("provider")
        p.add_argument("id")
        p.add_argument("--secret-env", help="read the secret from this environment variable")
    for flag in ("--rpm", "--tpm", "--max-concurrency", "--weight"):
        add.add_argument(flag, type=int)
    add.set_defaults(func=_run(_keys_add))
    rep.set_defaults(func=_run(_keys_replace))
    kl = keys.add_parser("list", help="list keys, secrets masked", parents=[json_flag])
    kl.add_argument("provider", nargs="?")
    kl.set_defaults(func=_run(_keys_list))
    show = keys.add_parser("show", help="a key's live state and today's usage")
    show.add_argument("provider")
    show.add_argument("id")
    show.set_defaults(func=_run(_keys_show), json=True)
    for action in ("disable", "enable"):
        p = keys.add_parser(action, help=f"{action} a key on every replica", parents=[json_flag])
        p.add_argument("provider")
        p.add_argument("id")
        if action == "disable":
            p.add_argument("--reason", default="")
        p.set_defaults(func=_run(lambda a, act=action: _keys_state(a, act)))

    usage = sub.add_parser("usage", help="usage by hour or day (admin API)", parents=[json_flag])
    who = usage.add_mutually_exclusive_group()
    who.add_argument("--client", help="a client key id")
    who.add_argument("--key", help="PROVIDER/KEY_ID of an upstream key")
    usage.add_argument("--period", choices=["hour", "day"], default="day")
    usage.add_argument("--last", type=int, help="buckets to show (default 24 hours / 7 days)")
    usage.set_defaults(func=_run(_usage))

    secrets = sub.add_parser(
        "secrets", help="sealed upstream secrets (Redis directly)", parents=[json_flag]
    )
    secrets.add_argument("action", choices=["rotate", "status"])
    secrets.add_argument("--config", help="keyway.yaml, for redis.url and redis.prefix")
    secrets.set_defaults(func=_run(_secrets), json=True)
