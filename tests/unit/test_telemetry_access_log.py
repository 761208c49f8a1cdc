"""Access lines and log formatting: one JSON object per line with the request's ids, and no
secret survives into any line, whatever the call site wrote."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider

from gateway.telemetry import access_log, tracing
from gateway.telemetry.access_log import (
    AccessRecord,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    granian_log_config,
    log_format,
    log_request,
    redact,
)

__all__: list[str] = []

_decode = msgspec.json.Decoder()

OPENAI_KEY = "sk-proj-Zx81kLmN0pQrStUvWxYz1234567890abcdEF9k2Q"
ANTHROPIC_KEY = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-w7Yq"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZWFtLWEifQ.c2lnbmF0dXJlLXZhbHVlLTAxMjM"


@pytest.fixture()
def lines() -> Iterator[io.StringIO]:
    """Route every record of the test to a buffer through the JSON formatter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield buffer
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    logging.getLogger(access_log.ACCESS_LOGGER).setLevel(logging.NOTSET)


def records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [_decode.decode(line) for line in buffer.getvalue().splitlines()]


def test_access_line_carries_the_request_fields(lines: io.StringIO) -> None:
    log_request(
        AccessRecord(
            request_id="a1b2c3",
            route="/v1/chat/completions",
            status=200,
            latency_ms=12.5,
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            client_id="team-a",
            model="gpt-4o-mini",
            deployment="openai/gpt-4o-mini",
            key_id="oa-2",
            attempts=2,
            tokens_in=120,
            tokens_out=30,
            stream=True,
            ttft_ms=80.0,
        )
    )
    (line,) = records(lines)
    assert line["msg"] == "request"
    assert line["logger"] == "keyway.access"
    assert line["level"] == "info"
    assert isinstance(line["ts"], str) and line["ts"].endswith("+00:00")
    expected = {
        "request_id": "a1b2c3",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "client_id": "team-a",
        "model": "gpt-4o-mini",
        "deployment": "openai/gpt-4o-mini",
        "key_id": "oa-2",
        "attempts": 2,
        "status": 200,
        "latency_ms": 12.5,
        "tokens_in": 120,
        "tokens_out": 30,
        "stream": True,
        "ttft_ms": 80.0,
        "method": "POST",
        "route": "/v1/chat/completions",
    }
    assert {k: line[k] for k in expected} == expected


def test_every_record_is_one_json_line(lines: io.StringIO) -> None:
    log = logging.getLogger("keyway.test")
    log.info("upstream %s key %s answered %d", "openai", "oa-1", 429)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("failed")
    first, second = records(lines)
    assert first["msg"] == "upstream openai key oa-1 answered 429"
    assert first["logger"] == "keyway.test"
    assert second["level"] == "error"
    assert isinstance(second["exc"], str) and "ValueError: bad" in second["exc"]
    assert len(lines.getvalue().splitlines()) == 2


def test_json_lines_carry_the_current_trace(lines: io.StringIO) -> None:
    provider = TracerProvider()
    tracing.use_tracer(provider.get_tracer("test"), provider)
    try:
        tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        with tracing.server_span([(b"traceparent", tp)], "/v1/chat/completions"):
            logging.getLogger("keyway.test").warning("inside")
        logging.getLogger("keyway.test").warning("outside")
    finally:
        tracing.shutdown_tracing()
    inside, outside = records(lines)
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert isinstance(inside["span_id"], str) and len(inside["span_id"]) == 16
    assert "trace_id" not in outside


@pytest.mark.parametrize(
    ("text", "secret", "tail"),
    [
        (f"calling upstream with Authorization: Bearer {OPENAI_KEY}", OPENAI_KEY, "9k2Q"),
        (f"bad key {ANTHROPIC_KEY} refused", ANTHROPIC_KEY, "w7Yq"),
        (f"x-api-key: {ANTHROPIC_KEY}", ANTHROPIC_KEY, "w7Yq"),
        (f"headers={{'authorization': 'Bearer {BEARER}'}}", BEARER, "xMjM"),
        ("config api_key=s3cr3t-Value-0987654321", "s3cr3t-Value-0987654321", "4321"),
        ('{"password": "correct horse battery"}', "correct", ""),
    ],
)
def test_redact_masks_credentials(text: str, secret: str, tail: str) -> None:
    masked = redact(text)
    assert secret not in masked
    assert "***" + tail in masked


@pytest.mark.parametrize(
    "text",
    [
        "upstream openai key oa-1 answered 429 (rate_limited)",
        "request_id=9f2c4e1d8a7b6c5d4e3f2a1b tokens=120/30 trace 4bf92f3577b34da6a3ce929d0e0e4736",
        "keyway ready: 2 providers, 3 model aliases, 1 client keys",
        '{"max_tokens": 4096, "input_tokens": 12345678}',
    ],
)
def test_redact_leaves_ordinary_lines_alone(text: str) -> None:
    assert redact(text) == text


def test_no_formatter_writes_a_secret(lines: io.StringIO) -> None:
    log = logging.getLogger("keyway.test")
    log.warning("retrying with %s", OPENAI_KEY)
    try:
        raise RuntimeError(f"upstream said: invalid key {OPENAI_KEY}")
    except RuntimeError:
        log.exception("attempt failed")
    record = logging.LogRecord("keyway.test", logging.INFO, __file__, 1, OPENAI_KEY, None, None)
    text_line = TextFormatter().format(record)
    assert OPENAI_KEY not in lines.getvalue()
    assert lines.getvalue().count("***9k2Q") == 2  # the message, the exception's message
    assert OPENAI_KEY not in text_line and "***9k2Q" in text_line


def test_configure_logging_picks_the_format_and_the_access_switch() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("debug", env={"KEYWAY_LOG_FORMAT": "json"})
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert root.level == logging.DEBUG
        buffer = io.StringIO()
        handler.setStream(buffer)  # type: ignore[attr-defined]
        log_request(AccessRecord(request_id="r", route="/v1/embeddings", status=200, latency_ms=1))
        assert len(buffer.getvalue().splitlines()) == 1

        configure_logging("info", env={"KEYWAY_ACCESS_LOG": "off"})
        (handler,) = root.handlers
        assert isinstance(handler.formatter, TextFormatter)
        buffer = io.StringIO()
        handler.setStream(buffer)  # type: ignore[attr-defined]
        log_request(AccessRecord(request_id="r", route="/v1/embeddings", status=200, latency_ms=1))
        logging.getLogger("keyway.test").info("still here")
        assert buffer.getvalue().count("\n") == 1 and "still here" in buffer.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger(access_log.ACCESS_LOGGER).setLevel(logging.NOTSET)


def test_text_is_the_default_format() -> None:
    assert log_format({}) == "text"
    assert log_format({"KEYWAY_LOG_FORMAT": "JSON"}) == "json"


def test_granian_config_points_at_our_formatters() -> None:
    for fmt, cls in (("json", JsonFormatter), ("text", TextFormatter)):
        config = granian_log_config(fmt)
        factory = config["formatters"]["keyway"]["()"]
        module, _, name = factory.rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name) is cls
        assert set(config["loggers"]) == {"_granian", "granian.access"}


@pytest.fixture(params=["batched", "logging"])
def text_lines(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[io.StringIO]:
    """Text access lines into a buffer, by either writer: the batched one `configure_logging`
    installs, or the `logging` path through TextFormatter."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    monkeypatch.setattr(access_log, "_json_lines", access_log._BatchedAccessLines())
    try:
        if request.param == "batched":
            configure_logging("info", fmt="text", env={})
            root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
        else:
            handler = logging.StreamHandler(buffer)
            handler.setFormatter(TextFormatter())
            root.handlers[:] = [handler]
            root.setLevel(logging.INFO)
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger(access_log.ACCESS_LOGGER).setLevel(logging.NOTSET)


def test_the_text_line_names_the_error(text_lines: io.StringIO) -> None:
    cut = AccessRecord(request_id="r1", route="/v1/chat/completions", status=200, latency_ms=5,
                       model="gpt-4o-mini", attempts=1, tokens_in=21, tokens_out=6, stream=True,
                       error="upstream_cut")  # fmt: skip
    log_request(cut)
    log_request(AccessRecord(request_id="r2", route="/v1/embeddings", status=200, latency_ms=1))
    first, second = text_lines.getvalue().splitlines()
    assert " keyway.access POST /v1/chat/completions 200 5.0ms request_id=r1 " in first
    assert first.endswith(" tokens=21/6 error=upstream_cut")
    assert second.endswith(" tokens=-1/-1")  # no error, no `error=`


@pytest.mark.parametrize(
    "now",
    [
        1_796_688_878.0,
        1_796_688_878.0004999,
        1_796_688_878.9994999,
        1_796_688_878.9999995,  # rounds up into the next second, as datetime does
        1_796_688_878.123456,
        0.5,
        -0.0000004,
        -86_400.9999996,
    ],
)
def test_access_line_timestamps_read_as_the_formatters_write_them(now: float) -> None:
    """Formatted once a second, the stamps still say what logging's asctime (text) and
    JsonFormatter's ts (json) say for the same moment, down to the millisecond."""
    stamps = access_log._Stamps()
    for moment in (now - 1, now, now):  # a fresh second, then the one already formatted
        assert (
            stamps.local(moment)
            == datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        )
        assert stamps.utc(moment) == datetime.fromtimestamp(moment, UTC).isoformat(
            timespec="milliseconds"
        )
