"""Discover: list what each source holds, with a content hash, and diff it against the `documents` table.

Each source lists its own items through the `Source` protocol (kbflow.sources: files, records, sql,
objects); this module never asks which kind a source is. Items of one source with the same content
hash (byte-identical files, such as `index.html` and `git.html`) are indexed once: the first in uri
order is kept, the others are counted and listed as duplicates. The diff sorts every item into new /
changed / unchanged / deleted: unchanged documents cost one hash and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.schemas import DISCOVERED
from kbflow.sources.base import Discovery, Source
from kbflow.store import Store
from kbflow.tasks.sources.sql_cursor import stored_cursor_text


def discover_source(source: Source, max_file_bytes: int, known_documents: pa.Table | None = None,
                    store: Store | None = None) -> Discovery:
    """What one source holds now. `known_documents` (its `documents` rows) spares object storage
    the reading of unchanged objects; the source's stored cursor is read from `store` (None: the
    source reads everything)."""
    cursor = stored_cursor_text(store, source.name) if store is not None else None
    if cursor is not None and known_documents is None:
        known_documents = store.documents([source.name])
    return source.discover(max_file_bytes, known_documents, cursor)


def set_aside_duplicates(discovery: Discovery) -> Discovery:
    """Of items with the same source and content hash, the first in uri order stays; the others are
    listed in `duplicates` (source, uri, uri of the copy kept) and leave the items."""
    items = discovery.items
    hashes = items.column("content_hash")
    if pc.count_distinct(pc.binary_join_element_wise(items.column("source"), pc.fill_null(hashes, ""), "\0")).as_py() \
            + max(0, hashes.null_count - 1) >= items.num_rows:
        return discovery  # nothing repeats: the items keep their order
    order = pc.sort_indices(items, [("source", "ascending"), ("uri", "ascending")])
    items = items.take(order)
    keys = pc.binary_join_element_wise(items.column("source"), pc.fill_null(items.column("content_hash"), ""), "\0")
    first = pc.index_in(keys, value_set=keys)  # each key's first position
    is_first = pc.or_(pc.equal(first, pa.array(range(items.num_rows), pa.int32())),
                      pc.is_null(items.column("content_hash")))
    if pc.all(is_first).as_py():
        return discovery
    copies = pc.indices_nonzero(pc.invert(is_first))
    uris, sources = items.column("uri"), items.column("source")
    kept_at = first.take(copies)
    duplicates = [*discovery.duplicates, *zip(sources.take(copies).to_pylist(), uris.take(copies).to_pylist(),
                                              uris.take(kept_at).to_pylist())]
    return Discovery(items.filter(is_first), discovery.quarantined, discovery.unreadable, discovery.cursors,
                     duplicates)


@dataclass
class ChangeSet:
    """Items sorted against the `documents` table."""

    to_parse: pa.Table  # DISCOVERED rows plus `change`: "new" | "changed"
    unchanged: int
    deleted: pa.Table  # `documents` rows of documents gone from their source
    # object storage: doc_id -> new change token of unchanged documents (same bytes, new ETag)
    moved_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        changes = self.to_parse.column("change").to_pylist()
        return {
            "new": changes.count("new"),
            "changed": changes.count("changed"),
            "unchanged": self.unchanged,
            "deleted": self.deleted.num_rows,
        }


def diff_against_documents(discovery: Discovery, documents: pa.Table) -> ChangeSet:
    """New, changed, unchanged and deleted documents, comparing content hashes.

    `documents` holds the `documents` rows of the sources that were discovered.
    Documents whose file could not be read this time are neither changed nor deleted.
    Column-wise: a run over many unchanged items loops over none of them in Python.
    """
    items = discovery.items
    known_at = pc.index_in(items.column("doc_id"), value_set=documents.column("doc_id"))  # its documents row
    is_new = pc.is_null(known_at)
    item_hash, known_hash = items.column("content_hash"), documents.column("content_hash").take(known_at)
    # Two null hashes are the same (as None == None is): only a null next to a hash is a change.
    same_hash = pc.coalesce(pc.equal(item_hash, known_hash), pc.and_(pc.is_null(item_hash), pc.is_null(known_hash)))
    unchanged = pc.and_(pc.invert(is_new), same_hash)
    change = pc.if_else(is_new, "new", pc.if_else(unchanged, "unchanged", "changed"))
    to_parse = items.append_column("change", change).filter(pc.invert(unchanged))

    gone = documents.filter(pc.invert(pc.is_in(documents.column("doc_id"), value_set=items.column("doc_id"))))

    def kept(source: str, uri: str) -> bool:
        return (source, uri) in discovery.unreadable or (source, uri.split("#", 1)[0]) in discovery.unreadable

    if discovery.unreadable:  # only the documents gone from the listing are looked at
        sources_uris = zip(gone.column("source").to_pylist(), gone.column("uri").to_pylist())
        gone = gone.filter(pa.array([not kept(*row) for row in sources_uris], pa.bool_()))
    # A token of its own that differs from the stored one (or is new to it): the same bytes moved.
    token, known_token = items.column("change_token"), documents.column("change_token").take(known_at)
    moved = items.filter(pc.and_(unchanged, pc.coalesce(pc.not_equal(token, known_token), pc.is_valid(token))))
    return ChangeSet(
        to_parse=to_parse,
        unchanged=pc.sum(unchanged).as_py() or 0,
        deleted=gone,
        moved_tokens=dict(zip(moved.column("doc_id").to_pylist(), moved.column("change_token").to_pylist())),
    )


def empty_sources(sources: list[Source], discovery: Discovery) -> list[str]:
    """A warning for each source that yielded nothing at all: no document, nothing set aside or unreadable.

    An empty folder, a wrong `path` or an `include` that matches nothing would otherwise look like
    a run with no change.
    """
    seen = set(pc.unique(discovery.items.column("source")).to_pylist())
    seen |= {q.source for q in discovery.quarantined} | {source for source, _ in discovery.unreadable}
    return [source.empty_warning() for source in sources if source.name not in seen]


@task(name="discover", cache_policy=NO_CACHE)
def discover(sources: list[Source], max_file_bytes: int, known_documents: pa.Table | None = None,
             store: Store | None = None) -> Discovery:
    """Discover all given sources into one table of items (`known_documents`: their `documents` rows;
    `store`: sql sources' incremental state); exact duplicates within a source set aside."""
    found = [discover_source(source, max_file_bytes, known_documents, store) for source in sources]
    return set_aside_duplicates(Discovery(
        items=pa.concat_tables([d.items for d in found]) if found else DISCOVERED.empty_table(),
        quarantined=[q for d in found for q in d.quarantined],
        unreadable={key for d in found for key in d.unreadable},
        cursors={name: cursor for d in found for name, cursor in d.cursors.items()},
    ))
