"""The README's first screen works as pasted, and its config example is valid.

Everything is read from README.md at test time, never copied here: the run command, the curl line
and the two SDK snippets of the first screen (the text before the first `## ` heading, blocks found
by language and a marker), and the `yaml` block of "## Configuration". The snippets run against a
real `keyway demo` process on free ports: `8080` in a snippet becomes the test's port, nothing
else changes. What a snippet prints is checked against the README's own claim, the `# ` comment
lines after its last command: `…` there stands for any text and each digit for any digit (which
demo key answers varies).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway.providers.transport import PROXY_VARIABLES
from tests.harness import ROOT, Proc, _spawn, free_port, require_binary, wait_http

README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "keyway.yaml"
DEMO_CONFIG = ROOT / "gateway" / "demo.yaml"
README_PORT = "8080"
TEST_COMMAND = "pip install -c constraints.txt -e '.[dev]' && python -m pytest"
SDK_INSTALL = "pip install openai anthropic"


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based

    @property
    def code(self) -> str:
        """The block without its trailing `# ` comment lines (the expected output)."""
        lines = self.text.splitlines()
        while lines and (lines[-1].startswith("#") or not lines[-1].strip()):
            lines.pop()
        return "\n".join(lines) + "\n"

    @property
    def expected(self) -> str:
        """The trailing `# ` comment lines: what the README says the block prints."""
        lines = self.text.splitlines()
        comments: list[str] = []
        while lines and lines[-1].startswith("# "):
            comments.insert(0, lines.pop()[2:])
        assert comments, f"README.md:{self.line}: no `# ` line saying what the block prints"
        return "\n".join(comments)


def fenced_blocks(markdown: str, first_line: int = 1) -> list[Block]:
    blocks: list[Block] = []
    lang: str | None = None
    body: list[str] = []
    start = 0
    for number, line in enumerate(markdown.splitlines(), start=first_line):
        if not line.startswith("```"):
            if lang is not None:
                body.append(line)
            continue
        if lang is None:
            lang, body, start = line[3:].strip(), [], number
        else:
            blocks.append(Block(lang, "\n".join(body) + "\n", start))
            lang = None
    assert lang is None, f"README.md:{start}: unclosed code fence"
    return blocks


def readme() -> str:
    return README.read_text(encoding="utf-8")


def first_screen(markdown: str) -> str:
    """The README up to its first `## ` section."""
    return markdown.split("\n## ", 1)[0]


def section(markdown: str, title: str) -> tuple[str, int]:
    """The body of the `## title` section and the line it starts on."""
    head = f"\n## {title}\n"
    assert head in markdown, f"README.md has no '## {title}' section"
    start = markdown.index(head) + 1
    end = markdown.find("\n## ", start)
    body = markdown[start : end if end != -1 else len(markdown)]
    return body, markdown.count("\n", 0, start) + 1


def find_block(blocks: list[Block], langs: set[str], marker: str) -> Block:
    found = [b for b in blocks if b.lang in langs and marker in b.text]
    assert found, f"no {'/'.join(sorted(langs))} block containing {marker!r} in the README"
    return found[0]


def screen_block(langs: set[str], marker: str) -> Block:
    return find_block(fenced_blocks(first_screen(readme())), langs, marker)


def output_pattern(expected: str) -> re.Pattern[str]:
    parts = [
        "".join(r"\d" if ch.isdigit() else re.escape(ch) for ch in part)
        for part in expected.split("…")
    ]
    return re.compile(".*?".join(parts), re.DOTALL)


def local_env(**extra: str) -> dict[str, str]:
    """The environment minus egress proxies: a developer's proxy must not catch 127.0.0.1."""
    drop = {*PROXY_VARIABLES, "ALL_PROXY", "all_proxy"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.pop("REDIS_URL", None)
    return {**env, **extra}


def keyway_argv() -> list[str]:
    script = Path(sys.executable).with_name("keyway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


def demo_key_suffixes() -> dict[str, str]:
    """Demo upstream key id -> the last four characters of its secret (the fake provider's reply
    names the key it was called with by those)."""
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    return {
        key["id"]: str(key["secret"])[-4:]
        for provider in config["providers"].values()
        for key in provider["keys"]
    }


# -- the first screen ------------------------------------------------------------------------------


def test_first_screen_has_the_run_and_test_commands_and_the_sdk_install_line() -> None:
    screen = first_screen(readme())
    installs = [b for b in fenced_blocks(screen) if "pip install" in b.text]
    commands = [b.text.strip() for b in installs]
    assert len(commands) == 2, commands
    run, test = commands
    assert run.startswith("pip install -c constraints.txt -e . && "), run
    assert run.endswith("keyway demo"), run
    assert test == TEST_COMMAND
    prose = re.sub(r"```.*?```", "", screen, flags=re.DOTALL)
    assert f"`{SDK_INSTALL}`" in prose
    assert "constraints.txt" in prose


@pytest.fixture(scope="module")
def demo(logs: Path) -> Iterator[Proc]:
    """`keyway demo` as the README's run command starts it, on free ports."""
    run = screen_block({"bash", "sh"}, "keyway demo").text.strip()
    argv = shlex.split(run.rsplit("&&", 1)[-1])
    assert argv[:2] == ["keyway", "demo"], argv
    port, fake_port = free_port(), free_port()
    argv = [*keyway_argv(), *argv[1:], "--port", str(port), "--fake-port", str(fake_port)]
    proc = _spawn("keyway-demo", argv, logs, port, {"REDIS_URL": ""})
    try:
        wait_http(f"{proc.url}/readyz", timeout_s=60, proc=proc)
    except BaseException:
        proc.stop()
        raise
    yield proc
    proc.stop()


def run_snippet(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=local_env(), cwd=cwd, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_curl_line_answers_with_the_fake_providers_reply(demo: Proc, tmp_path: Path) -> None:
    require_binary("curl", "apt-get install curl")
    block = screen_block({"bash", "sh"}, "curl ")
    assert README_PORT in block.code
    out = run_snippet(["bash", "-c", block.code.replace(README_PORT, str(demo.port))], tmp_path)
    assert output_pattern(block.expected).search(out), f"{block.expected!r} vs {out!r}"
    reply = json.loads(out)["choices"][0]["message"]["content"]
    assert re.fullmatch(r"Hello from fake provider \(key \.\.\.\w{4}\)", reply), reply


@pytest.mark.parametrize(
    ("marker", "key_prefix"),
    [("from openai import", "demo-oa-"), ("import anthropic", "demo-an-")],
    ids=["openai", "anthropic"],
)
def test_sdk_snippet_prints_the_upstream_key_and_its_reply(
    demo: Proc, tmp_path: Path, marker: str, key_prefix: str
) -> None:
    block = screen_block({"python"}, marker)
    assert README_PORT in block.code
    code = block.code.replace(README_PORT, str(demo.port))
    out = run_snippet([sys.executable, "-c", code], tmp_path).strip()
    assert output_pattern(block.expected).fullmatch(out), f"{block.expected!r} vs {out!r}"
    # the header names the key that served: the reply ends with that key's secret's last 4
    key_id, _, text = out.partition(" ")
    assert key_id.startswith(key_prefix), out
    assert text.endswith(f"(key ...{demo_key_suffixes()[key_id]})"), out


# -- the configuration example ---------------------------------------------------------------------


def config_block() -> Block:
    body, first_line = section(readme(), "Configuration")
    found = [b for b in fenced_blocks(body, first_line) if b.lang == "yaml"]
    assert found, "no yaml block in '## Configuration'"
    return found[0]


def test_readme_config_is_examples_keyway_yaml() -> None:
    """The README's block is examples/keyway.yaml verbatim, minus its header comment lines."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    assert config_block().text == "".join(lines)


def test_readme_config_passes_check_config(tmp_path: Path) -> None:
    text = config_block().text
    path = tmp_path / "keyway.yaml"
    path.write_text(text, encoding="utf-8")
    secrets = {name: f"test-secret-{name.lower()}" for name in re.findall(r"env:(\w+)", text)}
    done = subprocess.run(
        [*keyway_argv(), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=local_env(**secrets),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: "), done.stdout
