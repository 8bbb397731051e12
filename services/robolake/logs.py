"""Log records that untrusted values cannot forge: one record, one line, nothing invisible.

Services log what devices send them (paths, stream names, device ids, parser errors quoting
header bytes). A newline in such a value would start what looks like a record of its own; a
carriage return, ANSI escape or bidi override (U+202E) would make a line read differently on a
terminal than it is stored. So every formatted record, traceback included, is passed through
:func:`escape` before it is written: such characters become Python-style escapes (``\\n``,
``\\x1b``, ``\\u202e``) and the record stays on one line. Printable text, non-ASCII letters
included, is left alone, and so are backslashes, so an escape in a log line may also be a
backslash the sender typed; ``--log-format json`` is the exact form.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
ENV_LOG_FORMAT: Final = "ROBOLAKE_LOG_FORMAT"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Control (C0, DEL, C1), format (bidi embeddings, overrides and isolates, zero-width
#: characters, BOM), line and paragraph separators, surrogates (which cannot even be encoded),
#: private-use and unassigned code points: none prints as itself.
UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Printable ASCII never needs a look-up; anything else is checked one character at a time.
_SUSPECT: Final = re.compile(r"[^\x20-\x7e]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in UNSAFE_CATEGORIES:
        return char
    if short := _SHORT.get(char):
        return short
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every character of :data:`UNSAFE_CATEGORIES` written as an escape."""
    return _SUSPECT.sub(_escape_char, text)


class SafeFormatter(logging.Formatter):
    """The usual text format, escaped as a whole, so arguments and tracebacks stay inline."""

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (ASCII-only, so no raw control or bidi character survives)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=True)


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter every robolake process writes its log with."""
    return JsonFormatter() if log_format == "json" else SafeFormatter(TEXT_FORMAT)


def configure(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) through :func:`formatter`.

    Like :func:`logging.basicConfig`, this leaves a root logger that already has handlers
    alone (pytest's, or an embedding program's).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
