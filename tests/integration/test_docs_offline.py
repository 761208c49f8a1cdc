"""/docs works without internet: everything it references is served by the gateway itself.

Against real gateway processes (Granian, embedded store): one on the demo's config with the
admin API disabled, as `keyway demo` runs, and one with KEYWAY_ADMIN_KEYS set. The page and
every asset it references (stylesheets, links, and what those load in turn) are fetched; no
reference may leave the gateway, each must answer 200, and the answers carry a
Content-Security-Policy that would make a browser refuse any remote script. The public endpoints
are in the page and in the served document; the admin API only where it is enabled.

When Chromium is installed, it renders /docs with every host name but 127.0.0.1 unresolvable
and the rendered DOM must name the endpoints (skipped where Chromium is missing).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import msgspec
import pytest

from gateway.demo import demo_config_text
from tests.harness import Proc, make_config, require_binary, start_gateway

ADMIN_KEY = "docs-admin-key-0123456789abcdef"
PUBLIC_ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/models",
    "/v1/models/{model_id}",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/livez",
    "/readyz",
    "/metrics",
]
ADMIN_ENDPOINTS = ["/admin/providers", "/admin/clients", "/admin/models", "/admin/usage/models"]
# the HTML attributes that make a browser fetch or navigate
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "data", "background",
                  "manifest", "xlink:href", "srcset", "imagesrcset"}  # fmt: skip
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)['"]?\s*\)""", re.IGNORECASE)
CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)""", re.IGNORECASE)
ABSOLUTE_URL = re.compile(r"""(?:https?:|wss?:)?//[A-Za-z0-9.-]+[^\s'"<>()]*""", re.IGNORECASE)


class References(HTMLParser):
    """Every URL an HTML page references, the ids it defines and its <script> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "script":
            self.scripts.append(values)
        if tag == "style":
            self._in_style = True
        if values.get("style"):
            self.inline_css.append(str(values["style"]))
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "refresh":
            content = values.get("content") or ""
            self.urls.extend(m.strip() for m in re.findall(r"url=([^;]+)", content, re.I))
        for name, value in attrs:
            if name.lower() not in URL_ATTRIBUTES or not value:
                continue
            if name.lower().endswith("srcset"):
                self.urls.extend(part.split()[0] for part in value.split(",") if part.strip())
            else:
                self.urls.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.inline_css.append(data)


def css_references(css: str) -> list[str]:
    return [*CSS_URL.findall(css), *CSS_IMPORT.findall(css)]


def same_origin(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def crawl(gateway: Proc, start: str = "/docs") -> dict[str, httpx.Response]:
    """The page at `start` and everything it references, transitively (same origin only)."""
    origin = gateway.url
    seen: dict[str, httpx.Response] = {}
    queue = [urljoin(origin, start)]
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            response = client.get(url)
            seen[url] = response
            assert response.status_code == 200, f"{url} answered {response.status_code}"
            kind = response.headers.get("content-type", "")
            found: list[str] = []
            if kind.startswith("text/html"):
                parser = References()
                parser.feed(response.text)
                assert not parser.scripts, f"{url} has <script> elements: {parser.scripts}"
                found = parser.urls + [r for css in parser.inline_css for r in css_references(css)]
                for ref in parser.urls:  # same-page anchors point at something on the page
                    if ref.startswith("#") and len(ref) > 1:
                        assert ref[1:] in parser.ids, f"{url}: dangling anchor {ref}"
            elif kind.startswith("text/css"):
                found = css_references(response.text)
                found += ABSOLUTE_URL.findall(response.text)
            elif "javascript" in kind:
                found = ABSOLUTE_URL.findall(response.text)
            for ref in found:
                target = urldefrag(urljoin(url, ref)).url
                assert same_origin(target, origin), f"{url} references {ref}, off the gateway"
                queue.append(target)
    return seen


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy")
    assert policy, f"{response.url}: no Content-Security-Policy"
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if part.strip():
            name, *values = part.split()
            directives[name.lower()] = values
    return directives


def assert_offline_policy(response: httpx.Response) -> None:
    """The policy makes a browser refuse any script not from the gateway, and every remote asset."""
    directives = csp_directives(response)
    assert directives.get("default-src") in (["'none'"], ["'self'"]), directives
    scripts = directives.get("script-src", directives["default-src"])
    assert set(scripts) <= {"'none'", "'self'"}, directives
    for name, values in directives.items():
        for value in values:
            assert value.startswith("'") or name in ("report-uri", "report-to"), (name, value)


def public_doc(gateway: Proc) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/docs/public.json", timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = msgspec.json.decode(response.content)
    return document


# -- the gateways -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_gateway(logs: Path, fake_proc: Proc) -> Iterator[Proc]:
    """The demo's config and embedded store, the admin API disabled: what `keyway demo` runs."""
    config = demo_config_text(fake_proc.port)
    gw = start_gateway(logs, config, redis_url=None, env={"KEYWAY_ADMIN_KEYS": ""})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def admin_gateway(logs: Path, fake_proc: Proc) -> Iterator[Proc]:
    config = make_config(fake_proc.url)
    gw = start_gateway(logs, config, redis_url=None, env={"KEYWAY_ADMIN_KEYS": ADMIN_KEY})
    yield gw
    gw.stop()


@pytest.fixture(params=["demo", "admin"])
def gateway(request: pytest.FixtureRequest) -> Proc:
    proc: Proc = request.getfixturevalue(f"{request.param}_gateway")
    return proc


# -- nothing leaves the gateway ---------------------------------------------------------------


def test_the_page_and_its_assets_come_from_the_gateway_alone(gateway: Proc) -> None:
    fetched = crawl(gateway)
    kinds = {r.headers["content-type"].split(";")[0] for r in fetched.values()}
    assert "text/css" in kinds, kinds  # the stylesheet was found and fetched
    # the links to the documents were followed too
    paths = {urlsplit(url).path for url in fetched}
    assert {"/docs", "/docs/docs.css", "/docs/public.json", "/docs/public.yaml",
            "/docs/openapi.json"} <= paths, paths  # fmt: skip


@pytest.mark.parametrize(
    "path",
    [
        "/docs",
        "/docs/docs.css",
        "/docs/public.json",
        "/docs/public.yaml",
        "/docs/openapi.json",
        "/docs/openapi.yaml",
        "/docs/no-such-page",
    ],
)
def test_every_docs_answer_forbids_remote_scripts(demo_gateway: Proc, path: str) -> None:
    response = httpx.get(f"{demo_gateway.url}{path}", timeout=10)
    assert response.status_code == (404 if "no-such" in path else 200)
    assert_offline_policy(response)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_old_cdn_pages_are_gone(demo_gateway: Proc) -> None:
    for path in ("/docs/redoc", "/docs/swagger", "/docs/rapidoc", "/docs/elements"):
        response = httpx.get(f"{demo_gateway.url}{path}", timeout=10)
        assert response.status_code == 404, path
        assert "cdn" not in response.text.lower() and "<script" not in response.text.lower()


def test_the_assets_are_the_package_files(demo_gateway: Proc) -> None:
    files = resources.files("gateway.apidocs")
    css = httpx.get(f"{demo_gateway.url}/docs/docs.css", timeout=10)
    assert css.content == files.joinpath("docs.css").read_bytes()
    spec = httpx.get(f"{demo_gateway.url}/docs/public.yaml", timeout=10)
    assert spec.content == files.joinpath("openapi-public.yaml").read_bytes()
    assert public_doc(demo_gateway) == msgspec.yaml.decode(spec.content)


# -- what the page documents ------------------------------------------------------------------


def test_the_public_api_is_documented_with_the_admin_api_disabled(demo_gateway: Proc) -> None:
    assert set(PUBLIC_ENDPOINTS) <= set(public_doc(demo_gateway)["paths"])
    page = httpx.get(f"{demo_gateway.url}/docs", timeout=10).text
    for path in PUBLIC_ENDPOINTS:
        assert f"<code>{path}</code>" in page, path
    assert 'id="public-post-v1-chat-completions"' in page
    assert 'id="public-schema-chatcompletionrequest"' in page  # the schemas are there too
    assert "KEYWAY_ADMIN_KEYS" in page  # says how to enable the admin API
    assert not any(path in page for path in ADMIN_ENDPOINTS)


def test_the_admin_api_is_documented_when_enabled(admin_gateway: Proc) -> None:
    page = httpx.get(f"{admin_gateway.url}/docs", timeout=10).text
    for path in [*PUBLIC_ENDPOINTS, *ADMIN_ENDPOINTS]:
        assert f"<code>{path}</code>" in page, path
    assert 'id="admin-post-admin-clients"' in page
    # the admin bodies as msgspec checks them (gateway.admin.openapi.ExactInputs), here too
    start = page.index('id="admin-schema-clientcreate"')
    create = page[start : page.index("</article>", start)]
    assert "no other fields" in create and "^[A-Za-z0-9._-]{1,64}$" in create


# -- a real browser, offline (where Chromium is installed) ------------------------------------


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.mark.timeout(120)
def test_chromium_renders_the_page_with_no_internet(admin_gateway: Proc, tmp_path: Path) -> None:
    binary = chromium() or require_binary("chromium", "apt-get install chromium")
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=5000", "--dump-dom", f"{admin_gateway.url}/docs"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for path in [*PUBLIC_ENDPOINTS, *ADMIN_ENDPOINTS]:
        assert path in dom, path
    assert "Public API" in dom and "Admin API" in dom
