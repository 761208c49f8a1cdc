"""Config loading: the shipped examples load, and every mistake names its field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.config import DeploymentConfig
from gateway.config_load import ConfigError, apply_env, load_config, parse_config
from gateway.routing.table import RouteTable

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "OPENAI_API_KEY_1": "sk-one-aaaa",
    "OPENAI_API_KEY_2": "sk-two-bbbb",
    "ANTHROPIC_API_KEY": "sk-ant-cccc",
    "KEYWAY_KEY_TEAM_A": "sk-team-a",
}


def minimal(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "providers": {
            "p": {"kind": "openai", "base_url": "http://x/v1", "keys": [{"id": "k", "secret": "s"}]}
        },
        "models": {"m": {"deployments": [{"provider": "p", "model": "m"}]}},
    }
    doc.update(over)
    return doc


def test_the_design_example_loads_and_resolves_its_secrets() -> None:
    cfg = load_config(ROOT / "examples" / "keyway.yaml", env=ENV)
    table = RouteTable(cfg, ENV)
    chain = table.chain("gpt-4o-mini")
    assert chain is not None
    assert [d.pool.provider for d in chain] == ["openai", "anthropic"]  # fallback follows
    assert table.pools["openai"].keys[0].secret == "sk-one-aaaa"
    assert "sk-one" not in repr(table.pools["openai"].keys[0])


def test_the_demo_config_loads() -> None:
    text = (ROOT / "gateway" / "demo.yaml").read_text().replace("${FAKE_PORT}", "9100")
    path = ROOT / "tests" / "unit" / "_demo.yaml"
    try:
        path.write_text(text)
        cfg = load_config(path, env={})
    finally:
        path.unlink()
    assert set(cfg.models) >= {"gpt-4o-mini", "claude-haiku"}


def test_env_overrides_win() -> None:
    raw = apply_env(
        minimal(),
        {"REDIS_URL": "redis://r:1/0", "KEYWAY_PORT": "9999", "KEY_COOLDOWN_SECONDS": "7"},
    )
    cfg = parse_config(raw)
    assert cfg.redis.url == "redis://r:1/0"
    assert cfg.server.port == 9999
    assert cfg.routing.cooldown_s == 7


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (
            minimal(models={"m": {"deployments": [{"provider": "nope", "model": "m"}]}}),
            "models.m.deployments[0].provider",
        ),
        (
            minimal(
                models={"m": {"deployments": [{"provider": "p", "model": "m"}], "fallbacks": ["x"]}}
            ),
            "models.m.fallbacks[0]",
        ),
        (
            minimal(
                models={
                    "m": {"deployments": [{"provider": "p", "model": "m", "max_output_tokens": 0}]}
                }
            ),
            "models.m.deployments[0].max_output_tokens",
        ),
        (minimal(clients=[{"id": "c", "key": "k", "rpm": "many"}]), "clients[0].rpm"),
        (minimal(clients=[{"id": "c", "key": "k", "models": ["ghost"]}]), "clients[0].models[0]"),
        (minimal(server={"prot": 1}), "server"),
        (
            minimal(
                providers={
                    "p": {
                        "kind": "azure-openai",
                        "base_url": "http://x",
                        "keys": [{"id": "k", "secret": "s"}],
                    }
                }
            ),
            "providers.p.api_version",
        ),
        (
            minimal(
                providers={
                    "p": {
                        "kind": "openai",
                        "base_url": "ftp://x",
                        "keys": [{"id": "k", "secret": "s"}],
                    }
                }
            ),
            "providers.p.base_url",
        ),
        (
            minimal(
                providers={
                    "p": {
                        "kind": "openai",
                        "base_url": "http://x",
                        "keys": [{"id": "k", "secret": "s", "rpm": 0}],
                    }
                }
            ),
            "providers.p.keys[0].rpm",
        ),
        (
            minimal(
                providers={
                    "p": {
                        "kind": "openai",
                        "base_url": "http://x",
                        "keys": [{"id": "k", "secret": "s"}, {"id": "k", "secret": "t"}],
                    }
                }
            ),
            "providers.p.keys[1].id",
        ),
    ],
)
def test_invalid_configs_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert field in str(info.value)


def test_a_missing_secret_env_var_names_field_and_variable() -> None:
    cfg = parse_config(
        minimal(
            providers={
                "p": {
                    "kind": "openai",
                    "base_url": "http://x",
                    "keys": [{"id": "k", "secret": "env:NOPE_KEY"}],
                }
            }
        )
    )
    with pytest.raises(
        ConfigError, match=r"providers\.p\.keys\[0\]\.secret: environment variable NOPE_KEY"
    ):
        RouteTable(cfg, {})


def test_a_deployment_is_clamped_to_its_own_limit_else_its_models_known_one() -> None:
    deployments = [
        {"provider": "p", "model": "gpt-4o", "max_output_tokens": 1000},
        {"provider": "p", "model": "gpt-4o"},
        {"provider": "p", "model": "my-fine-tune"},
    ]
    table = RouteTable(parse_config(minimal(models={"m": {"deployments": deployments}})), {})
    chain = table.chain("m")
    assert chain is not None
    assert [d.max_output_tokens for d in chain] == [1000, 16384, None]


def test_a_deployment_without_a_limit_is_stored_as_before() -> None:
    # runtime records embed DeploymentConfig; replicas of the previous version forbid new fields
    assert msgspec.json.encode(DeploymentConfig(provider="p", model="m")) == (
        b'{"provider":"p","model":"m"}'
    )


def with_base_url(url: str, **over: object) -> dict[str, object]:
    providers = {"p": {"kind": "openai", "base_url": url, "keys": [{"id": "k", "secret": "s"}]}}
    return minimal(providers=providers, **over)


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/v1", "http://0251.0376.0251.0376/v1", "http://169.254.43518/v1",
     "http://0xa9.0xfe.0xa9.0xfe/v1", "http://metadata.google.internal/v1"],
)  # fmt: skip
def test_a_file_base_url_follows_the_upstream_policy_unless_private_is_allowed(url: str) -> None:
    with pytest.raises(ConfigError, match=r"providers\.p\.base_url: .*metadata"):
        parse_config(with_base_url(url))
    allowed = parse_config(apply_env(with_base_url(url), {"KEYWAY_ALLOW_PRIVATE_UPSTREAMS": "1"}))
    assert allowed.server.allow_private_upstreams
    in_file = parse_config(with_base_url(url, server={"allow_private_upstreams": True}))
    assert in_file.providers["p"].base_url == url


def test_the_upstream_and_proxy_settings_come_from_the_environment() -> None:
    env = {"KEYWAY_TRUSTED_PROXY_HOPS": "2", "KEYWAY_ALLOW_PRIVATE_UPSTREAMS": "off",
           "KEYWAY_UPSTREAM_HOSTS_ALLOWED": " api.openai.com, ,api.anthropic.com "}  # fmt: skip
    server = parse_config(apply_env(minimal(), env)).server
    assert server.trusted_proxy_hops == 2
    assert not server.allow_private_upstreams
    assert server.upstream_hosts_allowed == ["api.openai.com", "api.anthropic.com"]
    assert parse_config(minimal()).server.trusted_proxy_hops == 0


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"KEYWAY_ALLOW_PRIVATE_UPSTREAMS": "maybe"}, "KEYWAY_ALLOW_PRIVATE_UPSTREAMS: 'maybe'"),
        ({"KEYWAY_TRUSTED_PROXY_HOPS": "one"}, "KEYWAY_TRUSTED_PROXY_HOPS: 'one'"),
        ({"KEYWAY_TRUSTED_PROXY_HOPS": "-1"}, "server.trusted_proxy_hops: must be between 0"),
        ({"KEYWAY_UPSTREAM_HOSTS_ALLOWED": "https://x.example/v1"},
         "server.upstream_hosts_allowed[0]: a bare host name"),
    ],
)  # fmt: skip
def test_a_wrong_upstream_or_proxy_setting_is_named(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(apply_env(minimal(), env))
    assert problem in str(info.value)


def test_the_fleet_size_and_the_client_cap_come_from_the_environment() -> None:
    env = {"KEYWAY_DEGRADED_REPLICAS": "6", "KEYWAY_CLIENT_MAX_CONCURRENCY": "0"}
    routing = parse_config(apply_env(minimal(routing={"client_max_concurrency": 10}), env)).routing
    assert routing.degraded_replicas == 6
    assert routing.client_max_concurrency == 0  # the environment wins over the file
    unset = parse_config(apply_env(minimal(), {"KEYWAY_DEGRADED_REPLICAS": ""})).routing
    assert (unset.degraded_replicas, unset.client_max_concurrency) == (None, 250)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"KEYWAY_DEGRADED_REPLICAS": "two"}, "KEYWAY_DEGRADED_REPLICAS: 'two' is not valid here"),
        ({"KEYWAY_DEGRADED_REPLICAS": "0"}, "routing.degraded_replicas: expected int >= 1, got 0"),
        ({"KEYWAY_CLIENT_MAX_CONCURRENCY": "1.5"},
         "KEYWAY_CLIENT_MAX_CONCURRENCY: '1.5' is not valid here"),
        ({"KEYWAY_CLIENT_MAX_CONCURRENCY": "-1"},
         "routing.client_max_concurrency: expected int >= 0, got -1"),
    ],
)  # fmt: skip
def test_a_wrong_fleet_size_or_client_cap_is_one_line(
    env: dict[str, str], problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "keyway.yaml"
    path.write_text(msgspec.yaml.encode(minimal()).decode())
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert info.value.problems == (problem,)
