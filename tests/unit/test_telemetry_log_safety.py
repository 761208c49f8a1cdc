"""Log lines cannot be forged: text from outside is escaped in access lines, audit lines and
every message of the text format, reversibly, and a clean value is left as it is."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import msgspec
import pytest

from gateway.telemetry import access_log
from gateway.telemetry.access_log import AccessRecord, JsonFormatter, TextFormatter, log_request
from gateway.telemetry.log_safety import escape_controls, escape_message, text_field

__all__: list[str] = []

FORGED = "x\n2026-01-01 00:00:00,000 INFO keyway.audit admin change: delete provider fake"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("a\nb", "a\\nb"),
        ("a\r\nb", "a\\r\\nb"),
        ("tab\there", "tab\\there"),
        ("nul\x00esc\x1b[31m", "nul\\x00esc\\x1b[31m"),
        ("del\x7f", "del\\x7f"),
        ("c1 next line\x85", "c1 next line\\x85"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("back\\slash", "back\\\\slash"),
        ("caf\u00e9 \u4e2d", "caf\u00e9 \u4e2d"),
    ],
)
def test_control_characters_and_backslashes_are_escaped(raw: str, escaped: str) -> None:
    assert escape_controls(raw) == escaped
    assert escaped.isprintable()


def test_a_clean_value_is_the_same_object() -> None:
    value = "req-0123abcd"
    assert escape_controls(value) is value
    assert escape_message(value) is value


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("k1", "k1"),
        ("", '""'),
        ("gpt 4 key=forged", '"gpt 4 key=forged"'),
        ('say "hi"', '"say \\"hi\\""'),
        ('a"b', '"a\\"b"'),
        ("a\nb", "a\\nb"),
    ],
)
def test_a_text_field_is_quoted_when_it_holds_a_separator(raw: str, field: str) -> None:
    assert text_field(raw) == field


def test_a_whole_message_keeps_its_backslashes() -> None:
    assert escape_message("C:\\path\nnext") == "C:\\path\\nnext"


@pytest.fixture()
def text_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_a_decoded_newline_in_a_logged_path_stays_on_its_line(text_lines: io.StringIO) -> None:
    logging.getLogger("keyway.audit").warning("admin auth failed: no key on %s", "/admin/" + FORGED)
    lines = text_lines.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("on /admin/x\\n2026-01-01 00:00:00,000 INFO keyway.audit admin "
                             "change: delete provider fake")  # fmt: skip


def test_a_traceback_stays_readable(text_lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("keyway").exception("failed on %s", "/a\nb")
    text = text_lines.getvalue()
    assert "failed on /a\\nb\nTraceback (most recent call last):" in text


def test_access_lines_escape_and_quote_what_the_client_wrote(text_lines: io.StringIO) -> None:
    access_log._json_lines.enabled = False
    record = AccessRecord(
        request_id="r1", route="/v1/chat/completions", status=400, latency_ms=1.0,
        model="gpt deployment=forged key=k9\nFAKE LINE", error="bad_request",
    )  # fmt: skip
    log_request(record)
    lines = text_lines.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert ' model="gpt deployment=forged key=k9\\nFAKE LINE" deployment=- key=- ' in lines[0]


def test_json_access_lines_escape_every_string(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    batched = access_log._BatchedAccessLines()
    batched.enabled = batched.json = True
    batched.handler = logging.StreamHandler(buffer)
    record = AccessRecord(
        request_id="r2", route="/v1/chat/completions", status=200, latency_ms=1.0,
        model="m\u2028x", deployment="p/m", key_id="k\x85",
    )  # fmt: skip
    batched.write(record)
    batched.flush()
    formatted = JsonFormatter().format(
        logging.makeLogRecord({"name": "keyway.access", "msg": "", "access": record})
    )
    for text in (buffer.getvalue().strip(), formatted):
        line = msgspec.json.decode(text)
        assert (line["model"], line["key_id"]) == ("m\\u2028x", "k\\x85")
        assert text.isprintable()
