"""The store: LanceDB tables `chunks`, `documents`, `runs` and `quarantine`.

Every write to `chunks` and to `documents` is one atomic LanceDB commit, tagged
with the run that made it. Chunks are committed before the manifest, so a crash
between the two leaves the manifest saying "changed" and the next run redoes the
same work (with the vectors already stored reused): the store converges.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS, IvfPq

from kbflow.config import StoreConfig
from kbflow.errors import ModelMismatch
from kbflow.schemas import DOCUMENTS, QUARANTINE, RUNS

CHUNKS, DOCUMENTS_TABLE, RUNS_TABLE, QUARANTINE_TABLE = "chunks", "documents", "runs", "quarantine"
SEARCH_COLUMNS = ["chunk_id", "doc_id", "uri", "source", "tenant", "heading", "text"]
SEARCH_MODES = ("vector", "fts", "hybrid")
SCORE_COLUMNS = {"vector": "_distance", "fts": "_score", "hybrid": "_relevance_score"}
# Selected explicitly to silence Lance's scoring auto-projection warning; hybrid adds its own.
SELECTED_SCORE = {"vector": ["_distance"], "fts": ["_score"], "hybrid": []}
FTS_REFRESH_MIN_ROWS = 1000  # refresh the FTS index once this many rows (or 10%) are unindexed


class StoreEmpty(LookupError):
    """Nothing has been published to this store yet."""


def new_run_id() -> str:
    """Sortable, readable and unique: 20261122T103000Z-ab12cd."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + str(value).replace("'", "''") + "'" for value in values)


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Published:
    chunks_version: int | None
    documents_version: int | None
    chunks_deleted: int


class Store:
    """Access to one kbflow store (a LanceDB database)."""

    def __init__(self, config: StoreConfig) -> None:
        self.uri = config.uri
        # timedelta(0): always see other processes' commits (a watcher, a second CLI).
        self.db = lancedb.connect(
            config.uri, storage_options=config.storage_options or None, read_consistency_interval=timedelta(0)
        )
        self.vector_index_min_rows = config.vector_index_min_rows

    @classmethod
    def from_uri(cls, uri: str) -> Store:
        return cls(StoreConfig(uri=uri))

    # -- tables -------------------------------------------------------------------------------

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

    def _rows(self, name: str, where: str | None = None, columns: list[str] | None = None) -> pa.Table | None:
        if not self.has(name):
            return None
        query = self.db.open_table(name).search()
        if where:
            query = query.where(where)
        if columns:
            query = query.select(columns)
        return query.limit(None).to_arrow()

    def row(self, name: str, where: str, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The first row matching `where`, without the `exclude` columns, or None."""
        if not self.has(name):
            return None
        table = self.db.open_table(name)
        columns = [n for n in table.schema.names if n not in exclude]
        found = table.search().where(where).select(columns).limit(1).to_arrow().to_pylist()
        return found[0] if found else None

    def count(self, name: str, where: str | None = None) -> int:
        return self.db.open_table(name).count_rows(where) if self.has(name) else 0

    def version(self, name: str) -> int | None:
        return self.db.open_table(name).version if self.has(name) else None

    # -- reads --------------------------------------------------------------------------------

    def manifest(self, sources: list[str]) -> pa.Table:
        """The `documents` rows of the given sources."""
        rows = self._rows(DOCUMENTS_TABLE, where=f"source IN ({sql_list(sources)})") if sources else None
        return DOCUMENTS.empty_table() if rows is None else rows.select(DOCUMENTS.names).cast(DOCUMENTS)

    def cached_vectors(self, model: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of `model` for these text hashes (the embedding cache)."""
        wanted = sorted(set(text_hashes))
        if not wanted or not self.has(CHUNKS):
            return {}
        found = self._rows(
            CHUNKS,
            where=f"model = {sql_string(model)} AND text_hash IN ({sql_list(wanted)})",
            columns=["text_hash", "vector"],
        )
        if found.num_rows == 0:
            return {}
        dim = found.schema.field("vector").type.list_size
        vectors = pc.list_flatten(found.column("vector")).to_numpy().reshape(-1, dim)
        return dict(zip(found.column("text_hash").to_pylist(), vectors))

    def index_model(self) -> str | None:
        """The model whose vectors the chunks table holds, if any."""
        if not self.has(CHUNKS):
            return None
        sample = self.db.open_table(CHUNKS).search().select(["model"]).limit(1).to_arrow()
        return sample.column("model")[0].as_py() if sample.num_rows else None

    def check_model(self, model: str) -> None:
        """Refuse to mix vectors: raise ModelMismatch if the index holds another model's."""
        indexed = self.index_model()
        if indexed not in (None, model):
            raise ModelMismatch(model, indexed)

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Run history, newest first."""
        rows = self._rows(RUNS_TABLE)
        if rows is None:
            return []
        history = sorted(rows.to_pylist(), key=lambda row: row["started_at"], reverse=True)
        return history[:limit] if limit else history

    def quarantine(self, run_id: str | None = None) -> list[dict[str, Any]]:
        rows = self._rows(QUARANTINE_TABLE, where=f"run_id = {sql_string(run_id)}" if run_id else None)
        return [] if rows is None else rows.to_pylist()

    # -- writes -------------------------------------------------------------------------------

    def publish(
        self,
        run_id: str,
        chunks: pa.Table,
        manifest_rows: pa.Table,
        replaced_doc_ids: list[str],
    ) -> Published:
        """Commit chunks, then the manifest; each one atomic commit tagged with the run.

        `chunks` are the new chunks of new/changed documents; the old chunks of every
        document in `replaced_doc_ids` (changed or deleted) that are not among them are
        removed in the same commit. `manifest_rows` are upserted; manifest rows of
        documents in `replaced_doc_ids` that are not among them are removed.
        """
        chunks_version, chunks_deleted = self._commit(CHUNKS, chunks, replaced_doc_ids)
        if chunks_version is not None:
            chunks_version = self._maintain_indexes()
            self._tag(CHUNKS, run_id)
        documents_version, _ = self._commit(DOCUMENTS_TABLE, manifest_rows, replaced_doc_ids)
        if documents_version is not None:
            self._tag(DOCUMENTS_TABLE, run_id)
        return Published(chunks_version, documents_version, chunks_deleted)

    def _tag(self, name: str, run_id: str) -> None:
        """Tag the table's current version with the run: what rollback and trace find."""
        table = self.db.open_table(name)
        if run_id not in table.tags.list():
            table.tags.create(run_id, table.version)

    def _commit(self, name: str, rows: pa.Table, doc_ids: list[str]) -> tuple[int | None, int]:
        """Upsert rows by key and drop the rest of `doc_ids`' rows: one commit."""
        if rows.num_rows == 0 and not doc_ids:
            return None, 0
        key = "chunk_id" if name == CHUNKS else "doc_id"
        if rows.num_rows == 0 and not self.has(name):
            return None, 0
        table = self._table_or_create(name, rows.schema)
        scope = f"doc_id IN ({sql_list(doc_ids)})" if doc_ids else None
        if rows.num_rows == 0:
            deleted = table.count_rows(scope)
            if deleted == 0:
                return None, 0
            table.delete(scope)
        else:
            merge = table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all()
            if scope:
                merge = merge.when_not_matched_by_source_delete(scope)
            result = merge.execute(rows.select(table.schema.names))
            deleted = result.num_deleted_rows
        return table.version, deleted

    def _maintain_indexes(self) -> int:
        """Create or refresh the FTS index (and the ANN index once large); the table's version after."""
        table = self.db.open_table(CHUNKS)
        indexes = {index.index_type: index for index in table.list_indices()}
        if "FTS" not in indexes:
            table.create_index("text", config=FTS())
        else:
            stats = table.index_stats(indexes["FTS"].name)
            if stats.num_unindexed_rows >= max(FTS_REFRESH_MIN_ROWS, stats.num_indexed_rows // 10):
                table.create_index("text", config=FTS(), replace=True)
        rows = table.count_rows()
        if rows >= self.vector_index_min_rows and not any(t.startswith("IVF") for t in indexes):
            table.create_index("vector", config=IvfPq(distance_type="cosine"))
        return table.version

    def run(self, run_id: str) -> dict[str, Any] | None:
        return self.row(RUNS_TABLE, f"run_id = {sql_string(run_id)}")

    def published_runs(self) -> list[dict[str, Any]]:
        """Runs that changed the index, newest first: what `rollback` can return to."""
        return [run for run in self.runs() if run["status"] == "published"]

    def restore(self, target_run_id: str, run_id: str) -> dict[str, int]:
        """Make `chunks` and `documents` what `target_run_id` published: one commit each, tagged `run_id`.

        A table the target run did not write is restored to the version the newest
        earlier published run left it at.
        """
        history = [run["run_id"] for run in self.published_runs()]
        if target_run_id not in history:
            raise LookupError(f"run {target_run_id!r} did not publish anything; `kbflow runs` lists the runs")
        candidates = history[history.index(target_run_id):]  # the target, then older runs
        versions = {}
        for name in (CHUNKS, DOCUMENTS_TABLE):
            table = self.table(name)
            tags = table.tags.list()
            tagged = next((tags[r]["version"] for r in candidates if r in tags), None)
            if tagged is None:
                raise LookupError(f"no version of {name!r} is tagged with {target_run_id!r} or an earlier run")
            table.restore(tagged)  # a version tagged before indexes existed has none: _switched rebuilds
            versions[name] = self._switched(name, run_id)
        return versions

    def replace_with(self, staging: Store, run_id: str) -> dict[str, int]:
        """Switch `chunks`, then `documents`, to staging's: one overwrite commit each, tagged `run_id`.

        The overwrite keeps the tables' history, so the replaced index stays reachable
        by `restore` (rollback) until old versions are cleaned up.
        """
        versions = {}
        for name in (CHUNKS, DOCUMENTS_TABLE):
            self.db.create_table(name, data=staging.table(name).to_arrow(), mode="overwrite")
            versions[name] = self._switched(name, run_id)
        return versions

    def _switched(self, name: str, run_id: str) -> int:
        """After a table was swapped whole: indexes for chunks, the run's tag; the version."""
        if name == CHUNKS:
            self._maintain_indexes()
        self._tag(name, run_id)
        return self.db.open_table(name).version

    def add_quarantine(self, records: pa.Table) -> int:
        """Append quarantine records not already recorded (same place, stage, reason, content)."""
        if records.num_rows == 0:
            return 0
        table = self._table_or_create(QUARANTINE_TABLE, QUARANTINE)
        key_columns = ["source", "uri", "stage", "reason", "content_hash"]

        def keys(rows: pa.Table) -> list[tuple]:
            return list(zip(*(rows.column(name).to_pylist() for name in key_columns)))

        uris = sorted(set(records.column("uri").to_pylist()))
        known = set(keys(self._rows(QUARANTINE_TABLE, where=f"uri IN ({sql_list(uris)})", columns=key_columns)))
        fresh = pa.array([key not in known for key in keys(records)], pa.bool_())
        new_records = records.filter(fresh)
        if new_records.num_rows:
            table.add(new_records)
        return new_records.num_rows

    def add_run(self, run: dict[str, Any]) -> None:
        row = {**run, **{k: json.dumps(v) for k, v in run.items() if isinstance(v, (dict, list))}}
        self._table_or_create(RUNS_TABLE, RUNS).add(pa.Table.from_pylist([row], schema=RUNS))

    # -- search -------------------------------------------------------------------------------

    def search(
        self, vector: np.ndarray | None, text: str, k: int, tenant: str | None, mode: str
    ) -> list[dict[str, Any]]:
        """Top-k chunks by vector, full-text or hybrid (RRF) relevance; tenant filtered first."""
        table = self.table(CHUNKS)
        if mode == "vector":
            query = table.search(vector, vector_column_name="vector").distance_type("cosine")
        elif mode == "fts":
            query = table.search(text, query_type="fts")
        elif mode == "hybrid":
            query = table.search(query_type="hybrid").vector(vector).text(text)
        else:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        if tenant is not None:
            query = query.where(f"tenant = {sql_string(tenant)}", prefilter=True)
        hits = query.select(SEARCH_COLUMNS + SELECTED_SCORE[mode]).limit(k).to_arrow().to_pylist()
        for hit in hits:
            hit["score"] = _score(hit, mode)
            for internal in SCORE_COLUMNS.values():
                hit.pop(internal, None)
        return hits


def _score(hit: dict[str, Any], mode: str) -> float:
    if mode == "vector":
        return 1.0 - float(hit["_distance"])  # cosine similarity
    if mode == "fts":
        return float(hit["_score"])  # BM25
    return float(hit["_relevance_score"])  # reciprocal-rank fusion
