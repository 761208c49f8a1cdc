"""The deployment artefacts (Helm chart, compose stack, HAProxy, Dockerfile) keep their promises.

The chart is rendered offline through deploy/helm/helmctl.py (Helm's SDK from helm-python-sdk);
.ci/check-deploy additionally lints it and validates the manifests against Kubernetes' schemas.
"""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "keyway"
HA_VALUES = ROOT / "deploy" / "helm" / "values-ha.yaml"
COMPOSE = ROOT / "compose.yaml"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
COMPOSE_CONFIG = ROOT / "deploy" / "compose" / "keyway.yaml"
REPLICAS = ("keyway-1", "keyway-2", "keyway-3")

Manifest = dict[str, Any]


def _load_helmctl() -> ModuleType:
    pytest.importorskip("helm_python", reason="helm-python-sdk (Helm SDK) is not installed")
    spec = importlib.util.spec_from_file_location("helmctl", CHART.parent / "helmctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def helmctl() -> ModuleType:
    return _load_helmctl()


def render(helmctl: ModuleType, values: dict[str, Any] | None = None) -> dict[str, Manifest]:
    """Render the chart; manifests keyed by kind (the chart emits one object per kind, and the
    admin port's Service, keyed "AdminService")."""
    manifests: dict[str, str] = helmctl.render(CHART, values or {}, release="kw", namespace="llm")
    by_kind: dict[str, Manifest] = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                admin = doc["kind"] == "Service" and doc["metadata"]["name"].endswith("-admin")
                kind = "AdminService" if admin else doc["kind"]
                assert kind not in by_kind, f"two {kind} objects"
                by_kind[kind] = doc
    return by_kind


def ha_values(helmctl: ModuleType) -> dict[str, Any]:
    values: dict[str, Any] = helmctl.load_values([str(HA_VALUES)])
    return values


def pod_spec(manifests: dict[str, Manifest]) -> Manifest:
    spec: Manifest = manifests["Deployment"]["spec"]["template"]["spec"]
    return spec


def container(manifests: dict[str, Manifest]) -> Manifest:
    containers: list[Manifest] = pod_spec(manifests)["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(manifests: dict[str, Manifest]) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container(manifests)["env"]}


def config_checksum(manifests: dict[str, Manifest]) -> str:
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    checksum: str = annotations["checksum/config"]
    return checksum


# ---- Helm chart ----


def test_config_checksum_rolls_pods_only_when_the_config_changes(helmctl: ModuleType) -> None:
    default = config_checksum(render(helmctl))
    assert re.fullmatch(r"[0-9a-f]{64}", default)
    assert config_checksum(render(helmctl)) == default
    assert config_checksum(render(helmctl, {"replicaCount": 5})) == default

    config = render(helmctl)["ConfigMap"]["data"]["keyway.yaml"]
    changed = yaml.safe_load(config)
    changed["providers"]["openai"]["keys"][0]["rpm"] = 42
    rolled = render(helmctl, {"config": changed})
    assert "rpm: 42" in rolled["ConfigMap"]["data"]["keyway.yaml"]
    assert config_checksum(rolled) != default


def test_configmap_carries_values_config_as_keyway_yaml(helmctl: ModuleType) -> None:
    manifests = render(helmctl, ha_values(helmctl))
    rendered = yaml.safe_load(manifests["ConfigMap"]["data"]["keyway.yaml"])
    assert rendered == ha_values(helmctl)["config"]
    mounts = {m["mountPath"]: m for m in container(manifests)["volumeMounts"]}
    assert mounts["/etc/keyway"]["readOnly"] is True
    assert container(manifests)["args"][:3] == ["serve", "--config", "/etc/keyway/keyway.yaml"]


def test_pod_is_hardened(helmctl: ModuleType) -> None:
    manifests = render(helmctl)
    pod = pod_spec(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    ctx = container(manifests)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] != 0
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    # a read-only root still needs a writable /tmp
    tmp = next(m for m in container(manifests)["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    assert "requests" in container(manifests)["resources"]


def test_probes_use_livez_and_readyz(helmctl: ModuleType) -> None:
    c = container(render(helmctl))
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_admin_port_is_its_own_and_off_the_public_service_by_default(
    helmctl: ModuleType,
) -> None:
    manifests = render(helmctl, {"service": {"type": "LoadBalancer"}})
    ports = {p["name"]: p["containerPort"] for p in container(manifests)["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    assert env_of(manifests)["KEYWAY_ADMIN_PORT"]["value"] == "9090"
    # the public Service (a load balancer here) carries the API only
    public = manifests["Service"]["spec"]
    assert public["type"] == "LoadBalancer"
    assert [p["name"] for p in public["ports"]] == ["http"]
    # the admin port has a Service of its own, inside the cluster only, on the same pods
    admin = manifests["AdminService"]
    assert admin["metadata"]["name"] == "kw-keyway-admin"
    assert admin["spec"]["type"] == "ClusterIP"
    assert admin["spec"]["ports"] == [
        {"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"}
    ]
    assert admin["spec"]["selector"] == manifests["Service"]["spec"]["selector"]
    notes: str = helmctl.render(CHART, {})["keyway/templates/NOTES.txt"]
    assert "port-forward svc/keyway-admin 9090:9090" in notes


def test_admin_port_null_serves_everything_on_the_public_port(helmctl: ModuleType) -> None:
    manifests = render(helmctl, {"adminPort": None, "serviceMonitor": {"enabled": True}})
    assert [p["name"] for p in container(manifests)["ports"]] == ["http"]
    assert "KEYWAY_ADMIN_PORT" not in env_of(manifests)
    assert "AdminService" not in manifests
    endpoint = manifests["ServiceMonitor"]["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


def test_admin_port_must_differ_from_the_container_port(helmctl: ModuleType) -> None:
    helm = pytest.importorskip("helm_python")
    with pytest.raises(helm.HelmError, match="adminPort must differ from containerPort"):
        render(helmctl, {"adminPort": 8080})


def test_service_monitor_scrapes_the_admin_service_only(helmctl: ModuleType) -> None:
    manifests = render(helmctl, {"serviceMonitor": {"enabled": True}})
    monitor = manifests["ServiceMonitor"]["spec"]
    assert monitor["endpoints"][0]["port"] == "admin"
    assert monitor["endpoints"][0]["path"] == "/metrics"
    wanted = monitor["selector"]["matchLabels"].items()
    assert wanted <= manifests["AdminService"]["metadata"]["labels"].items()
    assert not wanted <= manifests["Service"]["metadata"]["labels"].items()


@pytest.mark.parametrize("shutdown", [600, 30])
def test_grace_period_outlasts_the_drain(helmctl: ModuleType, shutdown: int) -> None:
    manifests = render(helmctl, {"shutdownTimeoutSeconds": shutdown, "preStopSleepSeconds": 5})
    grace = pod_spec(manifests)["terminationGracePeriodSeconds"]
    assert grace > shutdown + 5
    assert env_of(manifests)["SHUTDOWN_TIMEOUT_SECONDS"]["value"] == str(shutdown)


def test_chart_secret_holds_a_32_byte_master_key(helmctl: ModuleType) -> None:
    manifests = render(helmctl)
    secret = manifests["Secret"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    master = base64.b64decode(base64.b64decode(secret["data"]["KEYWAY_MASTER_KEY"]))
    assert len(master) == 32
    assert base64.b64decode(secret["data"]["KEYWAY_ADMIN_KEYS"])
    refs = {
        name: env_of(manifests)[name]["valueFrom"]["secretKeyRef"]
        for name in ("KEYWAY_MASTER_KEY", "KEYWAY_ADMIN_KEYS", "KEYWAY_CLIENT_KEY_SECRET")
    }
    assert {ref["name"] for ref in refs.values()} == {secret["metadata"]["name"]}
    assert {ref["key"] for ref in refs.values()} <= set(secret["data"])


def test_explicit_secret_values_are_used_verbatim(helmctl: ModuleType) -> None:
    master = base64.b64encode(bytes(range(32))).decode()
    secret = render(helmctl, {"secret": {"masterKey": master, "adminKeys": "a1,a2"}})["Secret"]
    assert base64.b64decode(secret["data"]["KEYWAY_MASTER_KEY"]).decode() == master
    assert base64.b64decode(secret["data"]["KEYWAY_ADMIN_KEYS"]).decode() == "a1,a2"


def test_secret_template_reuses_the_stored_secret_on_upgrade() -> None:
    # Offline rendering has no cluster, so `lookup` cannot be exercised here; this guards the
    # mechanism that keeps upgrades from rotating the master key.
    source = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in source
    assert source.index("hasKey $stored $keys.masterKey") < source.index("randAlphaNum 32")


def test_existing_secret_replaces_the_chart_secret(helmctl: ModuleType) -> None:
    manifests = render(helmctl, {"secret": {"existingSecret": "ops-keyway"}})
    assert "Secret" not in manifests
    ref = env_of(manifests)["KEYWAY_MASTER_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "ops-keyway", "key": "KEYWAY_MASTER_KEY"}


def test_redis_url_comes_from_values_or_a_secret(helmctl: ModuleType) -> None:
    url = "redis+sentinel://sentinel.redis:26379/mymaster"
    plain = env_of(render(helmctl, {"redis": {"url": url}}))["REDIS_URL"]
    assert plain["value"] == url
    secret = env_of(render(helmctl, {"redis": {"existingSecret": "redis-creds"}}))["REDIS_URL"]
    assert secret["valueFrom"]["secretKeyRef"] == {"name": "redis-creds", "key": "REDIS_URL"}


def test_notes_never_print_the_redis_password(helmctl: ModuleType) -> None:
    values = {"redis": {"url": "redis://:s3cret@redis.db:6379/0"}}
    notes: str = helmctl.render(CHART, values)["keyway/templates/NOTES.txt"]
    assert "redis://***@redis.db:6379/0" in notes
    assert "s3cret" not in notes


def test_hpa_is_autoscaling_v2_and_only_when_enabled(helmctl: ModuleType) -> None:
    default = render(helmctl)
    assert "HorizontalPodAutoscaler" not in default
    assert default["Deployment"]["spec"]["replicas"] == 2

    scaled = render(helmctl, {"autoscaling": {"enabled": True, "minReplicas": 3}})
    hpa = scaled["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == scaled["Deployment"]["metadata"]["name"]
    assert "replicas" not in scaled["Deployment"]["spec"]


@pytest.mark.parametrize(
    ("values", "fleet"),
    [
        ({}, "2"),  # replicaCount 2 x 1 worker
        ({"replicaCount": 3, "workers": 4}, "12"),
        # autoscaled: the most pods the HPA may run, not the fewest
        ({"autoscaling": {"enabled": True, "maxReplicas": 7}, "workers": 2}, "14"),
        ({"degradedReplicas": 40, "workers": 2}, "40"),
        ({"degradedReplicas": 5, "config": {"routing": {"degraded_replicas": 9}}}, "5"),
    ],
)
def test_degraded_replicas_count_the_workers_of_the_largest_fleet(
    helmctl: ModuleType, values: dict[str, Any], fleet: str
) -> None:
    assert env_of(render(helmctl, values))["KEYWAY_DEGRADED_REPLICAS"]["value"] == fleet


def test_a_degraded_replicas_in_the_config_is_kept_and_zero_is_refused(
    helmctl: ModuleType,
) -> None:
    own = render(helmctl, {"config": {"routing": {"degraded_replicas": 9}}})
    assert "KEYWAY_DEGRADED_REPLICAS" not in env_of(own)  # the env var would override it
    helm = pytest.importorskip("helm_python")
    with pytest.raises(helm.HelmError, match="degradedReplicas"):
        render(helmctl, {"degradedReplicas": 0})


def test_otel_is_configured_only_with_an_endpoint(helmctl: ModuleType) -> None:
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env_of(render(helmctl))
    env = env_of(render(helmctl, {"otel": {"endpoint": "http://otel:4317", "protocol": "grpc"}}))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "grpc"
    assert env["OTEL_SERVICE_NAME"]["value"] == "keyway"


def test_ha_values_spread_protect_and_scrape(helmctl: ModuleType) -> None:
    manifests = render(helmctl, ha_values(helmctl))
    assert manifests["PodDisruptionBudget"]["spec"] == {
        "minAvailable": 2,
        "selector": manifests["Deployment"]["spec"]["selector"],
    }
    assert manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 3
    assert manifests["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert manifests["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "admin"
    pod = pod_spec(manifests)
    selector = manifests["Deployment"]["spec"]["selector"]["matchLabels"]
    spread = pod["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"] == selector
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["labelSelector"]["matchLabels"] == selector
    assert "secretKeyRef" in env_of(manifests)["REDIS_URL"]["valueFrom"]
    assert "ServiceMonitor" not in render(helmctl)


def test_schema_rejects_unknown_and_mistyped_values(helmctl: ModuleType) -> None:
    helm = pytest.importorskip("helm_python")
    with pytest.raises(helm.HelmError, match="replicas"):
        render(helmctl, {"replicas": 3})
    with pytest.raises(helm.HelmError, match="replicaCount"):
        render(helmctl, {"replicaCount": "three"})
    with pytest.raises(helm.HelmError, match="masterKey"):
        render(helmctl, {"secret": {"masterKey": "too-short"}})


@pytest.mark.parametrize("source", ["default", "ha"])
def test_chart_config_is_a_valid_keyway_config(
    helmctl: ModuleType, source: str, tmp_path: Path
) -> None:
    from gateway.config_load import load_config

    values = ha_values(helmctl) if source == "ha" else {}
    manifests = render(helmctl, values)
    config = manifests["ConfigMap"]["data"]["keyway.yaml"]
    path = tmp_path / "keyway.yaml"
    path.write_text(config)
    env = {name: "sk-test" for name in re.findall(r"env:([A-Za-z_][A-Za-z0-9_]*)", config)}
    # the Deployment's own variables (KEYWAY_ADMIN_PORT, KEYWAY_DEGRADED_REPLICAS, ...) too
    env |= {name: e["value"] for name, e in env_of(manifests).items() if "value" in e}
    cfg = load_config(path, env={"REDIS_URL": "redis://redis:6379/0", **env})
    assert cfg.models
    assert cfg.server.admin_port == 9090
    assert cfg.routing.degraded_replicas == (20 if source == "ha" else 2)  # HPA max 20 x 1


# ---- compose, HAProxy, Dockerfile ----


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_runs_three_replicas_on_one_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert [name for name in services if name.startswith("keyway-")] == list(REPLICAS)
    for name in REPLICAS:
        replica = services[name]
        assert replica["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert replica["command"][0] == "serve"
        assert "/readyz" in replica["healthcheck"]["test"]
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        mount = replica["volumes"][0]
        assert (ROOT / mount["source"]).resolve() == COMPOSE_CONFIG
        assert mount["target"] == "/etc/keyway/keyway.yaml"
        assert replica["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://jaeger:")
    assert services["fake-provider"]["command"][0] == "fake-provider"


def test_compose_load_balancer_fronts_every_replica(compose: dict[str, Any]) -> None:
    lb = compose["services"]["haproxy"]
    assert "127.0.0.1:8080:8080" in lb["ports"]
    assert "127.0.0.1:9090:9090" in lb["ports"]  # the replicas' admin port, through HAProxy
    for name in REPLICAS:
        assert compose["services"][name]["environment"]["KEYWAY_ADMIN_PORT"] == "9090"

    assert {name: dep["condition"] for name, dep in lb["depends_on"].items()} == dict.fromkeys(
        REPLICAS, "service_healthy"
    )
    mount = lb["volumes"][0]
    assert (ROOT / mount["source"]).resolve() == HAPROXY_CFG


def test_compose_ships_no_secret_and_publishes_on_loopback_only(compose: dict[str, Any]) -> None:
    """Every secret is required from the operator (`${X:?...}`), never a public default, and
    no port is published on every interface."""
    env = compose["x-keyway-replica"]["environment"]
    for name in ("KEYWAY_MASTER_KEY", "KEYWAY_ADMIN_KEYS", "KEYWAY_CLIENT_KEY_SECRET",
                 "KEYWAY_DEMO_CLIENT_KEY"):  # fmt: skip
        assert str(env[name]).startswith(f"${{{name}:?"), (name, env[name])
    for service in compose["services"].values():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), port


def _haproxy_section(lines: list[str], header: str) -> list[str]:
    sections = ("global", "defaults", "frontend", "backend", "listen", "resolvers")
    body = lines[lines.index(header) + 1 :]
    end = next((i for i, line in enumerate(body) if line.split()[0] in sections), None)
    return body[:end]


@pytest.mark.parametrize(("backend_name", "port"), [("keyway", 8080), ("keyway_admin", 9090)])
def test_haproxy_round_robins_replicas_and_checks_readyz(backend_name: str, port: int) -> None:
    text = HAPROXY_CFG.read_text().splitlines()
    lines = [line.split("#", 1)[0].strip() for line in text if line.split("#", 1)[0].strip()]
    backend = _haproxy_section(lines, f"backend {backend_name}")
    assert "balance roundrobin" in backend
    assert "option httpchk GET /readyz" in backend
    default_server = next(line for line in backend if line.startswith("default-server"))
    assert " check" in f" {default_server}"
    servers = {line.split()[1]: line.split()[2] for line in backend if line.startswith("server ")}
    assert servers == {name: f"{name}:{port}" for name in REPLICAS}
    frontends = [_haproxy_section(lines, line) for line in lines if line.startswith("frontend ")]
    [frontend] = [f for f in frontends if f"default_backend {backend_name}" in f]
    assert f"bind :{port}" in frontend
    timeouts = {line.split()[1]: line.split()[2] for line in lines if line.startswith("timeout ")}
    assert timeouts["server"].endswith("m") and int(timeouts["server"][:-1]) >= 5


def test_compose_config_is_a_valid_keyway_config(compose: dict[str, Any]) -> None:
    from gateway.config_load import load_config

    # compose's ${NAME:-default} with nothing set in the environment: the defaults
    environment = compose["services"]["keyway-1"]["environment"].items()
    env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in environment}
    cfg = load_config(COMPOSE_CONFIG, env=env)
    assert {p.base_url for p in cfg.providers.values()} == {
        "http://fake-provider:9100/v1",
        "http://fake-provider:9100",
    }
    assert all(len(p.keys) >= 2 for p in cfg.providers.values())


def test_dockerfile_runs_keyway_unprivileged_from_pinned_images() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(bases) >= 2
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base) for base in bases)
    uid = next(line for line in lines if line.startswith("ARG KEYWAY_UID="))
    assert int(uid.partition("=")[2]) >= 1000
    assert "USER ${KEYWAY_UID}:${KEYWAY_UID}" in lines
    assert 'ENTRYPOINT ["keyway"]' in lines
    assert "STOPSIGNAL SIGTERM" in lines
    assert "EXPOSE 8080 9090" in lines  # the API and the admin port (KEYWAY_ADMIN_PORT=9090)
