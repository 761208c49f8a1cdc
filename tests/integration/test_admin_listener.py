"""`KEYWAY_ADMIN_PORT`: the admin API, /docs and /metrics on a port of their own.

With the admin port set, the public port serves the API and the probes only: `/admin/...`,
`/docs...` and `/metrics` get the same JSON 404 as any unknown URL there. The admin port serves
them from the same worker processes (same Gateway, same control plane, same decision log), so the
public port routes by an admin change at once and `/admin/decisions` shows the public port's
requests. Without the admin port everything stays on one port, as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    Proc,
    free_port,
    group_members,
    make_config,
    start_fake_provider,
    start_gateway,
    wait_http,
)
from tests.integration.test_admin_replicas import ADMIN_KEY, chat, control_env, wait_until

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
OFF_THE_PUBLIC_PORT = (
    "/admin/clients",
    "/admin/config",
    "/admin/decisions",
    "/metrics",
    "/docs",
    "/docs/openapi.json",
    "/docs/openapi.yaml",
    "/docs/public.yaml",
    "/docs/public.json",
    "/docs/docs.css",
    "/schema",
)


def start_with_admin_port(
    logs: Path, fake_url: str, redis_url: str | None, prefix: dict[str, str], *, workers: int = 1
) -> tuple[Proc, str]:
    """A gateway with KEYWAY_ADMIN_PORT set; returns it and the admin listener's URL."""
    admin_port = free_port()
    gw = start_gateway(
        logs,
        make_config(fake_url),
        redis_url=redis_url,
        workers=workers,
        env=control_env(prefix, KEYWAY_ADMIN_PORT=str(admin_port)),
    )
    admin_url = f"http://127.0.0.1:{admin_port}"
    try:
        wait_http(f"{admin_url}/livez", timeout_s=10, proc=gw)
    except BaseException:
        gw.stop()
        raise
    return gw, admin_url


def assert_unknown_url(response: httpx.Response, method: str, path: str) -> None:
    """The public port's answer to a path it does not serve (gateway/api/hot_paths.py)."""
    assert response.status_code == 404, (path, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), path
    error = response.json()["error"]
    assert error["code"] == "unknown_url", (path, error)
    assert error["message"] == f"Invalid URL ({method} {path})", (path, error)


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("store", ["redis", "embedded"])
def test_the_admin_port_serves_admin_docs_and_metrics_and_the_public_port_does_not(
    logs: Path, fake_proc: Proc, redis_url: str, prefix: dict[str, str], store: str
) -> None:
    # the embedded store lives in the worker: the admin port must be served by that very process
    url = redis_url if store == "redis" else None
    gw, admin_url = start_with_admin_port(logs, fake_proc.url, url, prefix)
    admin_port = int(admin_url.rsplit(":", 1)[1])
    with (
        gw,
        httpx.Client(base_url=gw.url, timeout=10) as public,
        httpx.Client(base_url=admin_url, timeout=10) as admin,
    ):
        # the public port: the API and the probes, nothing of the admin's, even with its key
        for path in OFF_THE_PUBLIC_PORT:
            assert_unknown_url(public.get(path, headers=ADMIN), "GET", path)
        assert_unknown_url(
            public.post("/admin/clients", json={"id": "sneaky"}, headers=ADMIN),
            "POST",
            "/admin/clients",
        )
        assert public.get("/livez").status_code == 200
        assert public.get("/readyz").json()["status"] == "ready"
        r = chat(gw, "sk-client-a")
        assert r.status_code == 200, r.text
        assert public.get("/v1/models", headers={"authorization": "Bearer sk-client-a"}).is_success

        # the admin port: the admin API (with its key only), both documents, the metrics
        assert admin.get("/admin/clients").status_code == 401
        assert admin.get("/admin/clients", headers={"authorization": "Bearer sk-client-a"}).status_code == 403  # fmt: skip
        listed = admin.get("/admin/clients", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        assert {c["id"] for c in listed.json()} == {"team-a", "team-b"}
        page = admin.get("/docs")
        assert page.status_code == 200 and "Admin API" in page.text
        assert "content-security-policy" in page.headers
        assert "/admin/clients" in admin.get("/docs/openapi.json").json()["paths"]
        assert "/v1/chat/completions" in admin.get("/docs/public.json").json()["paths"]
        metrics = admin.get("/metrics")
        assert metrics.status_code == 200
        # the public port's request is in the admin port's scrape: one set of workers
        assert 'keyway_requests_total{route="/v1/chat/completions",status="200"}' in metrics.text
        assert admin.get("/livez").status_code == 200
        # and nothing of the public API: an SDK pointed at the admin port gets the same 404
        assert_unknown_url(
            admin.post("/v1/chat/completions", json={}, headers={"authorization": "Bearer sk-client-a"}),
            "POST",
            "/v1/chat/completions",
        )  # fmt: skip

        # the admin port's view is the public port's workers': their routing decisions...
        decisions = admin.get("/admin/decisions", headers=ADMIN).json()
        assert [d["request_id"] for d in decisions][:1] == [r.headers["x-request-id"]]
        # ...and its changes are what the public port routes by, at once
        created = admin.post("/admin/clients", json={"id": "team-new"}, headers=ADMIN)
        assert created.status_code == 201, created.text
        new_key = created.json()["key"]
        wait_until(lambda: chat(gw, new_key).status_code == 200, "the new client key works")
        revoked = admin.post("/admin/clients/team-new/revoke", headers=ADMIN)
        assert revoked.status_code == 200, revoked.text
        wait_until(lambda: chat(gw, new_key).status_code == 401, "the revoked key is refused")

        # SIGTERM to the leader alone (as Kubernetes and Docker send it): both ports close, every
        # process of the server exits, even with an idle keep-alive connection on the admin port
        assert admin.get("/livez").status_code == 200  # keeps its connection open
        started = time.monotonic()
        gw.popen.send_signal(signal.SIGTERM)
        assert gw.popen.wait(timeout=30) == 0, gw.log_tail()
        assert time.monotonic() - started < 20
        wait_until(lambda: group_members(gw.pgid, gw.mark) == [], "no worker outlives the leader")
        assert refused(gw.port) and refused(admin_port)


def test_the_admin_port_serves_while_the_public_port_drains(
    procs: contextlib.ExitStack, logs: Path, redis_url: str, prefix: dict[str, str]
) -> None:
    slow = procs.enter_context(start_fake_provider(logs, args=["--chunk-delay-ms", "300"]))
    gw, admin_url = start_with_admin_port(logs, slow.url, redis_url, prefix)
    procs.enter_context(gw)
    stream = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
              "stream": True}  # fmt: skip
    with (
        httpx.Client(base_url=gw.url, timeout=30) as public,
        public.stream(
            "POST",
            "/v1/chat/completions",
            json=stream,
            headers={"authorization": "Bearer sk-client-a"},
        ) as response,
    ):
        assert response.status_code == 200
        gw.popen.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # the public port takes no new connection; the admin port still answers
        assert refused(gw.port)
        status = httpx.get(f"{admin_url}/admin/config", headers=ADMIN, timeout=5)
        assert status.status_code == 200, status.text
        assert "".join(response.iter_text()).rstrip().endswith("data: [DONE]")
    assert gw.popen.wait(timeout=30) == 0, gw.log_tail()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_every_worker_listens_on_the_admin_port(
    logs: Path, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    gw, admin_url = start_with_admin_port(logs, fake_proc.url, redis_url, prefix, workers=2)
    admin_port = int(admin_url.rsplit(":", 1)[1])
    with gw:
        wait_until(
            lambda: len(listening_pids(gw, admin_port)) == 2,
            "both workers listen on the admin port",
            deadline_s=15,
        )
        assert listening_pids(gw, admin_port) == listening_pids(gw, gw.port)
        assert gw.popen.pid not in listening_pids(gw, admin_port)  # the leader serves nothing
        for _ in range(8):  # new connections each time: the kernel spreads them over both
            assert httpx.get(f"{admin_url}/admin/config", headers=ADMIN).status_code == 200


def listening_pids(proc: Proc, port: int) -> set[int]:
    """The processes of `proc`'s group holding a listening TCP socket on `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    pids = set()
    for pid in group_members(proc.pgid, proc.mark):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = fd.readlink().as_posix()
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pids.add(pid)
    return pids


def test_without_an_admin_port_everything_stays_on_one_port(
    logs: Path, fake_proc: Proc, redis_url: str, prefix: dict[str, str]
) -> None:
    with (
        start_gateway(
            logs, make_config(fake_proc.url), redis_url=redis_url, env=control_env(prefix)
        ) as gw,
        httpx.Client(base_url=gw.url, timeout=10) as public,
    ):
        assert chat(gw, "sk-client-a").status_code == 200
        assert public.get("/admin/clients", headers=ADMIN).status_code == 200
        assert public.get("/admin/clients").status_code == 401
        assert "keyway_requests_total" in public.get("/metrics").text
        assert public.get("/docs").status_code == 200
        assert "/admin/clients" in public.get("/docs/openapi.json").json()["paths"]
        assert_unknown_url(public.get("/v1/batches"), "GET", "/v1/batches")


def serve_once(
    logs: Path, fake_url: str, env: dict[str, str], port: int
) -> subprocess.CompletedProcess[str]:
    """`keyway serve` expected to refuse to start: its exit status and output.

    Should it start after all, its whole process group (leader and workers) is killed.
    """
    config = logs / f"keyway-refused-{port}.yaml"
    config.write_text(make_config(fake_url))
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KEYWAY_", "REDIS_URL"))}
    popen = subprocess.Popen(
        argv,
        env={**inherited, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = popen.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        out, err = popen.communicate()
    return subprocess.CompletedProcess(argv, popen.returncode, out, err)


SAME = "<the public port>"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KEYWAY_ADMIN_PORT": "admin"}, "KEYWAY_ADMIN_PORT: 'admin' is not valid here"),
        ({"KEYWAY_ADMIN_PORT": "9090.5"}, "KEYWAY_ADMIN_PORT: '9090.5' is not valid here"),
        ({"KEYWAY_ADMIN_PORT": "70000"}, "server.admin_port: must be 1-65535"),
        ({"KEYWAY_ADMIN_PORT": "0"}, "server.admin_port: must be 1-65535"),
        ({"KEYWAY_ADMIN_PORT": SAME}, "server.admin_port: must differ from server.port"),
        ({"KEYWAY_ADMIN_HOST": "127.0.0.1"}, "server.admin_host: set server.admin_port too"),
    ],
    ids=["word", "fraction", "too-big", "zero", "the-public-port", "host-without-port"],
)
def test_a_bad_admin_listener_setting_is_one_clear_line_at_start(
    logs: Path, fake_proc: Proc, env: dict[str, str], message: str
) -> None:
    port = free_port()
    env = {name: str(port) if value == SAME else value for name, value in env.items()}
    result = serve_once(logs, fake_proc.url, env, port)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_busy_admin_port_is_named_at_start(logs: Path, fake_proc: Proc) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = serve_once(logs, fake_proc.url, {"KEYWAY_ADMIN_PORT": str(busy)}, free_port())
    assert result.returncode == 1, result.stderr
    assert f"keyway: cannot listen on 127.0.0.1:{busy}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr
