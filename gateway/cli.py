"""The `keyway` command: serve, demo, check-config, fake-provider, clients, keys, usage, secrets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.admin.commands import add_admin_commands
from gateway.config_load import ConfigError, load_config

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    for flag, env in (("host", "KEYWAY_HOST"), ("port", "KEYWAY_PORT"), ("workers", "KEYWAY_WORKERS"),
                      ("log_level", "KEYWAY_LOG_LEVEL")):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = str(value)
    if args.config_overwrite:
        os.environ["KEYWAY_CONFIG_OVERWRITE"] = "1"
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"keyway: invalid config: {exc}", file=sys.stderr)
        return 2
    serve(Path(args.config), cfg, reload=args.reload)
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        from gateway.routing.table import RouteTable

        RouteTable(cfg)  # resolves every secret reference
    except ConfigError as exc:
        print(f"keyway: invalid config: {exc}", file=sys.stderr)
        return 2
    keys = sum(len(p.keys) for p in cfg.providers.values())
    print(
        f"ok: {len(cfg.providers)} providers, {keys} upstream keys, "
        f"{len(cfg.models)} model aliases, {len(cfg.clients)} client keys"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(port=args.port, fake_port=args.fake_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyway", description="Keyway LLM API gateway")
    parser.add_argument("--version", action="version", version=f"keyway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="path to keyway.yaml")
    serve.add_argument("--host", help="listen address (KEYWAY_HOST)")
    serve.add_argument("--port", type=int, help="listen port (KEYWAY_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (KEYWAY_WORKERS)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--reload", action="store_true", help="restart on code changes (development)"
    )
    serve.add_argument(
        "--config-overwrite",
        action="store_true",
        help="the file wins: drop runtime (admin API) records of the ids it defines "
        "(KEYWAY_CONFIG_OVERWRITE=1)",
    )
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=_check)

    demo = sub.add_parser("demo", help="run the fake provider and the gateway on the demo config")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--fake-port", type=int, default=9100)
    demo.set_defaults(func=_demo)

    sub.add_parser(
        "fake-provider",
        help="run the fake LLM provider (tests, demos, load tests); --help for its flags",
        add_help=False,
    )

    add_admin_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fake-provider"]:  # its own flags: python -m gateway.fake_provider --help
        from gateway.fake_provider.__main__ import main as fake_main

        fake_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
