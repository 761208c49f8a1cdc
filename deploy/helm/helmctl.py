"""Run `helm lint` and `helm template` offline through the Helm SDK bundled by helm-python-sdk.

helm-python-sdk ships Helm v4 as a shared library (no `helm` binary), so this module gives CI
and the tests the two commands they need, with helm's own flag names:

    python deploy/helm/helmctl.py lint deploy/helm/keyway [-f values.yaml]... [--set k=v]... [--strict]
    python deploy/helm/helmctl.py template RELEASE deploy/helm/keyway [-f values.yaml]... \
        [--set k=v]... [-n NAMESPACE]

`template` prints the rendered manifests as one multi-document YAML stream (NOTES.txt left
out), after validating the values against the chart's values.schema.json. Exit status 1 on
any lint error (and, with --strict, any warning), schema violation or render failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm

__all__ = ["lint", "load_values", "render", "render_stream"]

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge like helm merges several -f files: maps recursively, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def load_values(
    values_files: list[str] | None = None, set_values: list[str] | None = None
) -> dict[str, Any]:
    """User-supplied values from -f files then --set expressions, later ones winning."""
    values: dict[str, Any] = {}
    for path in values_files or []:
        values = _deep_merge(values, helm.values_from_yaml(Path(path).read_text()))
    for expression in set_values or []:
        values = _deep_merge(values, helm.parse_set_string(expression))
    return values


def render(
    chart_dir: str | Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "keyway",
    namespace: str = "default",
) -> dict[str, str]:
    """Validate values against the chart schema, then render every template offline.

    Returns template path -> rendered text, without templates that render to nothing.
    """
    with helm.Chart.load(chart_dir) as chart:
        chart.validate_schema(values or {})
        rendered = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    return {path: text for path, text in sorted(rendered.items()) if text.strip()}


def render_stream(manifests: dict[str, str]) -> str:
    """The `helm template` output: every manifest but NOTES.txt, with a Source comment."""
    documents = [
        f"---\n# Source: {path}\n{text.strip()}\n"
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
    ]
    return "".join(documents)


def lint(chart_dir: str | Path, values: dict[str, Any] | None = None, *, strict: bool) -> int:
    """Print helm lint's findings; return how many count as failures."""
    report = helm.lint(chart_dir, values or None, strict=strict)
    failures = 0
    for message in report.get("messages", []):
        severity = int(message.get("severity", 0))
        print(f"[{SEVERITY.get(severity, severity)}] {message.get('path')}: {message.get('error')}")
        if severity >= 3 or (strict and severity >= 2):
            failures += 1
    for error in report.get("errors") or []:
        print(f"[ERROR] {error}")
        failures += 1
    print(f"{report.get('total_charts_linted', 0)} chart(s) linted, {failures} failure(s)")
    return failures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helmctl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("lint", "template"):
        command = commands.add_parser(name)
        if name == "template":
            command.add_argument("release")
            command.add_argument("-n", "--namespace", default="default")
        command.add_argument("chart")
        command.add_argument("-f", "--values", action="append", default=[])
        command.add_argument("--set", action="append", default=[])
        if name == "lint":
            command.add_argument("--strict", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        values = load_values(args.values, args.set)
        if args.command == "lint":
            return 1 if lint(args.chart, values, strict=args.strict) else 0
        manifests = render(args.chart, values, release=args.release, namespace=args.namespace)
    except helm.HelmError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render_stream(manifests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
