"""What every format produces: `ParsedText` (text assembled section by section, with heading paths),
the heading bookkeeping, whitespace normalisation that keeps preformatted text as written, and the
decoding of text formats' bytes. The format modules build on this one; it imports none of them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from kbflow.errors import KbflowError
from kbflow.tasks.formats.headings import SEPARATOR as HEADING_SEPARATOR


class ParseError(KbflowError, ValueError):
    """A document whose content cannot be turned into text; `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class ParsedText:
    """Text assembled section by section; `sections` holds (heading path, start offset)."""

    title: str = ""
    parts: list[str] = field(default_factory=list)
    sections: list[tuple[str, int]] = field(default_factory=list)
    _length: int = 0

    def add(self, heading: str, body: str) -> None:
        body, heading = normalize_whitespace(body), " ".join(heading.split())  # "Arithmetic:  Issues" as one space
        if not body and not heading:
            return
        if self.parts:
            self.parts.append("\n\n")
            self._length += 2
        self.sections.append((heading, self._length))
        self.parts.append(body)
        self._length += len(body)

    @property
    def text(self) -> str:
        return "".join(self.parts)


# Parsers wrap preformatted text (code blocks, <pre>, doctests) in these two Unicode
# noncharacters, which exist for a program's internal use: normalize_whitespace keeps
# what lies between them as written (indentation is meaning in Python, YAML, a synopsis).
PRE_START, PRE_END = "\ufdd0", "\ufdd1"
_PREFORMATTED = re.compile(f"{PRE_START}(.*?){PRE_END}", re.DOTALL)


def preformatted(text: str) -> str:
    """Mark `text` as preformatted: normalize_whitespace keeps its spaces and line breaks."""
    return f"{PRE_START}{text}{PRE_END}" if text else text


def _normalize_prose(text: str) -> str:
    text = re.sub(r"[ \t\f\v\u00a0]+", " ", text)
    return re.sub(r" *\n *", "\n", text)


def _normalize_code(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.expandtabs(4).split("\n"))


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces and blank lines, except inside preformatted() text."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace(PRE_END + PRE_START, "")  # one block, marked piece by piece (<pre> with <span>s)
    pieces = _PREFORMATTED.split(text)  # prose, code, prose, code, …, prose
    pieces[0] = pieces[0].lstrip()
    text = "".join(
        _normalize_code(piece) if index % 2 else _normalize_prose(piece)
        for index, piece in enumerate(pieces)
    ).replace(PRE_START, "").replace(PRE_END, "")  # an unpaired marker
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n").rstrip()


def decode_text(data: bytes) -> str:
    """Decode bytes of a text format, surviving encodings other than UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:8192]:
        raise ParseError("binary_content", "NUL bytes in a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    candidates = from_bytes(data)
    best = candidates.best()
    if best is None:
        raise ParseError("binary_content", "no text encoding fits these bytes")
    # Short texts fit several code pages equally well; then prefer windows-1252, the
    # WHATWG default for legacy Western text (what "latin-1" files usually are).
    tied = [match for match in candidates if match.chaos <= best.chaos]
    return str(next((match for match in tied if match.encoding == "cp1252"), best))


class HeadingStack:
    """Heading path bookkeeping shared by the formats that have heading levels."""

    def __init__(self) -> None:
        self._levels: list[tuple[int, str]] = []

    def push(self, level: int, title: str) -> str:
        while self._levels and self._levels[-1][0] >= level:
            self._levels.pop()
        self._levels.append((level, title.strip()))
        return HEADING_SEPARATOR.join(t for _, t in self._levels if t)
