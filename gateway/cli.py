"""The `keyway` command: serve, demo, check-config, fake-provider, clients, keys, usage, secrets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.admin.commands import add_admin_commands
from gateway.config_load import ConfigError, check_config, report
from gateway.demo import DEMO_HOST, DEMO_PORT, FAKE_HOST, FAKE_PORT

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import ListenError, reload_problem, serve

    for flag, env in (("host", "KEYWAY_HOST"), ("port", "KEYWAY_PORT"), ("workers", "KEYWAY_WORKERS"),
                      ("log_level", "KEYWAY_LOG_LEVEL"), ("admin_host", "KEYWAY_ADMIN_HOST"),
                      ("admin_port", "KEYWAY_ADMIN_PORT")):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = str(value)
    if args.config_overwrite:
        os.environ["KEYWAY_CONFIG_OVERWRITE"] = "1"
    if args.reload and (problem := reload_problem()):
        print(f"keyway: {problem}", file=sys.stderr)
        return 2
    try:
        cfg = check_config(args.config)
    except ConfigError as exc:
        print(report(exc, args.config), file=sys.stderr)
        return 2
    try:
        serve(Path(args.config), cfg, reload=args.reload)
    except ListenError as exc:
        print(f"keyway: {exc}", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        cfg = check_config(args.config)  # the same checks as start-up, secrets resolved
    except ConfigError as exc:
        print(report(exc, args.config), file=sys.stderr)
        return 2
    keys = sum(len(p.keys) for p in cfg.providers.values())
    print(
        f"ok: {len(cfg.providers)} providers, {keys} upstream keys, "
        f"{len(cfg.models)} model aliases, {len(cfg.clients)} client keys"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(host=args.host, port=args.port, fake_port=args.fake_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyway", description="Keyway LLM API gateway")
    parser.add_argument("--version", action="version", version=f"keyway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="path to keyway.yaml")
    serve.add_argument("--host", help="listen address (KEYWAY_HOST)")
    serve.add_argument("--port", type=int, help="listen port (KEYWAY_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (KEYWAY_WORKERS)")
    serve.add_argument(
        "--admin-port",
        type=int,
        help="serve the admin API, /docs and /metrics on this port, off --port (KEYWAY_ADMIN_PORT)",
    )
    serve.add_argument("--admin-host", help="the admin port's listen address (KEYWAY_ADMIN_HOST)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart the workers when gateway code changes (development; needs watchfiles: "
        "pip install 'granian[reload]')",
    )
    serve.add_argument(
        "--config-overwrite",
        action="store_true",
        help="the file wins: drop runtime (admin API) records of the ids it defines "
        "(KEYWAY_CONFIG_OVERWRITE=1)",
    )
    serve.set_defaults(func=_serve)

    check = sub.add_parser(
        "check-config",
        help="validate a config file and exit",
        description="Validate a config file as start-up does (schema, references, env: secrets "
        "and the environment's overrides) and list every problem; exit status 2 if any.",
    )
    check.add_argument("config")
    check.set_defaults(func=_check)

    demo = sub.add_parser(
        "demo",
        help="run the fake provider and the gateway on the demo config",
        description="Run the bundled fake LLM provider and the gateway on the demo config "
        "(gateway/demo.yaml, embedded store, no Redis, no real provider keys). "
        "Client key: sk-keyway-demo.",
    )
    demo.add_argument(
        "--host",
        default=DEMO_HOST,
        help="address the gateway listens on (default: %(default)s)",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=DEMO_PORT,
        help="port the gateway listens on (default: %(default)s)",
    )
    demo.add_argument(
        "--fake-port",
        type=int,
        default=FAKE_PORT,
        help=f"port of the fake provider, on {FAKE_HOST} (default: %(default)s)",
    )
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
