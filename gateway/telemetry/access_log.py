"""Structured logs: one access line per request, JSON lines on demand, and a secret guard.

`KEYWAY_LOG_FORMAT=json` turns every log record (Keyway's, Granian's, libraries') into one JSON
object per line; the default is plain text for humans. Either way each line passes through
`redact()` before it is written: whatever looks like an API key or a bearer token is masked
to its last four characters. Call sites never log secrets; this is the last line of defence.

Text from outside (a path, a model name, a request id) cannot forge a line: every string field
of an access line, and every message of the text format, is escaped (`log_safety`).

An access line (`log_request`) carries ids only: the request id, the trace id, the client key
id, the model alias, the deployment (provider/model), the upstream key id (the configured id,
never the key), the number of attempts, the status, the latency and the tokens, and Keyway's
error code when the request failed (`error=upstream_cut` on a stream cut after its 200 went out).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from gateway.telemetry import tracing
from gateway.telemetry.log_safety import escape_controls, escape_message, text_field

__all__ = [
    "ACCESS_LOGGER",
    "AccessRecord",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "granian_log_config",
    "log_format",
    "log_request",
    "redact",
]

ACCESS_LOGGER: Final = "keyway.access"
_access = logging.getLogger(ACCESS_LOGGER)
_encoder = msgspec.json.Encoder()
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Shapes of credentials that must never reach a log line. Group "keep" is the harmless prefix
# that stays readable; group "secret" is masked to its last four characters.
_SECRET = re.compile(
    r"(?P<keep>\b[Bb]earer\s+)(?P<secret>[A-Za-z0-9._~+/=-]{12,})"
    r"|(?P<keep2>\b(?i:api[-_]?key|x-api-key|secret|password|passwd|token|authorization)"
    r"[\"']?\s*[:=]\s*)(?:(?P<quote>[\"'])(?P<quoted>[^\"'\n]{4,}?)(?P=quote)"
    r"|(?P<secret2>[^\s\"',;&]{8,}))"
    r"|(?P<secret3>\bsk-[A-Za-z0-9_-]{12,}"  # OpenAI / Anthropic: sk-..., sk-proj-..., sk-ant-...
    r"|\bAIza[0-9A-Za-z_-]{30,}"  # Google API keys
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+)"  # JWTs
)


def _mask(secret: str) -> str:
    return "***" + secret[-4:] if len(secret) >= 16 else "***"


def _replace(match: re.Match[str]) -> str:
    if match.group("secret") is not None:
        return match.group("keep") + _mask(match.group("secret"))
    if match.group("quoted") is not None:
        quote = match.group("quote")
        return match.group("keep2") + quote + _mask(match.group("quoted")) + quote
    if match.group("secret2") is not None:
        return match.group("keep2") + _mask(match.group("secret2"))
    return _mask(match.group("secret3"))


# `_SECRET` costs ~60 us on a 400-character line (no literal prefix to scan for); these C-speed
# substring tests on the lower-cased line (~3 us) let almost every clean line skip it
_HINTS: Final = ("sk-", "bearer", "aiza", "akia", "gh", "eyj")
_KEY_HINT = re.compile(r"(?:api[-_]?key|secret|passw(?:or)?d|token|authorization)[\"']?\s*[:=]")


def redact(text: str) -> str:
    """`text` with anything shaped like a credential masked to `***` + its last 4 characters."""
    lowered = text.lower()
    for hint in _HINTS:
        if hint in lowered:
            return _SECRET.sub(_replace, text)
    if _KEY_HINT.search(lowered) is None:
        return text
    return _SECRET.sub(_replace, text)


class AccessRecord(msgspec.Struct, kw_only=True):
    """What one request did, in ids and numbers (never a secret, never a prompt)."""

    request_id: str
    route: str
    status: int
    latency_ms: float
    method: str = "POST"
    trace_id: str = ""
    client_id: str = ""
    model: str = ""
    """The alias the client asked for."""
    deployment: str = ""
    """provider/model that answered (or was tried last)."""
    key_id: str = ""
    """The configured id of the upstream key, never the key itself."""
    attempts: int = 0
    tokens_in: int = -1
    tokens_out: int = -1
    stream: bool = False
    ttft_ms: float = -1.0
    """Time to the first streamed byte, -1 when not streamed."""
    error: str = ""
    """Keyway's error code when the request failed (e.g. `upstream_capacity`)."""


_ACCESS_TEXT: Final = (
    "%s %s %d %.1fms request_id=%s model=%s deployment=%s key=%s attempts=%d tokens=%d/%d"
)
_ACCESS_TEXT_ERROR: Final = _ACCESS_TEXT + " error=%s"


def _text_line(record: AccessRecord, model: str) -> tuple[str, tuple[Any, ...]]:
    """The text access line's format and arguments: ` error=<code>` only when there is one.

    Every string is a `text_field`: escaped, and quoted if it holds a space or a quote.
    """
    args = (
        text_field(record.method), text_field(record.route), record.status, record.latency_ms,
        text_field(record.request_id), text_field(model or "-"),
        text_field(record.deployment or "-"), text_field(record.key_id or "-"), record.attempts,
        record.tokens_in, record.tokens_out,
    )  # fmt: skip
    if record.error:
        return _ACCESS_TEXT_ERROR, (*args, text_field(record.error))
    return _ACCESS_TEXT, args


_STRING_FIELDS: Final = tuple(f.name for f in msgspec.structs.fields(AccessRecord) if f.type is str)


def _json_fields(record: AccessRecord) -> dict[str, Any]:
    """The access record's fields for a JSON line, every string escaped (`escape_controls`)."""
    fields = msgspec.structs.asdict(record)
    for name in _STRING_FIELDS:
        value = fields[name]
        if not (value.isprintable() and "\\" not in value):  # the clean case without a call
            fields[name] = escape_controls(value)
    return fields


class _Stamps:
    """Access-line timestamps, the part down to the second formatted once a second.

    `local`: logging's asctime (``2026-12-08 00:14:38,123``, local time), as TextFormatter
    writes it; `utc`: JsonFormatter's ``ts`` (``2026-12-08T00:14:38.123+00:00``). Formatting a
    datetime for every line cost more than the rest of the line.
    """

    __slots__ = ("_local", "_local_second", "_utc", "_utc_second")

    def __init__(self) -> None:
        self._local_second: int | None = None
        self._utc_second: int | None = None
        self._local = self._utc = ""

    def local(self, now: float) -> str:
        second, ms = _second_and_ms(now)
        if second != self._local_second:
            self._local = datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S")
            self._local_second = second
        return f"{self._local},{ms:03d}"

    def utc(self, now: float) -> str:
        second, ms = _second_and_ms(now)
        if second != self._utc_second:
            self._utc = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:19]
            self._utc_second = second
        return f"{self._utc}.{ms:03d}+00:00"


def _second_and_ms(now: float) -> tuple[int, int]:
    """The second and millisecond `datetime.fromtimestamp(now)` shows (it rounds to the
    microsecond, half to even, then the millisecond is cut)."""
    fraction, whole = math.modf(now)
    second, micros = int(whole), round(fraction * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    return second, micros // 1000


_stamps = _Stamps()


class _BatchedAccessLines:
    """Access lines written straight to stderr, all lines of one event-loop turn at once.

    The `logging` path (LogRecord, handler lock, one write syscall per line) measured 55-65 µs
    per request here; this one encodes with msgspec and shares one write among the requests of
    a loop turn. Used once configure_logging installed the stderr handler; a line has the same
    shape JsonFormatter or TextFormatter would give it.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.json = False
        self.handler: logging.StreamHandler[Any] | None = None
        self._pending: list[bytes] = []
        self._scheduled = False
        self._pid = os.getpid()

    def write(self, record: AccessRecord) -> None:
        model = record.model
        if "sk-" in model or len(model) > 64:
            model = redact(model)  # the one field a client writes freely
        if self.json:
            line = _json_fields(record)
            line["model"] = escape_controls(model)
            head = {"ts": _stamps.utc(time.time()), "level": "info", "logger": ACCESS_LOGGER,
                    "pid": self._pid, "msg": "request"}  # fmt: skip
            self._pending.append(_encoder.encode({**head, **line}) + b"\n")
        else:
            fmt, args = _text_line(record, model)
            text = fmt % args
            stamp = _stamps.local(time.time())
            self._pending.append(f"{stamp} INFO {ACCESS_LOGGER} {text}\n".encode())
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        stream = self.handler.stream if self.handler is not None else sys.stderr
        try:
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # not a file (a test's StringIO)
                stream.write(data.decode())
                stream.flush()
                return
            stream.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except (OSError, ValueError):
            pass  # a closed or odd stderr must not break a request


_json_lines = _BatchedAccessLines()


def log_request(record: AccessRecord) -> None:
    """Write the access line of one request (INFO on the `keyway.access` logger)."""
    if not _access.isEnabledFor(logging.INFO):
        return
    if _json_lines.enabled:
        _json_lines.write(record)
        return
    # the text arguments are only formatted by TextFormatter; JsonFormatter reads the record
    fmt, args = _text_line(record, record.model)
    _access.info(fmt, *args, extra={"access": record})


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, pid, msg, trace ids, and access fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        access = getattr(record, "access", None)
        if isinstance(access, AccessRecord):
            line["msg"] = "request"
            line.update(_json_fields(access))
        else:
            line["msg"] = record.getMessage()
            ids = tracing.current_trace_id()
            if ids is not None:
                line["trace_id"], line["span_id"] = ids
            if record.exc_info:
                line["exc"] = self.formatException(record.exc_info)
            elif record.exc_text:
                line["exc"] = record.exc_text
        return redact(_encoder.encode(line).decode())


class TextFormatter(logging.Formatter):
    """The usual human-readable line, passed through `redact()`; the message is kept on one line
    (`escape_message`: a decoded %0a in a logged path cannot start a forged line)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt or _TEXT_FORMAT, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        safe = escape_message(message)
        if safe is not message:  # rare: copy, so other handlers still see the record as it was
            record = logging.makeLogRecord({**record.__dict__, "msg": safe, "args": None})
        return redact(super().format(record))


def log_format(env: Mapping[str, str] | None = None) -> str:
    """`json` or `text`, from KEYWAY_LOG_FORMAT (text unless it says json)."""
    env = os.environ if env is None else env
    return "json" if env.get("KEYWAY_LOG_FORMAT", "").strip().lower() == "json" else "text"


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(
    level: str = "info", fmt: str | None = None, env: Mapping[str, str] | None = None
) -> None:
    """Send every record to stderr through the chosen formatter (replaces the root handlers).

    `KEYWAY_ACCESS_LOG=off` silences the access lines (they cost a few microseconds each).
    """
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(fmt or log_format(env)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    off = env.get("KEYWAY_ACCESS_LOG", "").strip().lower() in ("0", "off", "false", "no")
    _access.setLevel(logging.WARNING if off else logging.NOTSET)
    # access lines skip `logging` (one write per loop turn); both formats keep their shape
    _json_lines.enabled = True
    _json_lines.json = isinstance(handler.formatter, JsonFormatter)
    _json_lines.handler = handler
    _json_lines._pid = os.getpid()


def granian_log_config(fmt: str | None = None) -> dict[str, Any]:
    """A `log_dictconfig` for Granian so its own lines share Keyway's format and guard."""
    formatter = (
        {"()": "gateway.telemetry.access_log.JsonFormatter"}
        if (fmt or log_format()) == "json"
        else {"()": "gateway.telemetry.access_log.TextFormatter"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"keyway": formatter},
        "handlers": {
            "console": {
                "formatter": "keyway",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
