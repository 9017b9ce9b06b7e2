"""Boilerplate: lines that repeat across many documents of a source, removed before chunking.

Licence headers, footers, cookie banners, "Edit this page" and navigation that survived
main-content extraction repeat on most pages of a site; real text does not. A line is
boilerplate when its normalized form (whitespace collapsed, case folded; only lines with
a letter count) appears in at least `chunking.boilerplate_min_share` of the source's
current documents and in at least `chunking.boilerplate_min_documents` of them.

How incrementally: the store keeps each current document's distinct line hashes as of
the last publish (table `line_hashes`). A run hashes only its new and changed documents
(and documents the state lacks), before any batch, so the counts never depend on the
batch size. The set before the run is computed from the stored state, the set after
from the updated state; unchanged documents that hold a line whose verdict changed are
re-parsed and re-chunked in the run (their other chunks keep their ids; unchanged texts
are not embedded again). The updated state is written only after the publish, so a
blocked or crashed run leaves the old state, and the next run converges.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import ChunkingConfig
from kbflow.sources.base import Source
from kbflow.schemas import LINE_HASHES
from kbflow.store import Store
from kbflow.tasks.sources.discover import ChangeSet
from kbflow.tasks.formats.base import ParsedText, preformatted
from kbflow.tasks.sources.read import parse_documents

LINE_HASHES_TABLE = "line_hashes"


def line_hash(line: str) -> str | None:
    """The hash of a line's normalized form; None for lines that never count (no letter)."""
    normalized = " ".join(line.split()).casefold()
    if not any(character.isalpha() for character in normalized):
        return None  # "}", "...", "1": code and numbers repeat without being boilerplate
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).hexdigest()


def document_line_hashes(text: str) -> list[str]:
    """The distinct line hashes of a document's text, sorted."""
    return sorted({h for h in map(line_hash, text.splitlines()) if h is not None})


def boilerplate_lines(state: pa.Table, chunking: ChunkingConfig) -> dict[str, frozenset[str]]:
    """Per source, the line hashes that are boilerplate given the documents in `state` (LINE_HASHES)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    documents: Counter = Counter()
    for source, hashes in zip(state.column("source").to_pylist(), state.column("line_hashes").to_pylist()):
        counts[source].update(hashes or ())
        documents[source] += 1
    lines = {}
    for source, counter in counts.items():
        floor = max(chunking.boilerplate_min_documents, math.ceil(chunking.boilerplate_min_share * documents[source]))
        lines[source] = frozenset(h for h, n in counter.items() if n >= floor)
    return lines


def strip_lines(document: dict, lines: frozenset[str]) -> dict:
    """A `PARSED` row without its boilerplate lines; sections re-anchored, removed share recorded."""
    text, sections = document["text"], document["sections"] or [{"heading": "", "start": 0}]
    if not lines or not text:
        return {**document, "boilerplate_share": 0.0}
    ends = [section["start"] for section in sections[1:]] + [len(text)]
    kept = ParsedText(title=document["title"])
    for section, end in zip(sections, ends):
        body = text[section["start"] : end]
        body = "\n".join(line for line in body.splitlines() if line_hash(line) not in lines)
        # The text was normalized when parsed and its code markers are gone: normalizing it again
        # as prose would strip every code line's indentation. Marked preformatted, it keeps its spaces.
        kept.add(section["heading"], preformatted(body))
    stripped = kept.text
    removed = sum(len(line) for line in text.splitlines() if line_hash(line) in lines)
    return {
        **document,
        "text": stripped,
        "sections": [{"heading": heading, "start": start} for heading, start in kept.sections],
        "boilerplate_share": round(removed / max(1, len(text)), 6),
    }


def remove_boilerplate(documents: pa.Table, boilerplate: dict[str, frozenset[str]]) -> pa.Table:
    """`documents` (PARSED) with each source's boilerplate lines removed."""
    rows = [strip_lines(row, boilerplate.get(row["source"], frozenset())) for row in documents.to_pylist()]
    return pa.Table.from_pylist(rows, schema=documents.schema)


def hash_documents(items: pa.Table, sources: list[Source]) -> pa.Table:
    """LINE_HASHES rows of discovered items; an item that cannot be parsed gets no hashes."""
    documents, _ = parse_documents(items, sources)
    hashes = dict(zip(documents.column("doc_id").to_pylist(),
                      map(document_line_hashes, documents.column("text").to_pylist())))
    return pa.Table.from_pylist(
        [{"source": row["source"], "doc_id": row["doc_id"], "content_hash": row["content_hash"],
          "line_hashes": hashes.get(row["doc_id"], [])}
         for row in items.select(["source", "doc_id", "content_hash"]).to_pylist()],
        schema=LINE_HASHES,
    )


@dataclass
class Boilerplate:
    """The boilerplate of this run's sources and what it means for the run."""

    lines: dict[str, frozenset[str]]  # per source: the line hashes removed before chunking
    state: pa.Table  # LINE_HASHES of every current document of the sources, after this run
    rechunk: pa.Table  # unchanged documents to parse again (DISCOVERED + change = "boilerplate")
    sources: list[str] = field(default_factory=list)


def stored_line_hashes(store: Store, sources: list[str]) -> pa.Table:
    """The LINE_HASHES state of `sources` as of the last publish (empty when there is none)."""
    if not store.has(LINE_HASHES_TABLE):
        return LINE_HASHES.empty_table()
    state = store.table(LINE_HASHES_TABLE).to_arrow()
    return state.filter(pc.is_in(state.column("source"), value_set=pa.array(sources, pa.string()))).cast(LINE_HASHES)


def find_boilerplate(
    items: pa.Table, changes: ChangeSet, previous: pa.Table, sources: list[Source],
    chunking: ChunkingConfig, batch_documents: int = 200,
) -> Boilerplate:
    """The boilerplate of the sources from all their current documents, and who must be re-chunked.

    `items` are all discovered items (DISCOVERED), `changes` this run's diff, `previous`
    the stored LINE_HASHES state. Only new, changed and unknown documents are parsed here,
    `batch_documents` at a time.
    """
    current = set(zip(items.column("doc_id").to_pylist(), items.column("content_hash").to_pylist()))
    to_parse = set(changes.to_parse.column("doc_id").to_pylist())
    # A stored row counts only for the same content: a crash between publish and save leaves stale rows.
    still_current = [(doc_id, content_hash) in current and doc_id not in to_parse for doc_id, content_hash
                     in zip(previous.column("doc_id").to_pylist(), previous.column("content_hash").to_pylist())]
    kept = previous.filter(pa.array(still_current, pa.bool_()))
    known = set(kept.column("doc_id").to_pylist())
    unknown = items.filter(pa.array([doc_id not in known and doc_id not in to_parse
                                     for doc_id in items.column("doc_id").to_pylist()], pa.bool_()))
    to_hash = pa.concat_tables([changes.to_parse.select(items.schema.names), unknown])
    hashed = [hash_documents(to_hash.slice(start, batch_documents), sources)
              for start in range(0, to_hash.num_rows, batch_documents)]
    state = pa.concat_tables([kept, *hashed]).sort_by([("source", "ascending"), ("doc_id", "ascending")])

    before, after = boilerplate_lines(previous, chunking), boilerplate_lines(state, chunking)
    changed = {name: before.get(name, frozenset()) ^ after.get(name, frozenset()) for name in after.keys() | before.keys()}
    affected = set(unknown.column("doc_id").to_pylist())  # chunked before their lines were known
    for row in kept.to_pylist():
        if changed.get(row["source"]) and not changed[row["source"]].isdisjoint(row["line_hashes"] or ()):
            affected.add(row["doc_id"])
    rechunk = items.filter(pc.is_in(items.column("doc_id"), value_set=pa.array(sorted(affected), pa.string())))
    rechunk = rechunk.append_column("change", pa.array(["boilerplate"] * rechunk.num_rows, pa.string()))
    return Boilerplate(after, state, rechunk, [source.name for source in sources])


def save_line_hashes(store: Store, boilerplate: Boilerplate) -> None:
    """Replace the stored state of the run's sources with this run's (after the publish)."""
    others = LINE_HASHES.empty_table()
    if store.has(LINE_HASHES_TABLE):
        stored = store.table(LINE_HASHES_TABLE).to_arrow().cast(LINE_HASHES)
        others = stored.filter(pc.invert(pc.is_in(stored.column("source"), value_set=pa.array(boilerplate.sources, pa.string()))))
    table = store.db.create_table(LINE_HASHES_TABLE, data=pa.concat_tables([others, boilerplate.state]),
                                  mode="overwrite")
    # Only the newest state is ever read (rollback drops it): old versions' files would pile up per run.
    table.optimize(cleanup_older_than=timedelta(seconds=1))


def forget_line_hashes(store: Store) -> None:
    """Drop the stored state: the next ingest hashes every document again and re-chunks them
    (after a rollback the restored chunks were made with an older boilerplate set)."""
    if store.has(LINE_HASHES_TABLE):
        store.db.drop_table(LINE_HASHES_TABLE)


@task(name="strip-boilerplate", cache_policy=NO_CACHE)
def strip_boilerplate(documents: pa.Table, lines: dict[str, frozenset[str]]) -> pa.Table:
    """Remove each source's boilerplate lines from parsed documents."""
    return remove_boilerplate(documents, lines)


@task(name="boilerplate", cache_policy=NO_CACHE)
def find_source_boilerplate(
    store: Store, items: pa.Table, changes: ChangeSet, sources: list[Source], chunking: ChunkingConfig,
    batch_documents: int,
) -> Boilerplate:
    """Find each source's boilerplate lines from all its current documents (see the module docstring)."""
    previous = stored_line_hashes(store, [source.name for source in sources])
    return find_boilerplate(items, changes, previous, sources, chunking, batch_documents)
