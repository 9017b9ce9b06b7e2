"""Discover: list what each source holds, with a content hash, and diff it against the `documents` table.

A source's `path` is a folder, one file, or a glob. A folder (or a glob's fixed
leading folder) is walked without following symlinks; a file that is a symlink to
somewhere outside that root is quarantined, never read. A `files` source's files
are documents; a `records` source's .jsonl/.csv/.parquet files hold one document a row.
A `files` source whose path is a URL (`s3://bucket/prefix`) is listed and read through fsspec by
kbflow.tasks.sources.objects, where an unchanged change token (ETag) spares the read.
The diff sorts every item into new / changed / unchanged / deleted: unchanged
documents cost one hash and nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import SourceConfig
from kbflow.errors import InvalidInput, MissingFile
from kbflow.quarantine import Quarantined
from kbflow.schemas import DISCOVERED, DOCUMENTS
from kbflow.store import Store

HASH_BLOCK = 1 << 20


def make_doc_id(source: str, uri: str) -> str:
    """A stable id from where a document lives: same source and uri, same id."""
    return hashlib.sha256(f"{source}\0{uri}".encode()).hexdigest()[:32]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def source_files(source: SourceConfig, quarantined: list[Quarantined] | None = None):
    """(path, posix uri relative to the source's root) of the source's files, in name order.

    `path` names one file: that file. A folder or a glob: the files under its root that
    `source.selects`; symlinked directories are not entered, and a symlinked file that
    points outside the root is quarantined (appended to `quarantined`) instead of read.
    """
    root = source.root.resolve()
    if source.path_glob is None and not source.path.is_dir():
        if source.path.is_file():
            yield source.path, source.path.name
        return
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(directory, name)
            uri = full.relative_to(root).as_posix()
            if not source.selects(uri):
                continue
            if full.is_symlink() and not full.resolve().is_relative_to(root):
                if quarantined is not None:
                    quarantined.append(
                        Quarantined(source.name, uri, "discover", "symlink_outside_root", f"points to {full.resolve()}")
                    )
                continue
            yield full, uri


def file_format(path: Path | str) -> str:
    """The parser a file needs, by its name: `guide.md` → md. Sphinx publishes its sources as
    `page.rst.txt` (and `page.md.txt`): those are reStructuredText (markdown), not plain text.

    >>> file_format(Path("library/json.rst.txt")), file_format(Path("notes.TXT"))
    ('rst', 'txt')
    """
    path = PurePosixPath(path) if isinstance(path, str) else path  # an object's URL: its name's suffixes
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[1] == ".txt" and suffixes[0] in (".rst", ".md", ".markdown"):
        return suffixes[0].lstrip(".")
    return path.suffix.lower().lstrip(".")


def _item(source: SourceConfig, uri: str, path: Path | str, content_hash: str, size: int, mtime: float,
          change_token: str | None = None) -> dict:
    return {
        "doc_id": make_doc_id(source.name, uri),
        "source": source.name,
        "tenant": source.tenant,
        "uri": uri,
        "path": str(path),
        "format": file_format(path),
        "content_hash": content_hash,
        "size": size,
        "mtime": mtime,
        "change_token": change_token,
    }


@dataclass
class Discovery:
    items: pa.Table  # DISCOVERED
    quarantined: list[Quarantined] = field(default_factory=list)
    # (source, file uri) that exist but could not be read this time: their documents are
    # kept as they are, not deleted
    unreadable: set[tuple[str, str]] = field(default_factory=set)
    # sql sources with a cursor_field: the cursor each read up to, when it moved (saved after the publish)
    cursors: dict[str, str] = field(default_factory=dict)


def discover_files(source: SourceConfig, max_file_bytes: int) -> Discovery:
    """Every included file under a `files` source, hashed."""
    rows, quarantined, unreadable = [], [], set()
    for full, uri in source_files(source, quarantined):
        try:
            stat = full.stat()
            if stat.st_size > max_file_bytes:
                quarantined.append(
                    Quarantined(source.name, uri, "discover", "file_too_large",
                                f"{stat.st_size} bytes > quality.max_file_bytes = {max_file_bytes}")
                )
                unreadable.add((source.name, uri))
                continue
            content_hash = sha256_file(full)
        except OSError as error:
            quarantined.append(Quarantined(source.name, uri, "discover", "unreadable", str(error)))
            unreadable.add((source.name, uri))
            continue
        rows.append(_item(source, uri, full, content_hash, stat.st_size, stat.st_mtime))
    return Discovery(pa.Table.from_pylist(rows, schema=DISCOVERED), quarantined, unreadable)


def record_fields(source: SourceConfig) -> list[str]:
    fields = [source.id_field, source.text_field, source.title_field, *source.metadata,
              source.question_field, source.answer_field, source.relevant_field]
    return [name for name in dict.fromkeys(fields) if name]


def read_records(path: Path, source: SourceConfig) -> tuple[list[dict], list[tuple[int, str]]]:
    """The rows of one records file (only the configured fields) and its bad lines.

    JSON Lines are read line by line so one malformed line is reported, not fatal.
    Raises OSError / pyarrow.ArrowInvalid for a file that cannot be read at all.
    """
    wanted = record_fields(source)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, bad = [], []
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    bad.append((number, f"invalid JSON: {error}"))
                    continue
                if not isinstance(row, dict):
                    bad.append((number, "not a JSON object"))
                    continue
                rows.append({name: row.get(name) for name in wanted})
        return rows, bad
    if suffix == ".csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    else:
        raise InvalidInput(f"unsupported records format {suffix!r}")
    missing = [name for name in wanted if name not in table.column_names]
    if missing:
        raise InvalidInput(f"missing column(s) {missing}; configured fields: {wanted}")
    return table.select(wanted).to_pylist(), []


# What json.dumps(row, sort_keys=True, default=str) builds on every call: built once (same text).
_RECORD_JSON = json.JSONEncoder(sort_keys=True, default=str)


def record_hash(row: dict) -> str:
    """sha256 of the row as JSON with sorted keys (values JSON cannot hold as their str())."""
    return hashlib.sha256(_RECORD_JSON.encode(row).encode()).hexdigest()


def discover_records(source: SourceConfig) -> Discovery:
    """Every row of every included records file, hashed per row."""
    rows, quarantined, unreadable = [], [], set()
    for full, file_uri in source_files(source, quarantined):
        try:
            records, bad_lines = read_records(full, source)
            mtime = full.stat().st_mtime
        except (OSError, ValueError, pa.ArrowException) as error:
            quarantined.append(Quarantined(source.name, file_uri, "discover", "unreadable_records_file", str(error)))
            unreadable.add((source.name, file_uri))
            continue
        for number, problem in bad_lines:
            quarantined.append(Quarantined(source.name, f"{file_uri}:{number}", "discover", "bad_record", problem))
        seen: set[str] = set()
        for record in records:
            record_id = record.get(source.id_field)
            if record_id is None or str(record_id) == "":
                quarantined.append(Quarantined(source.name, file_uri, "discover", "missing_id",
                                               f"row without {source.id_field!r}: {str(record)[:200]}"))
                continue
            uri = f"{file_uri}#{record_id}"
            if uri in seen:
                quarantined.append(Quarantined(source.name, uri, "discover", "duplicate_id",
                                               f"{source.id_field} {record_id!r} repeats in {file_uri}"))
                continue
            seen.add(uri)
            size = len(str(record.get(source.text_field) or "").encode())
            rows.append(_item(source, uri, full, record_hash(record), size, mtime))
    return Discovery(pa.Table.from_pylist(rows, schema=DISCOVERED), quarantined, unreadable)


def discover_source(source: SourceConfig, max_file_bytes: int, known_documents: pa.Table | None = None,
                    store: Store | None = None) -> Discovery:
    """What one source holds now. `known_documents` (its `documents` rows) spares object storage
    the reading of unchanged objects; a sql source reads its incremental state from `store`
    (None: it reads every row)."""
    if source.kind == "sql":
        from kbflow.tasks.sources.sql import discover_sql  # it builds on this module: imported when used

        return discover_sql(source, max_file_bytes, store, known_documents)
    if source.is_object_storage:
        from kbflow.tasks.sources.objects import discover_objects, known_tokens  # it imports this module

        known = known_tokens(DOCUMENTS.empty_table() if known_documents is None else known_documents)
        return discover_objects(source, max_file_bytes, known)
    if not (source.root.is_dir() if source.path_glob else source.path.exists()):
        raise MissingFile(
            f"source {source.name!r}: path {source.path} does not exist; "
            "sources.path is a folder, one file, or a glob such as records/*.jsonl"
        )
    if source.kind == "files":
        return discover_files(source, max_file_bytes)
    return discover_records(source)  # a records file may be large: max_file_bytes is per document


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


def empty_sources(sources: list[SourceConfig], discovery: Discovery) -> list[str]:
    """A warning for each source that yielded nothing at all: no document, nothing set aside or unreadable.

    An empty folder, a wrong `path` or an `include` that matches nothing would otherwise look like
    a run with no change.
    """
    seen = set(pc.unique(discovery.items.column("source")).to_pylist())
    seen |= {q.source for q in discovery.quarantined} | {source for source, _ in discovery.unreadable}
    return [
        f"source {source.name!r} yields no documents: its {f'table {source.table}' if source.table else 'query'} "
        "returned no rows" if source.kind == "sql" else
        f"source {source.name!r} yields no documents: nothing under {source.path} matches include "
        f"{source.include} (exclude {source.exclude}); check its path and globs"
        for source in sources
        if source.name not in seen
    ]


@task(name="discover", cache_policy=NO_CACHE)
def discover(sources: list[SourceConfig], max_file_bytes: int, known_documents: pa.Table | None = None,
             store: Store | None = None) -> Discovery:
    """Discover all given sources into one table of items (`known_documents`: their `documents` rows;
    `store`: sql sources' incremental state)."""
    found = [discover_source(source, max_file_bytes, known_documents, store) for source in sources]
    return Discovery(
        items=pa.concat_tables([d.items for d in found]) if found else DISCOVERED.empty_table(),
        quarantined=[q for d in found for q in d.quarantined],
        unreadable={key for d in found for key in d.unreadable},
        cursors={name: cursor for d in found for name, cursor in d.cursors.items()},
    )
