"""Every config example in the repository passes `keyway check-config`; a bad config, a busy port
and a `${...}` placeholder each get a report an operator can act on.

The examples are found, not listed: any YAML file whose document is a Keyway config (top-level
`providers`/`models`), and every Helm values file with a `config:` section (the chart renders it
verbatim into keyway.yaml; an overlay such as values-ha.yaml is merged over the chart's defaults
the way Helm coalesces values).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config_load import _ENV_OVERRIDES, ConfigError, parse_config
from gateway.demo import demo_config_text

ROOT = Path(__file__).resolve().parents[2]
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", "build", "dist"}
_ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
_COMPOSE_DEFAULT = re.compile(r"\$\{\w+:-([^}]*)\}")
_COMPOSE_REQUIRED = re.compile(r"\$\{\w+:\?[^}]*\}")
"""`${X:?message}`: compose refuses to start without it; the operator supplies the value."""


@dataclass
class Example:
    """One config example: the text `keyway check-config` sees, and the environment it runs in."""

    name: str
    text: str
    env: dict[str, str] = field(default_factory=dict)
    chart: Path | None = None
    """For a Helm values file: the chart it configures."""
    overlay: Path | None = None
    """For a values file other than the chart's own values.yaml: that file."""


def _yaml_files() -> Iterator[Path]:
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                yield Path(top) / name


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):  # Helm templates and the like
        return None


def _coalesce(base: Any, over: Any) -> Any:
    """Helm's values merge: maps merge key by key, null deletes, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    merged = dict(base)
    for key, value in over.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _coalesce(base.get(key), value)
    return merged


def _chart_of(values_file: Path) -> Path | None:
    """The chart a values file configures: its own folder's, else one a folder down."""
    folder = values_file.parent
    for chart in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if (chart / "Chart.yaml").exists() and (chart / "values.yaml").exists():
            return chart
    return None


def _helm_env(values: dict[str, Any]) -> dict[str, str]:
    """The overrides the chart's Deployment sets (templates/deployment.yaml)."""
    env = {
        "KEYWAY_HOST": "0.0.0.0",
        "KEYWAY_PORT": str(values.get("containerPort", 8080)),
        "KEYWAY_WORKERS": str(values.get("workers", 1)),
        "KEYWAY_LOG_LEVEL": str(values.get("logLevel", "info")),
        "SHUTDOWN_TIMEOUT_SECONDS": str(values.get("shutdownTimeoutSeconds", 600)),
    }
    if values.get("adminPort", 9090) is not None:
        env["KEYWAY_ADMIN_PORT"] = str(values.get("adminPort", 9090))
    # the largest fleet's workers (templates/_helpers.tpl keyway.degradedReplicas)
    autoscaling = values.get("autoscaling") or {}
    pods = autoscaling.get("maxReplicas", 10) if autoscaling.get("enabled") else None
    fleet = (pods or values.get("replicaCount", 2)) * values.get("workers", 1)
    own = ((values.get("config") or {}).get("routing") or {}).get("degraded_replicas")
    if values.get("degradedReplicas") is not None:
        env["KEYWAY_DEGRADED_REPLICAS"] = str(values["degradedReplicas"])
    elif own is None:
        env["KEYWAY_DEGRADED_REPLICAS"] = str(fleet)
    redis = values.get("redis") or {}
    env["REDIS_URL"] = redis.get("url") or "redis://redis-from-secret:6379/0"
    return env


def _compose_env(config: Path) -> dict[str, str]:
    """The environment of a compose service that mounts `config` (defaults of ${X:-default})."""
    for path in _yaml_files():
        doc = _load(path)
        services = doc.get("services") if isinstance(doc, dict) else None
        for service in (services or {}).values():
            for mount in service.get("volumes") or []:
                # long syntax {source: ..., target: ...} or short "source:target[:mode]"
                source = mount.get("source") if isinstance(mount, dict) else mount.split(":")[0]
                if source and (path.parent / source).resolve() == config.resolve():
                    environment = service.get("environment") or {}
                    if isinstance(environment, list):  # ["NAME=value", ...]
                        environment = dict(item.partition("=")[::2] for item in environment)
                    return {
                        k: _COMPOSE_REQUIRED.sub(
                            f"operator-set-{k.lower()}", _COMPOSE_DEFAULT.sub(r"\1", str(v))
                        )
                        for k, v in environment.items()
                    }
    return {}


def find_examples() -> list[Example]:
    examples: list[Example] = []
    for path in _yaml_files():
        doc = _load(path)
        if not isinstance(doc, dict):
            continue
        name = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        if "providers" in doc or "models" in doc:
            if path == ROOT / "gateway" / "demo.yaml":
                text = demo_config_text(9100)  # the placeholder filled in as `keyway demo` does
            examples.append(Example(name, text, _compose_env(path)))
        elif isinstance(doc.get("config"), dict) and {"providers", "models"} & set(doc["config"]):
            chart = _chart_of(path)
            overlay = None if chart is None or path == chart / "values.yaml" else path
            values = _coalesce(_load(chart / "values.yaml") if overlay and chart else {}, doc)
            config = yaml.safe_dump(values["config"], sort_keys=False)
            examples.append(Example(f"{name}#config", config, _helm_env(values), chart, overlay))
    return examples


EXAMPLES = find_examples()


def test_the_known_examples_are_found() -> None:
    assert {e.name for e in EXAMPLES} >= {
        "examples/keyway.yaml",
        "gateway/demo.yaml",
        "deploy/compose/keyway.yaml",
        "deploy/helm/keyway/values.yaml#config",
        "deploy/helm/values-ha.yaml#config",
    }


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No override from the developer's shell (REDIS_URL, KEYWAY_PORT, ...) leaks in."""
    for name, _, _ in _ENV_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_config_example_passes_check_config(
    example: Example,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in example.env.items():
        clean_env.setenv(name, value)
    for name in _ENV_REF.findall(example.text):
        if name not in example.env:
            clean_env.setenv(name, f"test-secret-{name.lower()}")
    path = tmp_path / "keyway.yaml"
    path.write_text(example.text, encoding="utf-8")

    status = main(["check-config", str(path)])

    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    assert out.startswith("ok: ")


HELM_EXAMPLES = [e for e in EXAMPLES if e.chart is not None]


@pytest.mark.parametrize("example", HELM_EXAMPLES, ids=[e.name for e in HELM_EXAMPLES])
def test_a_values_file_config_is_what_the_chart_renders(example: Example) -> None:
    """The merge above is Helm's: the ConfigMap's keyway.yaml is the config checked."""
    pytest.importorskip("helm_python", reason="helm-python-sdk (Helm SDK) is not installed")
    import importlib.util

    assert example.chart is not None
    spec = importlib.util.spec_from_file_location("helmctl", ROOT / "deploy/helm/helmctl.py")
    assert spec is not None and spec.loader is not None
    helmctl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helmctl)
    values = helmctl.load_values([str(example.overlay)] if example.overlay else [])
    manifests = helmctl.render(example.chart, values, release="kw", namespace="llm")
    texts = [text for path, text in manifests.items() if not path.endswith("NOTES.txt")]
    docs = [d for text in texts for d in yaml.safe_load_all(text) if d]
    (configmap,) = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ConfigMap"]
    assert yaml.safe_load(configmap["data"]["keyway.yaml"]) == yaml.safe_load(example.text)
    # and the overrides checked with it are the ones the Deployment sets (a secret's REDIS_URL
    # cannot be rendered: the example stands in for it)
    (deployment,) = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    overrides = {name for name, _, _ in _ENV_OVERRIDES}
    rendered = {e["name"]: e["value"] for e in container["env"]
                if e["name"] in overrides and "value" in e}  # fmt: skip
    assert rendered == {k: v for k, v in example.env.items() if k != "REDIS_URL" or k in rendered}


# -- the error report ----------------------------------------------------------------------------

BAD = """
providers:
  openai:
    kind: opnai
    base_url: https://api.openai.com/v1
    keys:
      - {id: oa-1, secret: sk-1, rpm: many, max_concurency: 5}
  anthropic:
    kind: anthropic
    base_url: api.anthropic.com
    keys:
      - {id: an-1, secret: "env:KW_TEST_UNSET_SECRET"}
models:
  gpt-4o-mini:
    strategy: fastest
    deployments:
      - {provider: opneai, model: gpt-4o-mini}
server: {prot: 8080}
"""

EXPECTED = [
    "providers.openai.kind: 'opnai' is not allowed; expected one of: openai, anthropic, "
    "openai-compatible, azure-openai; did you mean `openai`?",
    "providers.openai.keys[0].rpm: expected int, got str",
    "providers.openai.keys[0].max_concurency: unknown field; did you mean `max_concurrency`?",
    "models.gpt-4o-mini.strategy: 'fastest' is not allowed; expected one of: least-utilised, "
    "weighted, priority, lowest-cost, lowest-latency",
    "server.prot: unknown field; did you mean `port`?",
    "providers.anthropic.base_url: must start with http:// or https://",
    "models.gpt-4o-mini.deployments[0].provider: unknown provider 'opneai'; did you mean `openai`?",
    "providers.anthropic.keys[0].secret: environment variable KW_TEST_UNSET_SECRET is not set",
]


def test_check_config_reports_every_problem_with_names_in_paths(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.delenv("KW_TEST_UNSET_SECRET", raising=False)
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")

    status = main(["check-config", str(path)])

    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"keyway: invalid config {path}: {len(EXPECTED)} problems"
    assert sorted(line.strip() for line in lines[1:]) == sorted(EXPECTED)
    assert "[...]" not in err


def test_unknown_fields_without_a_close_match_list_the_allowed_ones() -> None:
    doc = yaml.safe_load(demo_config_text())
    doc["routing"] = {"zzz": 1}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    (problem,) = info.value.problems
    assert problem.startswith("routing.zzz: unknown field; allowed: max_attempts, deadline_s,")


def test_a_provider_name_is_quoted_only_when_it_would_not_read_as_one() -> None:
    doc = yaml.safe_load(demo_config_text())
    doc["providers"]["my provider"] = doc["providers"].pop("fake-openai")
    doc["providers"]["my provider"]["timeout_s"] = "soon"
    doc["models"] = {"m": {"deployments": [{"provider": "my provider", "model": "x"}]}}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.problems == ("providers['my provider'].timeout_s: expected number, got str",)


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {n for n, _, _ in _ENV_OVERRIDES}}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_with_an_invalid_file_prints_the_report_and_exits(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")

    done = _cli("serve", "--config", str(path))

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"keyway: invalid config {path}: {len(EXPECTED)} problems"
    assert sorted(line.strip() for line in lines[1:]) == sorted(EXPECTED)


# -- ${...} placeholders -------------------------------------------------------------------------


def test_the_demo_template_as_is_fails_check_config_naming_both_fields(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["check-config", str(ROOT / "gateway" / "demo.yaml")])

    _, err = capsys.readouterr()
    assert status == 2
    problems = [line.strip() for line in err.splitlines()[1:]]
    assert [p.partition(":")[0] for p in problems] == [
        "providers.fake-openai.base_url",
        "providers.fake-anthropic.base_url",
    ]
    assert all("unresolved placeholder ${FAKE_PORT}" in p for p in problems)


def test_a_placeholder_anywhere_is_named_instead_of_a_type_error() -> None:
    doc = yaml.safe_load(demo_config_text())
    doc["server"] = {"port": "${PORT}"}
    doc["clients"][0]["key"] = "${DEMO_KEY}"
    with pytest.raises(ConfigError) as info:
        parse_config(doc, {}, secrets=True)
    assert [p.split(": Keyway")[0] for p in info.value.problems] == [
        "clients[0].key: unresolved placeholder ${DEMO_KEY}",
        "server.port: unresolved placeholder ${PORT}",
    ]


# -- a port in use -------------------------------------------------------------------------------

VALID = """
providers:
  p: {kind: openai, base_url: "http://127.0.0.1:9/v1", keys: [{id: k, secret: sk-test}]}
models:
  m: {deployments: [{provider: p, model: m}]}
"""


@pytest.fixture()
def busy_port() -> Iterator[int]:
    """A port something is listening on for the test's duration."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_on_a_busy_port_is_one_line_naming_it(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "keyway.yaml"
    path.write_text(VALID, encoding="utf-8")

    done = _cli("serve", "--config", str(path), "--port", str(busy_port))

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"keyway: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    ]


@pytest.mark.parametrize("flag", ["--port", "--fake-port"])
def test_demo_on_a_busy_port_is_one_line_naming_it(busy_port: int, flag: str) -> None:
    ports = {"--port": "0", "--fake-port": "0", flag: str(busy_port)}  # 0: always free

    done = _cli("demo", *(item for pair in ports.items() for item in pair))

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"keyway: cannot listen on 127.0.0.1:{busy_port}: address already in use "
        f"(choose another with {flag})"
    ]


# -- flags ---------------------------------------------------------------------------------------


def test_demo_help_lists_its_flags_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in (
        "--host HOST address the gateway listens on (default: 127.0.0.1)",
        "--port PORT port the gateway listens on (default: 8080)",
        "--fake-port FAKE_PORT port of the fake provider, on 127.0.0.1 (default: 9100)",
    ):
        assert expected in text


def test_reload_without_watchfiles_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "watchfiles" else real(name, *a),
    )

    status = main(["serve", "--config", str(ROOT / "examples" / "keyway.yaml"), "--reload"])

    assert status == 2
    assert capsys.readouterr().err == (
        "keyway: --reload needs the watchfiles package (Granian's reload extra), which is not "
        "installed: pip install 'granian[reload]', or run without --reload\n"
    )
