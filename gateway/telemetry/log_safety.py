"""Escaping for log lines, so that text from outside (paths, ids, model names) cannot forge one.

A URL-decoded ``%0a`` in a request path, written as is, ends the line and starts a forged one
(``... on /admin/x`` newline ``2026-01-01 ... admin change: ...``). So every value that comes
from outside is escaped before it reaches a line, and the text formatter escapes every message
once more (a traceback stays multi-line: it is not the message).

The escapes are reversible, so a reader loses nothing an attacker sent:

    backslash -> \\\\    newline -> \\n    carriage return -> \\r    tab -> \\t
    every other character ``str.isprintable()`` refuses: C0, DEL, C1, U+2028/U+2029, bidi and
    zero-width format characters, spaces other than U+0020 -> \\xNN, \\uNNNN or \\UNNNNNNNN

`text_field` also quotes a value that holds a space or a double quote (``"a b"``, an inner
``"`` becomes ``\\"``), so a value cannot add a ``key=value`` field of its own to a text line.
"""

from __future__ import annotations

from typing import Final

__all__ = ["escape_controls", "escape_message", "text_field"]

_NAMED: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """`text` with backslashes and unprintable characters escaped (unchanged when clean)."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case: two C-speed scans, no copy
    return "".join(map(_escaped, text))


def escape_message(text: str) -> str:
    """A whole log message made one line: unprintable characters escaped, backslashes kept.

    For the formatter's last line of defence; values from outside get `escape_controls` (or
    `text_field`) at the call site, whose output this leaves as it is.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def text_field(value: str) -> str:
    """`value` as one field of a space-separated text line: escaped, quoted when it must be."""
    escaped = escape_controls(value)
    if escaped and " " not in escaped and '"' not in escaped:
        return escaped
    return '"' + escaped.replace('"', '\\"') + '"'
