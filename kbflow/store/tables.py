"""The connection to one kbflow store and generic table access, shared by the store's parts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from kbflow.config import StoreConfig
from kbflow.errors import KbflowError
from kbflow.store.filters import RowFilter, where

CHUNKS, DOCUMENTS_TABLE, RUNS_TABLE, QUARANTINE_TABLE = "chunks", "documents", "runs", "quarantine"


class StoreEmpty(KbflowError, LookupError):
    """Nothing has been published to this store yet."""


class NoStore(StoreEmpty):
    """No kbflow store at the configured uri at all (a read-only command creates none)."""


class Tables:
    """One kbflow store (a LanceDB database): connection and generic reads of its tables."""

    def __init__(self, config: StoreConfig) -> None:
        self.uri = config.uri
        config.create_folder()  # 0700 unless [store] private = false; lancedb.connect would make it 0755
        # timedelta(0): always see other processes' commits (a watcher, a second CLI).
        self.db = lancedb.connect(
            config.uri, storage_options=config.storage_options or None, read_consistency_interval=timedelta(0)
        )
        self.config = config
        self._pinned: dict[int, Any] = {}  # chunks table handles checked out at a version

    @classmethod
    def from_uri(cls, uri: str):
        return cls(StoreConfig(uri=uri))

    @classmethod
    def existing(cls, config: StoreConfig):
        """The store at `config.uri` for reading; NoStore, and nothing created, when there is no index there."""
        missing = NoStore(f"there is no kbflow index at {config.uri}; check [store] uri, or run `kbflow ingest` "
                          "first to create one")
        # lancedb.connect creates a local directory: look before connecting.
        if config.is_local and not Path(config.uri).is_dir():
            raise missing
        store = cls(config)
        if not store.db.list_tables().tables:
            raise missing
        return store

    def has(self, name: str) -> bool:
        return name in self.db.list_tables().tables

    def table(self, name: str):
        if not self.has(name):
            raise StoreEmpty(f"no {name!r} table in {self.uri} yet; run `kbflow ingest` first")
        return self.db.open_table(name)

    def _table_or_create(self, name: str, schema: pa.Schema):
        if self.has(name):
            return self.db.open_table(name)
        return self.db.create_table(name, schema=schema, exist_ok=True)

    def _rows(self, name: str, rows: RowFilter | str | None = None, columns: list[str] | None = None) -> pa.Table | None:
        """A table's rows (those `rows` keeps; a string is a predicate from kbflow.store.filters), or None."""
        if not self.has(name):
            return None
        query = self.db.open_table(name).search()
        predicate = rows if isinstance(rows, str) else where(rows)
        if predicate:
            query = query.where(predicate)
        if columns:
            query = query.select(columns)
        return query.limit(None).to_arrow()

    def row(self, name: str, rows: RowFilter, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The first row `rows` keeps, without the `exclude` columns, or None."""
        if not self.has(name):
            return None
        table = self.db.open_table(name)
        columns = [n for n in table.schema.names if n not in exclude]
        query = table.search()
        if (predicate := where(rows)) is not None:
            query = query.where(predicate)
        found = query.select(columns).limit(1).to_arrow().to_pylist()
        return found[0] if found else None

    def count(self, name: str, rows: RowFilter | None = None) -> int:
        """How many rows of the table `rows` keeps (all by default); 0 when there is no such table."""
        return self.db.open_table(name).count_rows(where(rows)) if self.has(name) else 0

    def version(self, name: str) -> int | None:
        return self.db.open_table(name).version if self.has(name) else None


def add_missing_columns(table, schema: pa.Schema):
    """A table written by an older kbflow lacks the newer (nullable) columns: add them, null."""
    present = set(table.schema.names)  # `table.schema` asks the table each time: once, not once per column
    missing = [name for name in schema.names if name not in present]
    if missing:
        table.add_columns([pa.field(name, schema.field(name).type) for name in missing])
    return table
