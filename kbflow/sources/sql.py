"""SQL sources: the rows of a table or a query in any database SQLAlchemy reaches, one document a row.

What is loaded: the configured fields of `table` or `query` (`id_field`, `text_field`, `title_field`,
`metadata`, the label fields, `tenant_field`, `cursor_field`), from the URL in `url` or in the
environment variable named by `url_env`. A row's uri is `<table or "query">#<id>`, its doc_id is
made from it as for records files, and `tenant_field` gives each row its own tenant.

How incrementally:
- without `cursor_field` every row is read, streamed `batch_rows` at a time through a server-side
  cursor, and hashed as records files' rows are (kbflow.sources.rows.record_hash); the diff
  against `documents` sorts rows into new, changed, unchanged and deleted;
- with `cursor_field` only rows whose cursor is past the last successful run's high-water mark are
  read in full, plus one key-only scan (`SELECT id`) that finds deleted rows, and rows the index
  does not know whose cursor is not past the mark (read by key). The mark is kept, and written only
  after the run that read it published, by kbflow.sources.sql_cursor.

Discovery keeps hashes, not rows: a batch's rows are read again by key, one `WHERE id IN (…)`
per batch, where the batch is parsed — with `--runner dask|ray` on the worker, from the database.

Bad rows are quarantined with their reason while the rest publishes: no id, a repeated id, no
text (NULL), text that is not UTF-8 (a bytea/BLOB column, undecodable bytes), text over
`quality.max_file_bytes`, no tenant. A row with an id keeps its last good chunks. A database that
cannot be reached, refuses the credentials or lacks the table fails the run with SourceUnreachable,
naming the source and its URL with the password hidden; nothing is published.

One module over 500 lines on purpose: the kind's model and its reading (connection, the full and
the cursor scans, reads by key, the watch query) share every helper; split in two, the model's
methods would import the reader and the reader the model, an import loop.

SQLAlchemy (~0.5 s to import) is imported inside the functions that use it: loading a config builds this kind's model without them.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, SecretStr, model_validator

from kbflow.errors import ConfigError, KbflowError, SourceUnreachable
from kbflow.quarantine import Quarantined
from kbflow.schemas import DISCOVERED, DOCUMENTS
from kbflow.sources.cursor import decode_cursor, encode_cursor
from kbflow.sources.acl import BadAcl
from kbflow.sources.base import Content, Discovery, LabeledRows, ReadFailed, make_doc_id
from kbflow.sources.rows import RowSource, record_hash

if TYPE_CHECKING:
    import sqlalchemy as sa

SQL_FORMAT = "sql"  # the `format` of a sql row's document
QUERY_URI = "query"  # the uri prefix of a `query` source's rows (a table source's is the table)
PREVIEW_CHARS = 200  # of a row without an id, in its quarantine detail
Columns = Sequence[Any] | pa.ChunkedArray  # one column of items, as Python values or Arrow's


# -- where the rows are ------------------------------------------------------------------------


def source_url(source: SqlSource) -> sa.URL:
    """The source's SQLAlchemy URL, from `url` or the variable `url_env` names (read where it is used)."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    if source.url is not None:
        text = source.url.get_secret_value()
    else:
        text = os.environ.get(source.url_env or "", "")
        if not text:
            raise ConfigError(
                f"sources: {source.name!r} reads its database URL from the environment variable "
                f"{source.url_env}, which is not set; export {source.url_env}=postgresql+psycopg://user:password@host/db"
            )
    try:
        return sa.make_url(text)
    except sa.exc.ArgumentError:  # the text may hold a password: never repeated
        where = f"the variable {source.url_env}" if source.url_env else "url"
        raise ConfigError(f"sources: {source.name!r}: {where} is not a SQLAlchemy URL "
                          "(dialect+driver://user:password@host:port/database)") from None


def shown_url(url: sa.URL) -> str:
    """The URL for messages and logs: the password replaced by ***."""
    return url.render_as_string(hide_password=True)


def rows_name(source: SqlSource) -> str:
    """What the rows are called in uris and messages: the table, or "query"."""
    return source.table or QUERY_URI


def _engine_of(source: SqlSource, url: sa.URL) -> sa.Engine:
    """The engine of the source's database; ConfigError naming the source and what to install
    when SQLAlchemy has no dialect for the URL's scheme or the driver is not installed."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    try:
        return _engine(url)
    except sa.exc.NoSuchModuleError:  # an ArgumentError: the text may hold the URL, never repeated
        raise ConfigError(f"sources: {source.name!r}: SQLAlchemy has no dialect {url.drivername!r}; install the "
                          "package that provides it, or check the URL's scheme (dialect+driver://…)") from None
    except ImportError as error:
        if url.get_backend_name() == "postgresql":
            fix = "pip install 'kbflow[postgres]' (psycopg 3)"
            if url.get_driver_name() != "psycopg":
                fix += f" and write the URL as postgresql+psycopg://…, or install {error.name} (the driver it names)"
        else:
            fix = f"install the package that provides the module {error.name} (often: pip install {error.name})"
        raise ConfigError(f"sources: {source.name!r}: no driver for {url.drivername} ({error.name} is not "
                          f"installed); {fix}") from None


@functools.lru_cache(maxsize=16)
def _engine(url: sa.URL) -> sa.Engine:
    """One engine (one connection pool) per database and process: a worker reuses its connections."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    engine = sa.create_engine(url, pool_pre_ping=True)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _keep_undecodable_text)
    return engine


def _keep_undecodable_text(connection: Any, _record: Any) -> None:
    # sqlite3 raises on a TEXT value that is not UTF-8, ending the whole read; decoded with
    # surrogateescape it reaches row_text, which quarantines that one row.
    connection.text_factory = lambda data: data.decode("utf-8", "surrogateescape")


@contextmanager
def connected(source: SqlSource) -> Iterator[sa.Connection]:
    """A connection to the source's database; any database error in the block becomes SourceUnreachable."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    url = source_url(source)
    _require_sqlite_file(source, url)
    try:
        with _engine_of(source, url).connect() as connection:
            yield connection
    except sa.exc.DBAPIError as error:
        reading = f"table {source.table}" if source.table else "its query"
        # `from None`: the driver's exception is summarised here; nothing else of it reaches logs.
        raise SourceUnreachable(
            f"source {source.name!r}: cannot read {reading} from {shown_url(url)}: {_driver_message(error, url)}"
        ) from None


def _require_sqlite_file(source: SqlSource, url: sa.URL) -> None:
    """A sqlite database file that is not there: SourceUnreachable. sqlite3 would create an empty
    file at a mistyped path and then report `no such table`, leaving the stray file behind."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return
    if not os.path.isfile(database):
        raise SourceUnreachable(f"source {source.name!r}: cannot read {shown_url(url)}: there is no file {database} "
                                "(a relative sqlite path is taken from the config file's folder)")


def _driver_message(error: sa.exc.DBAPIError, url: sa.URL) -> str:
    """The driver's own words, on one line, without the password should a driver repeat it.

    Its lines stay sentences: libpq's `Connection refused` and `Is the server running …?` are two
    lines, which joined with a space read as one. PostgreSQL's caret line under a query is dropped."""
    lines = [" ".join(line.split()) for line in str(error.orig).splitlines()]
    message = ""
    for line in (line for line in lines if line.strip("^ ")):
        if message:
            message += " " if message.endswith((".", "?", "!", ":", ";")) else ". "
        message += line
    message = message[:500]
    return message.replace(url.password, "***") if url.password else message


# -- reading ---------------------------------------------------------------------------------


def _row_hash(row: dict, fields: list[str]) -> str:
    """The row's content hash over `fields`, as a records file's row is hashed."""
    return record_hash({name: row.get(name) for name in fields})


def content_fields(source: SqlSource) -> list[str]:
    """The fields a row's hash covers: a change to any of them re-publishes the row."""
    return list(dict.fromkeys([*source.record_fields(), *filter(None, [source.tenant_field])]))


def _rows_from(source: SqlSource) -> sa.FromClause:
    """The table or query, with the columns kbflow reads declared (and quoted as needed)."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    columns = [sa.column(name) for name in dict.fromkeys([*content_fields(source),
                                                          *filter(None, [source.cursor_field, source.acl_field])])]
    if source.table is not None:
        schema, _, name = source.table.rpartition(".")
        return sa.table(name, *columns, schema=schema or None)
    return sa.text(source.query).columns(*columns).subquery("kbflow_rows")


def _select_rows(source: SqlSource) -> sa.Select:
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    rows = _rows_from(source)
    return sa.select(*rows.c)


def stream(connection: sa.Connection, statement: sa.Executable, batch_rows: int) -> Iterator[list[dict]]:
    """The statement's rows, `batch_rows` at a time, through a server-side cursor (never all at once)."""
    result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(statement)
    columns = list(result.keys())
    for partition in result.partitions(batch_rows):
        yield [dict(zip(columns, row)) for row in partition]  # twice as fast as dict(row._mapping)


# Keys bound in one `WHERE id IN (…)`: PostgreSQL's protocol takes at most 65,535 parameters a
# statement (SQLite 32,766 unless built with more), and a batch may hold more keys than that.
KEYS_PER_QUERY = 10_000


def read_rows_by_key(connection: sa.Connection, source: SqlSource, keys: list[Any]) -> list[dict]:
    """The rows with these ids, in one `WHERE id IN (…)` (one per KEYS_PER_QUERY keys).

    A key other than an integer comes back from its item's JSON as text (a uuid, a numeric, a
    date): it is bound untyped, so the database reads it as the column's type (bound as text,
    PostgreSQL refuses `uuid = character varying`)."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    statement = _select_rows(source)
    untyped_keys = sa.bindparam("keys", expanding=True, type_=sa.types.NullType())
    by_key = statement.where(statement.selected_columns[source.id_field].in_(untyped_keys))
    return [dict(row) for start in range(0, len(keys), KEYS_PER_QUERY)
            for row in connection.execute(by_key, {"keys": keys[start : start + KEYS_PER_QUERY]}).mappings()]


def key_json(key: Any) -> str:
    """A row's key as JSON: what an item carries to wherever its batch is parsed (read back by key)."""
    return str(key) if type(key) is int else json.dumps(key, default=str)


class BadRow(KbflowError, ValueError):
    """A row that cannot become a document; `reason` is its quarantine reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def row_text(value: Any, name: str, max_bytes: int | None = None) -> str:
    """A text column's value as text: BadRow when it is NULL, not UTF-8, or over `max_bytes` bytes."""
    if value is None:
        raise BadRow("null_text", f"{name} is NULL")
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):  # a bytea / BLOB column
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRow("not_utf8", f"{name}: {error}") from None
    text = str(value)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # sqlite TEXT that was not UTF-8 (see _keep_undecodable_text)
        raise BadRow("not_utf8", f"{name} holds bytes that are not UTF-8") from None
    if max_bytes is not None and size > max_bytes:
        raise BadRow("too_large", f"{name}: {size} bytes > quality.max_file_bytes = {max_bytes}")
    return text


def row_tenant(row: dict, source: SqlSource) -> str:
    """The row's tenant: its `tenant_field`, else the source's `tenant`."""
    if not source.tenant_field:
        return source.tenant
    tenant = row.get(source.tenant_field)
    if tenant is None or str(tenant) == "":
        raise BadRow("missing_tenant", f"{source.tenant_field} is empty: the row belongs to no tenant")
    return str(tenant)


# -- discover ----------------------------------------------------------------------------------


@dataclass
class _Rows:
    """What discovery finds in one sql source: items (hashes, not rows), quarantine, cursor."""

    source: SqlSource
    max_bytes: int
    # The items' columns doc_id, tenant, uri, path, content_hash, size, acl: lists, not a tuple a row,
    # so a large table leaves no container per row for the garbage collector to walk (half the time).
    columns: tuple[list, ...] = field(default_factory=lambda: ([], [], [], [], [], [], []))
    quarantined: list[Quarantined] = field(default_factory=list)
    unreadable: set[tuple[str, str]] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    cursor: Any = None
    known: pa.Table = field(default_factory=DISCOVERED.empty_table)  # a cursor run's unchanged rows
    # A cursor run: its key scan sees every row's id and sets aside each repeat once (_scan_keys),
    # so a row read in full whose id was seen is only skipped here.
    repeats_from_key_scan: bool = False

    def uri(self, key: Any) -> str:
        return f"{rows_name(self.source)}#{key}"

    def set_aside(self, uri: str, reason: str, detail: str, keep: bool = False) -> None:
        """Quarantine a row; `keep`: its document (if published before) keeps its last good chunks."""
        doc_id = make_doc_id(self.source.name, uri) if keep else None
        self.quarantined.append(Quarantined(self.source.name, uri, "discover", reason, detail, doc_id=doc_id))
        if keep:
            self.unreadable.add((self.source.name, uri))

    def set_aside_repeat(self, uri: str, key: Any) -> None:
        """Quarantine a row whose id an earlier row has (that row is the one kept)."""
        self.set_aside(uri, "duplicate_id", f"{self.source.id_field} {key!r} repeats in {rows_name(self.source)}")

    def add(self, rows: list[dict]) -> None:
        """Sort full rows into items and quarantine records; follow the cursor's maximum."""
        source, hashed = self.source, content_fields(self.source)
        for row in rows:
            key = row.get(source.id_field)
            if key is None or str(key) == "":
                self.set_aside(rows_name(source), "missing_id",
                               f"row without {source.id_field!r}: {str(row)[:PREVIEW_CHARS]}")
                continue
            uri = self.uri(key)
            if uri in self.seen:  # the first row read is kept
                if not self.repeats_from_key_scan:
                    self.set_aside_repeat(uri, key)
                continue
            self.seen.add(uri)
            cursor = row.get(source.cursor_field) if source.cursor_field else None
            if cursor is not None and (self.cursor is None or cursor > self.cursor):
                self.cursor = cursor
            try:
                text = row_text(row.get(source.text_field), source.text_field, self.max_bytes) if source.text_field else ""
                tenant = row_tenant(row, source)
                # not part of the hash (content_fields): an ACL change is metadata, not content
                acl = source.row_acl(row)
            except (BadRow, BadAcl) as bad:
                self.set_aside(uri, bad.reason, bad.detail, keep=True)
                continue
            content_hash = _row_hash(row, hashed)
            for column, value in zip(self.columns, (make_doc_id(source.name, uri), tenant, uri, key_json(key),
                                                    content_hash, len(text.encode("utf-8")), acl)):
                column.append(value)

    def discovery(self, cursors: dict[str, str]) -> Discovery:
        items = _sql_items(self.source.name, *self.columns)
        return Discovery(pa.concat_tables([items, self.known]), self.quarantined, self.unreadable, cursors)


def _sql_items(source: str, doc_id: Columns, tenant: Columns, uri: Columns, path: Columns, content_hash: Columns,
               size: Columns, acl: Columns) -> pa.Table:
    """`DISCOVERED` rows of a sql source from these columns (lists or arrays); the other columns are the
    same for every row. Built from columns: no Python object per row."""
    rows = len(doc_id)
    return pa.Table.from_pydict({
        "doc_id": doc_id, "source": pa.repeat(pa.scalar(source), rows), "tenant": tenant, "uri": uri,
        "path": path, "format": pa.repeat(pa.scalar(SQL_FORMAT), rows), "content_hash": content_hash,
        "size": size, "mtime": pa.repeat(pa.scalar(0.0), rows),
        "change_token": pa.nulls(rows, pa.string()),  # object storage's; a row has its cursor instead
        "acl": acl,
    }, schema=DISCOVERED)


def discover_sql(source: SqlSource, max_file_bytes: int, cursor: str | None = None,
                 known_documents: pa.Table | None = None) -> Discovery:
    """Every row of a sql source as a hashed item: all rows, or (with a cursor_field and the `cursor`
    the last successful run read up to) the rows past the cursor, the index's rows still present
    (`known_documents`: the source's `documents` rows), and unknown rows."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    last = decode_cursor(cursor) if source.cursor_field and cursor is not None else None
    found = _Rows(source, max_file_bytes, repeats_from_key_scan=last is not None)
    statement = _select_rows(source)
    with connected(source) as connection:
        if last is None:
            for rows in stream(connection, statement, source.batch_rows):
                found.add(rows)
        else:
            cursor = statement.selected_columns[source.cursor_field]
            for rows in stream(connection, statement.where(cursor > sa.bindparam("last", last)), source.batch_rows):
                found.add(rows)
            unknown = _scan_keys(connection, source, found, DOCUMENTS.empty_table() if known_documents is None
                                 else known_documents)
            for start in range(0, len(unknown), source.batch_rows):
                found.add(read_rows_by_key(connection, source, unknown[start : start + source.batch_rows]))
    moved = found.cursor is not None and (last is None or found.cursor > last)
    return found.discovery({source.name: encode_cursor(found.cursor)} if moved else {})


def _scan_keys(connection: sa.Connection, source: SqlSource, found: _Rows, documents: pa.Table) -> list[Any]:
    """The key-only scan of a cursor run: every repeat of an id is set aside once (the copy kept is
    the row read past the cursor, else the one the index has, else the first read by key); the
    index's rows still present become items as the `documents` table has them (the cursor says they
    did not change); returns the keys the index does not know. Column-wise: a no-change run costs
    little more than the scan itself."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    statement = sa.select(_rows_from(source).c[source.id_field])
    keys = [key for batch in stream_keys(connection, statement, source.batch_rows) for key in batch]
    texts, kind = _key_texts(keys)
    # A row without an id is set aside when it is read in full; a row past the cursor was.
    present = pc.and_(pc.is_valid(texts), pc.not_equal(texts, ""))
    positions = pc.indices_nonzero(present)  # into `keys`
    texts = texts.filter(present)
    uris = pc.binary_join_element_wise(found.uri(""), texts, "")  # as found.uri builds them
    first = pc.equal(pc.index_in(uris, value_set=uris), pa.array(range(len(uris)), pa.int32()))
    for at in pc.indices_nonzero(pc.invert(first)).to_pylist():  # each repeat, once
        found.set_aside_repeat(uris[at].as_py(), keys[positions[at].as_py()])
    read = pc.is_in(uris, value_set=pa.array(list(found.seen), pa.string()))  # past the cursor: items already
    scanned = pc.and_(first, pc.invert(read))

    mine = documents.filter(pc.equal(documents.column("source"), source.name)).select(
        ["doc_id", "tenant", "uri", "content_hash", "size", "acl"])  # what its items take (fewer columns: faster)
    row = pc.index_in(uris, value_set=mine.column("uri"))  # each scanned key's `documents` row (null: none)
    known = pc.and_(scanned, pc.is_valid(row))
    rows, at = mine.take(row.filter(known)), pc.indices_nonzero(known)
    found.known = _sql_items(source.name, rows.column("doc_id"), rows.column("tenant"), rows.column("uri"),
                             _keys_json(keys, kind, positions.take(at), texts.take(at)),
                             rows.column("content_hash"), rows.column("size"), rows.column("acl"))
    unknown = pc.and_(scanned, pc.is_null(row))
    return [keys[position] for position in positions.filter(unknown).to_pylist()]


# Text that JSON encodes as itself in quotes: printable ASCII without `"` and `\`.
_PLAIN_JSON_TEXT = r"^[ !#-\[\]-~]*$"


def _key_texts(keys: list[Any]) -> tuple[pa.Array, str]:
    """Each key as its uri shows it (str(key); null for None), and the keys' kind: "int" or "str"
    (built column-wise), or "other" (UUIDs, dates, …: one by one)."""
    try:
        array = pa.array(keys)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        array = None
    if array is not None and (pa.types.is_integer(array.type) or pa.types.is_null(array.type)):
        return array.cast(pa.string()), "int"
    if array is not None and pa.types.is_string(array.type):
        return array, "str"
    return pa.array([None if key is None else str(key) for key in keys], pa.string()), "other"


def _keys_json(keys: list[Any], kind: str, positions: pa.Array, texts: pa.Array) -> pa.Array:
    """key_json of the keys at `positions` (whose uri texts are `texts`), column-wise where it is that text."""
    if kind == "int":
        return texts
    if kind == "str" and pc.all(pc.match_substring_regex(texts, _PLAIN_JSON_TEXT)).as_py() is not False:
        return pc.binary_join_element_wise('"', texts, '"', "")
    return pa.array([key_json(keys[position]) for position in positions.to_pylist()], pa.string())


def stream_keys(connection: sa.Connection, statement: sa.Executable, batch_rows: int) -> Iterator[list[Any]]:
    """The first column of the statement's rows, `batch_rows` at a time, through a server-side cursor."""
    result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(statement)
    yield from result.scalars().partitions(batch_rows)


def discover_sql_rows(source: SqlSource) -> tuple[Discovery, dict[str, dict]]:
    """Every row of a (small) sql source, with discovery's items: what labeled sources (questions
    and answers for datasets and eval) are read with. Holds the rows in memory, as a records file's are."""
    found = _Rows(source, max_bytes=1 << 62)  # labels are not documents: no document size limit
    rows: dict[str, dict] = {}
    with connected(source) as connection:
        for batch in stream(connection, _select_rows(source), source.batch_rows):
            found.add(batch)
            for row in batch:  # a repeated id: the first row, as discovery keeps
                rows.setdefault(found.uri(row.get(source.id_field)), row)
    return found.discovery({}), rows


# -- parse -------------------------------------------------------------------------------------


def read_sql_items(items: list[dict], source: SqlSource) -> Iterator[tuple[dict, Content]]:
    """A batch of a sql source's items with their rows as Records, read from the database by key (one query)."""
    keys = [json.loads(item["path"]) for item in items]
    with connected(source) as connection:
        rows = read_rows_by_key(connection, source, keys)
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(str(row[source.id_field]), []).append(row)
    hashed = content_fields(source)
    for item in items:
        try:
            row = _discovered_row(by_id.get(item["uri"].split("#", 1)[1], []), item, source, hashed)
            text = row_text(row.get(source.text_field), source.text_field) if source.text_field else ""
        except BadRow as bad:
            yield item, ReadFailed(bad.reason, bad.detail)
            continue
        yield item, source.record(row, text)


def _discovered_row(rows: list[dict], item: dict, source: SqlSource, fields: list[str]) -> dict:
    """Of the rows read by the item's key, the one discovery hashed (over `fields`). A repeated id reads
    several: the others were set aside as `duplicate_id`, and taking one of them would publish its text
    under the kept row's tenant. A row edited since discovery is taken only if its tenant is the same."""
    row = next((row for row in rows if _row_hash(row, fields) == item["content_hash"]), rows[0] if rows else None)
    if row is None:
        raise BadRow("record_vanished", "deleted while the run read it")
    if row_tenant(row, source) != item["tenant"]:
        raise BadRow("record_changed", f"{source.tenant_field} changed while the run read it")
    return row


# -- watch -------------------------------------------------------------------------------------


def sql_fingerprint(source: SqlSource) -> tuple:
    """What changes when the source's rows change, read cheaply: with a cursor_field its maximum and
    the row count (an edit moves the one, a deletion the other); without, a hash over every row."""
    import sqlalchemy as sa  # lazily: start-up cost, see the module docstring

    rows = _rows_from(source)
    with connected(source) as connection:
        if source.cursor_field:
            latest, count = connection.execute(sa.select(sa.func.max(rows.c[source.cursor_field]), sa.func.count())
                                               .select_from(rows)).one()
            return ("cursor", None if latest is None else encode_cursor(latest), count)
        hashed, digest, count = content_fields(source), 0, 0
        for batch in stream(connection, _select_rows(source), source.batch_rows):
            for row in batch:  # a sum: the same whatever order the database returns rows in
                digest = (digest + int(_row_hash(row, hashed), 16)) % (1 << 256)
                count += 1
        return ("rows", count, digest)


# -- the kind ----------------------------------------------------------------------------------


class SqlSource(RowSource):
    """Rows of a table or a query in a database SQLAlchemy reaches, one document a row."""

    kind: Literal["sql"] = Field(description="sql: rows of a table or query, one document a row")
    misplaced_keys_hint: ClassVar[str] = "a sql source has no path, include or exclude: it reads its table or query"
    # A URL with a password is a secret: SecretStr keeps it out of reprs and dumps.
    url: SecretStr | None = Field(None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    url_env: str | None = Field(None, description="name of the environment variable that holds the URL")
    table: str | None = Field(None, description="a table (or schema.table) to read")
    query: str | None = Field(None, description="a SELECT to read instead of a table")
    cursor_field: str | None = Field(None, description="a column that grows on every change (updated_at)")
    tenant_field: str | None = Field(None, description="a column giving each row its tenant")
    batch_rows: int = Field(1000, ge=1, le=1_000_000, description="rows fetched per round trip")

    @model_validator(mode="after")
    def _one_url_one_table(self) -> SqlSource:
        if (self.url is None) == (self.url_env is None):
            raise ValueError('a sql source needs url or url_env (the variable holding the URL), exactly one')
        if (self.table is None) == (self.query is None):
            raise ValueError('a sql source reads a table or a query: set table = "..." or query = "SELECT ...", exactly one')
        if self.tenant_field and "tenant" in self.model_fields_set:
            raise ValueError("tenant (one tenant for every row) or tenant_field (a column per row), not both")
        return self

    @property
    def path(self) -> None:
        """A sql source has no path: its rows live in the database."""
        return None

    @property
    def include(self) -> list[str]:
        return []

    def resolve_paths(self, root: Path) -> None:
        if self.url is not None:
            self.url = SecretStr(resolve_sqlite_url(root, self.url.get_secret_value()))

    def discover(self, max_file_bytes: int, known_documents: pa.Table | None = None,
                 cursor: str | None = None) -> Discovery:
        return discover_sql(self, max_file_bytes, cursor, known_documents)

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        return read_sql_items(items, self)

    def fingerprint(self) -> tuple:
        return sql_fingerprint(self)

    def labeled_rows(self) -> LabeledRows:
        discovery, rows = discover_sql_rows(self)
        return discovery, lambda item: rows[item["uri"]]

    def empty_warning(self) -> str:
        return (f"source {self.name!r} yields no documents: its "
                f"{f'table {self.table}' if self.table else 'query'} returned no rows")


def resolve_sqlite_url(root: Path, url: str) -> str:
    """A sqlite URL's relative database file taken from `root` (the config's folder), as every path is
    (sqlalchemy.engine.make_url parses it; the text is rebuilt only for a relative sqlite file).

    >>> resolve_sqlite_url(Path("/srv/kb"), "sqlite:///data/tickets.db?timeout=5")
    'sqlite:////srv/kb/data/tickets.db?timeout=5'
    >>> resolve_sqlite_url(Path("/srv/kb"), "postgresql+psycopg://kb@db/kb")
    'postgresql+psycopg://kb@db/kb'
    """
    from sqlalchemy.engine import make_url  # lazily: start-up cost, see the module docstring
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL: source_url says so, without repeating it, when the source is read
        return url
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database.startswith("/") \
            or database == ":memory:" or database.startswith("file:"):
        return url
    return parsed.set(database=str((root / database).resolve())).render_as_string(hide_password=False)
