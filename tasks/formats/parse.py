"""The format registry: `parse(bytes, name) -> ParsedText`, one format module per file type.

Each format uses a well-kept parser: markdown-it-py (kbflow.tasks.formats.markdown), docutils with
Sphinx's directives and roles kept as text (kbflow.tasks.formats.rst), the standard library's
streaming HTML tokenizer reading only the page's main content (kbflow.tasks.formats.html), pypdf
(kbflow.tasks.formats.pdf) and python-docx (kbflow.tasks.formats.docx); records text is plain
(kbflow.tasks.formats.text). Admonitions (note, tip, warning, caution, important) are text of the
section they sit in, prefixed with their label ("Note: …"), never headings, in every markup. Text
that is not UTF-8 is decoded with a detected charset (kbflow.tasks.formats.base.decode_text).

A new format is one module with a `parse_<format>(text or bytes) -> ParsedText` and one line in
TEXT_PARSERS or BINARY_PARSERS below. Formats read nothing themselves: where bytes come from is
the sources' business (kbflow.tasks.sources), which import this package, never the other way.
"""

from __future__ import annotations

from collections.abc import Callable

from kbflow.formats import file_format
from kbflow.tasks.formats.base import PRE_END, PRE_START, ParsedText, ParseError, decode_text
from kbflow.tasks.formats.docx import parse_docx
from kbflow.tasks.formats.html import parse_html
from kbflow.tasks.formats.markdown import parse_markdown
from kbflow.tasks.formats.pdf import parse_pdf
from kbflow.tasks.formats.rst import parse_rst
from kbflow.tasks.formats.text import parse_plain

# Text formats: their bytes are decoded (any charset) before the parser sees them.
TEXT_PARSERS: dict[str, Callable[[str], ParsedText]] = {
    "md": parse_markdown,
    "markdown": parse_markdown,
    "rst": parse_rst,
    "html": parse_html,
    "htm": parse_html,
    "txt": parse_plain,
}
# Binary formats: the parser takes the bytes.
BINARY_PARSERS: dict[str, Callable[[bytes], ParsedText]] = {"pdf": parse_pdf, "docx": parse_docx}
FILE_EXTENSIONS = tuple(f".{name}" for name in [*TEXT_PARSERS, *BINARY_PARSERS])  # == kbflow.formats.FILE_FORMATS


def parse_bytes(data: bytes, format: str) -> ParsedText:
    """Parse the bytes of one file in the given format (raises ParseError)."""
    if format in BINARY_PARSERS:
        return BINARY_PARSERS[format](data)
    if format in TEXT_PARSERS:
        text = decode_text(data).replace(PRE_START, "").replace(PRE_END, "")  # ours alone
        return TEXT_PARSERS[format](text)
    raise ParseError("unsupported_format", f"no parser for .{format} files")


def parse(data: bytes, name: str) -> ParsedText:
    """Parse one file's bytes by its name's format (`guide.md`, `page.rst.txt`, `report.pdf`)."""
    return parse_bytes(data, file_format(name))
