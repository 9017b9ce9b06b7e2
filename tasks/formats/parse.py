"""Parse: bytes to clean text, a title and the heading structure.

Each format uses a well-kept parser: markdown-it-py, docutils (with Sphinx's
directives and roles kept as text, kbflow.tasks.formats.sphinx_rst), the standard library's
streaming HTML tokenizer reading only the page's main content
(kbflow.tasks.formats.html), pypdf and python-docx. Admonitions (note, tip, warning,
caution, important) are text of the section they sit in, prefixed with their label
("Note: …"), never headings, in every markup. Text that is not UTF-8 is decoded with
a detected charset. A document that cannot be parsed becomes a quarantine record
with the reason; the rest of the run goes on.
"""

from __future__ import annotations

import io
import json
import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import SourceConfig
from kbflow.errors import KbflowError
from kbflow.quarantine import Quarantined
from kbflow.schemas import PARSED
from kbflow.tasks.sources.discover import read_records
from kbflow.tasks.sources.objects import read_object
from kbflow.tasks.formats.headings import SEPARATOR as HEADING_SEPARATOR
from kbflow.tasks.formats.sphinx_rst import clean_doctree, register_sphinx_names


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


# GitHub alerts ("> [!NOTE]") and MkDocs admonitions ("!!! note "Title"", "??? tip").
_GITHUB_ALERT = re.compile(r"^(\s*>\s*)\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]\s*$", re.IGNORECASE)
_MKDOCS_ADMONITION = re.compile(r"""^(\s*)(?:!!!|\?\?\?\+?)\s*([\w-]+)(?:\s+"([^"]*)")?\s*$""")
_FENCE = re.compile(r"^\s*(```|~~~)")


def label_markdown_admonitions(text: str) -> str:
    """Admonitions become labelled paragraphs ("Note: …"), outside code fences.

    A GitHub alert's marker line joins the quote's first line; a MkDocs admonition's
    marker line becomes its label (its title, else its type) and its body is dedented.
    """
    lines, out, in_fence, body_indent, label = text.splitlines(), [], False, None, ""

    def emit(line: str) -> None:
        nonlocal label
        if label and line.strip():
            marker = re.match(r"^[\s>]*", line).group(0)
            line, label = f"{marker}{label}: {line[len(marker):]}", ""
        out.append(line)

    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        if body_indent is not None:
            if line.strip() and not line.startswith(body_indent):
                body_indent, label = None, ""
            else:
                emit(line[len(body_indent):])
                continue
        alert = None if in_fence else _GITHUB_ALERT.match(line)
        mkdocs = None if in_fence else _MKDOCS_ADMONITION.match(line)
        if alert and index + 1 < len(lines) and lines[index + 1].lstrip().startswith(">"):
            label = alert.group(2).capitalize()
            out.append("")
        elif mkdocs:
            title = mkdocs.group(3)
            label = title if title is not None else mkdocs.group(2).replace("-", " ").capitalize()
            out.append("")
            body_indent = mkdocs.group(1) + "    "
        else:
            emit(line)
    return "\n".join(out)


def parse_markdown(text: str) -> ParsedText:
    from markdown_it import MarkdownIt

    text = label_markdown_admonitions(text)
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    headings = [
        (int(tokens[i].tag[1]), tokens[i + 1].content, tokens[i].map)
        for i, token in enumerate(tokens)
        if token.type == "heading_open" and token.map
    ]
    for token in tokens:  # code blocks keep their indentation
        if token.type in {"fence", "code_block"} and token.map:
            start, end = token.map
            lines[start] = PRE_START + lines[start]
            lines[end - 1] += PRE_END  # the same line for a one-line block
    parsed, stack = ParsedText(), HeadingStack()
    first_heading_line = headings[0][2][0] if headings else len(lines)
    parsed.add("", "\n".join(lines[:first_heading_line]))
    for index, (level, title, (_, end)) in enumerate(headings):
        body_end = headings[index + 1][2][0] if index + 1 < len(headings) else len(lines)
        parsed.add(stack.push(level, title), "\n".join(lines[end:body_end]))
        if level == 1 and not parsed.title:
            parsed.title = title.strip()
    return parsed


def parse_rst(text: str) -> ParsedText:
    from docutils import nodes
    from docutils.core import publish_doctree

    settings = {
        "report_level": 5,  # never print docutils warnings on our users' terminals
        "halt_level": 5,
        "file_insertion_enabled": False,  # no `.. include::` of files outside the source
        "raw_enabled": False,
        "doctitle_xform": False,  # keep the top section a section, like the others
    }
    register_sphinx_names(text)
    document = publish_doctree(text, settings_overrides=settings)
    clean_doctree(document)
    for block in list(document.findall(lambda n: isinstance(n, (nodes.literal_block, nodes.doctest_block)))):
        block.children = [nodes.Text(preformatted(block.astext()))]
    parsed = ParsedText()

    def body_of(node) -> str:
        return "\n\n".join(
            child.astext()
            for child in node.children
            if not isinstance(child, (nodes.section, nodes.title, nodes.system_message))
        )

    def walk(node, path: list[str]) -> None:
        for child in node.children:
            if isinstance(child, nodes.section):
                title = child.next_node(nodes.title)
                heading_path = [*path, title.astext() if title else ""]
                parsed.title = parsed.title or heading_path[0]
                parsed.add(HEADING_SEPARATOR.join(p for p in heading_path if p), body_of(child))
                walk(child, heading_path)

    parsed.add("", body_of(document))
    walk(document, [])
    return parsed


def parse_html(text: str) -> ParsedText:
    """The page's main content, without site chrome; see kbflow.tasks.formats.html."""
    from kbflow.tasks.formats.html import main_content  # it builds on ParsedText: imported when used

    return main_content(text)


def parse_plain(text: str) -> ParsedText:
    parsed = ParsedText()
    parsed.add("", text)
    return parsed


def parse_pdf(data: bytes) -> ParsedText:
    from pypdf import PdfReader

    # pypdf logs repairs of damaged files as warnings; a failure becomes a quarantine record.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        raise ParseError("encrypted_pdf", "the PDF is encrypted")
    pages = [page.extract_text() or "" for page in reader.pages]
    if not any(page.strip() for page in pages):
        raise ParseError("no_text", "the PDF has no extractable text (a scan?)")
    parsed = ParsedText()
    parsed.add("", "\n\n".join(pages))
    metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    parsed.title = metadata_title.strip()
    return parsed


def parse_docx(data: bytes) -> ParsedText:
    import docx

    document = docx.Document(io.BytesIO(data))
    parsed, stack = ParsedText(), HeadingStack()
    heading, body = "", []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        level = int(style.split()[-1]) if style.startswith("Heading") and style.split()[-1].isdigit() else None
        if style == "Title":
            parsed.title = paragraph.text.strip()
        elif level is not None:
            parsed.add(heading, "\n".join(body))
            heading, body = stack.push(level, paragraph.text), []
        else:
            body.append(paragraph.text)
    for table in document.tables:
        body.extend(" | ".join(cell.text for cell in row.cells) for row in table.rows)
    parsed.add(heading, "\n".join(body))
    return parsed


TEXT_PARSERS = {
    "md": parse_markdown,
    "markdown": parse_markdown,
    "rst": parse_rst,
    "html": parse_html,
    "htm": parse_html,
    "txt": parse_plain,
}
BINARY_PARSERS = {"pdf": parse_pdf, "docx": parse_docx}


def parse_bytes(data: bytes, format: str) -> ParsedText:
    """Parse the bytes of one file in the given format."""
    if format in BINARY_PARSERS:
        return BINARY_PARSERS[format](data)
    if format in TEXT_PARSERS:
        text = decode_text(data).replace(PRE_START, "").replace(PRE_END, "")  # ours alone
        return TEXT_PARSERS[format](text)
    raise ParseError("unsupported_format", f"no parser for .{format} files")


def _document_row(item: dict, parsed: ParsedText, metadata: dict | None = None) -> dict:
    fallback_title = parsed.sections[0][0] if parsed.sections and parsed.sections[0][0] else Path(item["uri"]).stem
    return {
        **{name: item[name] for name in ("doc_id", "source", "tenant", "uri", "format", "content_hash", "size")},
        "title": " ".join(parsed.title.split()) or fallback_title,
        "text": parsed.text,
        "sections": [{"heading": heading, "start": start} for heading, start in parsed.sections],
        "metadata": json.dumps(metadata or {}, sort_keys=True, default=str),
        "boilerplate_share": 0.0,  # set by kbflow.tasks.index.boilerplate.remove_boilerplate
    }


def _quarantine(item: dict, stage: str, reason: str, detail: str) -> Quarantined:
    return Quarantined(item["source"], item["uri"], stage, reason, detail[:2000],
                       doc_id=item["doc_id"], content_hash=item["content_hash"])


def parse_file_items(items: list[dict], read: Callable[[str], bytes] | None = None) -> tuple[list[dict], list[Quarantined]]:
    """Documents of file items; `read` opens an item's `path` (default: a local file)."""
    documents, quarantined = [], []
    for item in items:
        try:
            data = read(item["path"]) if read else Path(item["path"]).read_bytes()
            parsed = parse_bytes(data, item["format"])
        except ParseError as error:
            quarantined.append(_quarantine(item, "parse", error.reason, error.detail))
            continue
        except OSError as error:
            quarantined.append(_quarantine(item, "parse", "unreadable", str(error)))
            continue
        except Exception as error:  # noqa: BLE001 - third-party parsers raise anything on corrupt bytes
            quarantined.append(_quarantine(item, "parse", "corrupt_file", f"{type(error).__name__}: {error}"))
            continue
        documents.append(_document_row(item, parsed))
    return documents, quarantined


def parse_record_items(items: list[dict], source: SourceConfig) -> tuple[list[dict], list[Quarantined]]:
    """Records of changed rows, read once per file."""
    documents, quarantined = [], []
    by_path: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        by_path[item["path"]].append(item)
    for path, path_items in by_path.items():
        try:
            records, _ = read_records(Path(path), source)
        except (OSError, ValueError, pa.ArrowException) as error:
            quarantined.extend(_quarantine(item, "parse", "unreadable_records_file", str(error)) for item in path_items)
            continue
        by_id = {str(record.get(source.id_field)): record for record in records}
        for item in path_items:
            record = by_id.get(item["uri"].split("#", 1)[1])
            if record is None:
                quarantined.append(_quarantine(item, "parse", "record_vanished", "changed while reading"))
                continue
            documents.append(record_document(item, record, source))
    return documents, quarantined


def record_document(item: dict, record: dict, source: SourceConfig) -> dict:
    """The `PARSED` row of one record (a records file's row, a sql row): its text field as plain
    text, its title field, its metadata fields."""
    parsed = parse_plain(str(record.get(source.text_field) or ""))
    parsed.title = str(record.get(source.title_field) or "") if source.title_field else ""
    metadata = {name: record.get(name) for name in source.metadata}
    return _document_row(item, parsed, metadata)


def parse_documents(items: pa.Table, sources: list[SourceConfig]) -> tuple[pa.Table, list[Quarantined]]:
    """Parse discovered items of any source kind into `PARSED` rows."""
    by_name = {source.name: source for source in sources}
    documents, quarantined = [], []
    rows_by_source: dict[str, list[dict]] = defaultdict(list)
    for row in items.to_pylist():
        rows_by_source[row["source"]].append(row)
    for name, rows in rows_by_source.items():
        source = by_name[name]
        if source.kind == "sql":
            from kbflow.tasks.sources.sql import parse_sql_items  # it builds on this module: imported when used

            parsed, bad = parse_sql_items(rows, source)
        elif source.kind == "files":
            # An object's URL is opened here, on whichever worker runs the parse, with the source's options.
            parsed, bad = parse_file_items(rows, partial(read_object, source) if source.is_object_storage else None)
        else:
            parsed, bad = parse_record_items(rows, source)
        documents.extend(parsed)
        quarantined.extend(bad)
    return pa.Table.from_pylist(documents, schema=PARSED), quarantined


@task(name="parse", cache_policy=NO_CACHE)
def parse(items: pa.Table, sources: list[SourceConfig]) -> tuple[pa.Table, list[Quarantined]]:
    """Parse new and changed documents; quarantine what cannot be parsed."""
    return parse_documents(items, sources)
