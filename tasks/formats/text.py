"""Plain text, and the text of a record (a records file's row, a sql row): one section, no headings."""

from __future__ import annotations

from kbflow.tasks.formats.base import ParsedText


def parse_plain(text: str) -> ParsedText:
    parsed = ParsedText()
    parsed.add("", text)
    return parsed


def record_text(text: str, title: str = "") -> ParsedText:
    """A record's text field as plain text, titled by its title field."""
    parsed = parse_plain(text)
    parsed.title = title
    return parsed
