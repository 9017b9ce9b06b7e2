"""Read and parse: the new and changed items of a batch, read by their source, parsed by their format.

Each source reads its own items through the `Source` protocol (a file's bytes, an object's body, a
row as a `Record`); bytes go through the format registry (kbflow.tasks.formats.parse), records are
their text field as plain text. Bytes whose hash is not the one discovery recorded were rewritten
between discovery and reading: the item is set aside as `changed_while_read` (the next run reads it
again), never judged on half-written text. Whatever cannot be read or parsed becomes a quarantine
record with its reason; the rest of the run goes on.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.quarantine import Quarantined
from kbflow.schemas import PARSED
from kbflow.sources.base import Content, ReadFailed, Record, Source
from kbflow.tasks.formats.base import ParsedText, ParseError
from kbflow.tasks.formats.parse import parse_bytes
from kbflow.tasks.formats.text import record_text


def document_row(item: dict, parsed: ParsedText, metadata: dict | None = None) -> dict:
    """The `PARSED` row of an item from its parsed text."""
    fallback_title = parsed.sections[0][0] if parsed.sections and parsed.sections[0][0] else Path(item["uri"]).stem
    return {
        **{name: item[name] for name in ("doc_id", "source", "tenant", "uri", "format", "content_hash", "size")},
        "title": " ".join(parsed.title.split()) or fallback_title,
        "text": parsed.text,
        "sections": [{"heading": heading, "start": start} for heading, start in parsed.sections],
        "metadata": json.dumps(metadata or {}, sort_keys=True, default=str),
        "boilerplate_share": 0.0,  # set by kbflow.tasks.index.boilerplate.remove_boilerplate
    }


def _quarantine(item: dict, reason: str, detail: str) -> Quarantined:
    return Quarantined(item["source"], item["uri"], "parse", reason, detail[:2000],
                       doc_id=item["doc_id"], content_hash=item["content_hash"])


def parse_content(item: dict, content: Content) -> dict | Quarantined:
    """One item's `PARSED` row from what its source read, or its quarantine record."""
    if isinstance(content, ReadFailed):
        return _quarantine(item, content.reason, content.detail)
    if isinstance(content, Record):
        return document_row(item, record_text(content.text, content.title), content.metadata)
    if item["content_hash"] and hashlib.sha256(content).hexdigest() != item["content_hash"]:
        return _quarantine(item, "changed_while_read", "the file changed between discovery and reading; "
                           "the next run reads it again")
    try:
        return document_row(item, parse_bytes(content, item["format"]))
    except ParseError as error:
        return _quarantine(item, error.reason, error.detail)
    except Exception as error:  # noqa: BLE001 - third-party parsers raise anything on corrupt bytes
        return _quarantine(item, "corrupt_file", f"{type(error).__name__}: {error}")


def parse_items(items: list[dict], source: Source) -> tuple[list[dict], list[Quarantined]]:
    """`PARSED` rows of one source's items (DISCOVERED rows as dicts), and what was set aside."""
    documents, quarantined = [], []
    for item, content in source.read(items):
        parsed = parse_content(item, content)
        (quarantined if isinstance(parsed, Quarantined) else documents).append(parsed)
    return documents, quarantined


def parse_documents(items: pa.Table, sources: list[Source]) -> tuple[pa.Table, list[Quarantined]]:
    """Read and parse discovered items of any source into `PARSED` rows."""
    by_name = {source.name: source for source in sources}
    rows_by_source: dict[str, list[dict]] = defaultdict(list)
    for row in items.to_pylist():
        rows_by_source[row["source"]].append(row)
    documents, quarantined = [], []
    for name, rows in rows_by_source.items():
        parsed, set_aside = parse_items(rows, by_name[name])
        documents.extend(parsed)
        quarantined.extend(set_aside)
    return pa.Table.from_pylist(documents, schema=PARSED), quarantined


@task(name="parse", cache_policy=NO_CACHE)
def parse(items: pa.Table, sources: list[Source]) -> tuple[pa.Table, list[Quarantined]]:
    """Read and parse new and changed documents; quarantine what cannot be read or parsed."""
    return parse_documents(items, sources)
