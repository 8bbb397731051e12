"""Log records cannot be forged: one line each, no control, bidi or invisible character raw."""

from __future__ import annotations

import io
import json
import logging
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robolake import logs
from robolake.cli import build_parser, main

FORGED = "2026-01-01 00:00:00,000 INFO robolake.collector.app: device dev-root granted admin"
#: Line breaks of every kind, escapes, bidi controls and a lone surrogate: rare among arbitrary
#: characters, so drawn on purpose as well.
_BREAKERS = "\n\r\x0b\x0c\x1c\x1d\x1e\x1b\x85\u2028\u2029\u202e\u2067\ufeff\ud800"
#: Every character, surrogates included (they reach logs from undecodable bytes).
ANY_TEXT = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(_BREAKERS)))


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("robolake.test", logging.INFO, __file__, 1, msg, args, exc_info)


def _text(record: logging.LogRecord) -> str:
    return logs.formatter("text").format(record)


def _unsafe(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in logs.UNSAFE_CATEGORIES]


def _raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@pytest.mark.parametrize(
    ("char", "escaped"),
    [
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ("\x00", "\\x00"),
        ("\x0b", "\\x0b"),  # vertical tab: str.splitlines() breaks on it
        ("\x0c", "\\x0c"),  # form feed
        ("\x1b", "\\x1b"),  # ESC: ANSI sequences rewrite the terminal
        ("\x1c", "\\x1c"),  # file / group / record separators: line breaks to splitlines()
        ("\x1e", "\\x1e"),
        ("\x7f", "\\x7f"),  # DEL
        ("\x85", "\\x85"),  # NEL (C1)
        ("\x9b", "\\x9b"),  # CSI (C1)
        ("\u2028", "\\u2028"),  # line separator
        ("\u2029", "\\u2029"),  # paragraph separator
        ("\u202a", "\\u202a"),  # LRE
        ("\u202b", "\\u202b"),  # RLE
        ("\u202c", "\\u202c"),  # PDF
        ("\u202d", "\\u202d"),  # LRO
        ("\u202e", "\\u202e"),  # RLO
        ("\u2066", "\\u2066"),  # LRI
        ("\u2067", "\\u2067"),  # RLI
        ("\u2068", "\\u2068"),  # FSI
        ("\u2069", "\\u2069"),  # PDI
        ("\u200e", "\\u200e"),  # LRM
        ("\u200f", "\\u200f"),  # RLM
        ("\u061c", "\\u061c"),  # Arabic letter mark
        ("\u200b", "\\u200b"),  # zero-width space
        ("\ufeff", "\\ufeff"),  # BOM
        ("\ud800", "\\ud800"),  # lone surrogate: not even encodable
        ("\ue000", "\\ue000"),  # private use
        ("\U000e0041", "\\U000e0041"),  # tag character
        ("\U0010ffff", "\\U0010ffff"),  # noncharacter, unassigned
    ],
)
def test_every_unsafe_class_is_escaped_in_message_and_arguments(char: str, escaped: str) -> None:
    line = _text(_record(f"path /a{char}b and %s", f"stream x{char}y"))
    assert line.endswith(f"path /a{escaped}b and stream x{escaped}y")
    assert not _unsafe(line)
    assert len(line.splitlines()) == 1


def test_a_forged_record_stays_inside_the_real_one() -> None:
    line = _text(_record("refused PUT %s", f"/v1/episodes/x/streams/a\n{FORGED}\u202e/chunks/0"))
    assert line.splitlines() == [line]
    assert not line.startswith(FORGED)
    assert f"/streams/a\\n{FORGED}\\u202e/chunks/0" in line


def test_printable_text_is_left_alone() -> None:
    text = "Zürich 東京 🤖 naïve\u00a0café \\n stays two characters"
    assert logs.escape(text) == text


def test_a_traceback_is_part_of_its_record_line() -> None:
    line = _text(_record("upload failed", exc=_raised(f"bad stream 'a\n{FORGED}'")))
    assert line.splitlines() == [line]
    assert "upload failed\\nTraceback (most recent call last):\\n" in line
    assert f"ValueError: bad stream 'a\\n{FORGED}'" in line


@given(message=ANY_TEXT, argument=ANY_TEXT)
def test_any_text_formats_to_exactly_one_clean_line(message: str, argument: str) -> None:
    line = _text(_record(message.replace("%", "%%") + " %s", argument))
    assert len(line.splitlines()) == 1
    assert not _unsafe(line)
    line.encode("utf-8")  # strict: no surrogate survives


@given(text=ANY_TEXT)
def test_text_without_unsafe_characters_is_unchanged(text: str) -> None:
    safe = "".join(c for c in text if not _unsafe(c))
    assert logs.escape(safe) == safe


@given(message=ANY_TEXT, argument=ANY_TEXT)
def test_json_lines_are_one_ascii_object_each_and_exact(message: str, argument: str) -> None:
    record = _record(message.replace("%", "%%") + " %s", argument, exc=_raised(argument))
    line = logs.formatter("json").format(record)
    assert len(line.splitlines()) == 1
    assert line.isascii()
    document = json.loads(line)
    assert document["message"] == f"{message} {argument}"
    assert document["level"] == "INFO"
    assert document["logger"] == "robolake.test"
    assert document["exception"].startswith("Traceback (most recent call last):")


def test_log_format_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(logs.ENV_LOG_FORMAT, raising=False)
    assert build_parser().parse_args(["init"]).log_format == "text"
    assert build_parser().parse_args(["--log-format", "json", "init"]).log_format == "json"
    monkeypatch.setenv(logs.ENV_LOG_FORMAT, "json")
    assert build_parser().parse_args(["init"]).log_format == "json"
    monkeypatch.setenv(logs.ENV_LOG_FORMAT, "xml")
    with pytest.raises(SystemExit) as exit_info:
        main(["init"])
    assert exit_info.value.code == 2


def test_configure_writes_escaped_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh process; restored afterwards
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    logging.getLogger("robolake.test").info("refused %s", f"a\n{FORGED}")
    assert stream.getvalue().count("\n") == 1
    assert f"refused a\\n{FORGED}\n" in stream.getvalue()
