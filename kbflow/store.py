"""The store: LanceDB tables `chunks`, `documents`, `runs` and `quarantine`.

Every write to `chunks` and to `documents` is one atomic LanceDB commit, tagged
with the run that made it. Chunks are committed before the documents, so a crash
between the two leaves the `documents` table saying "changed" and the next run redoes the
same work (with the vectors already stored reused): the store converges.

The store stores and reads: its reads return rows (and LanceDB's raw `_distance` /
`_score`); ranking them (scores, hybrid fusion) is kbflow.search's.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS

from kbflow.config import StoreConfig
from kbflow.errors import KbflowError, ModelMismatch, NotFound
from kbflow.schemas import DOCUMENTS, QUARANTINE, RUNS, vector_matrix
from kbflow.vector_index import (
    VECTOR_INDEX_NAME,
    partitions_for,
    tune_vector_query,
    vector_index_config,
    vector_index_name,
)

CHUNKS, DOCUMENTS_TABLE, RUNS_TABLE, QUARANTINE_TABLE = "chunks", "documents", "runs", "quarantine"
QUARANTINE_KEY = ("source", "uri", "stage", "reason", "content_hash")  # one quarantined item
SEARCH_COLUMNS = ["chunk_id", "doc_id", "uri", "source", "tenant", "heading", "text"]
FTS_REFRESH_MIN_ROWS = 1000  # refresh the FTS index once this many rows (or 10%) are unindexed
NO_CLEANUP = timedelta(days=36_500)  # an optimize that removes no version
log = logging.getLogger("kbflow.store")


class StoreEmpty(KbflowError, LookupError):
    """Nothing has been published to this store yet."""


class NoStore(StoreEmpty):
    """No kbflow store at the configured uri at all (a read-only command creates none)."""


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
        self.config = config
        self._pinned: dict[int, Any] = {}  # chunks table handles checked out at a version

    @classmethod
    def from_uri(cls, uri: str) -> Store:
        return cls(StoreConfig(uri=uri))

    @classmethod
    def existing(cls, config: StoreConfig) -> Store:
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

    def documents(self, sources: list[str] | None = None) -> pa.Table:
        """The `documents` rows of the given sources (None: of every source)."""
        if sources is None:
            rows = self._rows(DOCUMENTS_TABLE)
        else:
            rows = self._rows(DOCUMENTS_TABLE, where=f"source IN ({sql_list(sources)})") if sources else None
        if rows is None:
            return DOCUMENTS.empty_table()
        for name in DOCUMENTS.names:  # written by an older kbflow: its newer columns are null
            if name not in rows.column_names:
                rows = rows.append_column(name, pa.nulls(rows.num_rows, DOCUMENTS.field(name).type))
        return rows.select(DOCUMENTS.names).cast(DOCUMENTS)

    def record_change_tokens(self, tokens: dict[str, str]) -> None:
        """Store new change tokens of documents whose content did not change (one commit).

        An object re-uploaded with the same bytes gets a new ETag; recording it spares the
        next run another read of its body.
        """
        if not tokens:
            return
        rows = self.documents()
        rows = rows.filter(pc.is_in(rows.column("doc_id"), value_set=pa.array(list(tokens), pa.string())))
        if rows.num_rows == 0:
            return
        updated = rows.set_column(rows.schema.get_field_index("change_token"), "change_token",
                                  pa.array([tokens[d] for d in rows.column("doc_id").to_pylist()], pa.string()))
        table = _add_missing_columns(self.db.open_table(DOCUMENTS_TABLE), DOCUMENTS)
        table.merge_insert("doc_id").when_matched_update_all().execute(updated.select(table.schema.names))

    def chunks(
        self, columns: Sequence[str], where: str | None = None, version: int | None = None
    ) -> pa.Table:
        """The `chunks` rows matching `where` (all by default), `columns` only; at `version` when given."""
        query = self._chunks_at(version).search()
        if where:
            query = query.where(where)
        return query.select(list(columns)).limit(None).to_arrow()

    def chunk_batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Every `chunks` row, `columns` only, as a stream of record batches (flat memory)."""
        return self.table(CHUNKS).search().select(list(columns)).limit(None).to_batches(batch_rows)

    def nearest_chunks(
        self,
        vector: np.ndarray,
        k: int,
        where: str | None = None,
        columns: Sequence[str] = SEARCH_COLUMNS,
        version: int | None = None,
    ) -> list[dict[str, Any]]:
        """The k chunks nearest `vector` by cosine `_distance`, filtered by `where` inside LanceDB first.

        An ANN index (past `vector_index_min_rows`) is queried with the configured recall
        knobs (`tune_vector_query`: exact re-rank, probes); below it the scan is exact.
        """
        query = self._chunks_at(version).search(vector, vector_column_name="vector").distance_type("cosine")
        query = tune_vector_query(query, self.config, k)
        if where:
            query = query.where(where, prefilter=True)
        # `_distance` selected explicitly: it silences Lance's scoring auto-projection warning.
        return query.select([*columns, "_distance"]).limit(k).to_arrow().to_pylist()

    def matching_chunks(
        self, text: str, k: int, where: str | None = None, columns: Sequence[str] = SEARCH_COLUMNS
    ) -> list[dict[str, Any]]:
        """The k chunks best matching `text` by full-text BM25 `_score`, filtered by `where` first."""
        query = self.table(CHUNKS).search(text, query_type="fts")
        if where:
            query = query.where(where, prefilter=True)
        return query.select([*columns, "_score"]).limit(k).to_arrow().to_pylist()

    def tags(self, name: str) -> dict[str, Any]:
        """The table's tags (run id -> version): what rollback and trace find."""
        return self.table(name).tags.list()

    def _chunks_at(self, version: int | None):
        """The chunks table, or a handle checked out at `version` (kept: a snapshot queries it often)."""
        if version is None:
            return self.table(CHUNKS)
        if version not in self._pinned:
            table = self.table(CHUNKS)
            table.checkout(version)
            self._pinned[version] = table
        return self._pinned[version]

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
        return dict(zip(found.column("text_hash").to_pylist(), vector_matrix(found.column("vector"))))

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
        """What runs set aside. One run: every record it made (an item it saw again included).
        All runs: each item once (same place, stage, reason and content), its newest record."""
        rows = self._rows(QUARANTINE_TABLE, where=f"run_id = {sql_string(run_id)}" if run_id else None)
        if rows is None:
            return []
        if run_id:
            return rows.to_pylist()
        newest: dict[tuple, dict[str, Any]] = {}
        for row in sorted(rows.to_pylist(), key=lambda row: row["quarantined_at"]):
            newest[tuple(row[name] for name in QUARANTINE_KEY)] = row
        return list(newest.values())

    # -- writes -------------------------------------------------------------------------------

    def publish(
        self,
        run_id: str,
        chunks: pa.Table | pa.RecordBatchReader,
        document_rows: pa.Table,
        replaced_doc_ids: list[str],
    ) -> Published:
        """Commit chunks, then documents; each one atomic commit tagged with the run.

        `chunks` (a table, or a non-empty stream in the table's column order, merged
        batch by batch) are the new chunks of new/changed documents; the old chunks of every
        document in `replaced_doc_ids` (changed or deleted) that are not among them are
        removed in the same commit. `document_rows` are upserted; `documents` rows of
        documents in `replaced_doc_ids` that are not among them are removed.
        """
        chunks_version, chunks_deleted = self._commit(CHUNKS, chunks, replaced_doc_ids)
        if chunks_version is not None:
            chunks_version = self._maintain_indexes()
            self._tag(CHUNKS, run_id)
        documents_version, _ = self._commit(DOCUMENTS_TABLE, document_rows, replaced_doc_ids)
        if documents_version is not None:
            self._tag(DOCUMENTS_TABLE, run_id)
        if chunks_version is not None or documents_version is not None:
            self._optimize_after_publish()
        return Published(chunks_version, documents_version, chunks_deleted)

    def _tag(self, name: str, run_id: str) -> None:
        """Tag the table's current version with the run: what rollback and trace find."""
        table = self.db.open_table(name)
        if run_id not in table.tags.list():
            table.tags.create(run_id, table.version)

    def _commit(self, name: str, rows: pa.Table | pa.RecordBatchReader, doc_ids: list[str]) -> tuple[int | None, int]:
        """Upsert rows by key and drop the rest of `doc_ids`' rows: one commit.

        `rows` may be a RecordBatchReader. When none of `doc_ids` has chunks stored yet
        (a cold run, or only new documents), the commit is an append, which streams in
        flat memory; LanceDB's merge_insert holds memory in proportion to the rows it merges.
        """
        streamed = isinstance(rows, pa.RecordBatchReader)
        empty = not streamed and rows.num_rows == 0
        if empty and not doc_ids:
            return None, 0
        key = "chunk_id" if name == CHUNKS else "doc_id"
        if empty and not self.has(name):
            return None, 0
        table = self._table_or_create(name, rows.schema)
        if name == DOCUMENTS_TABLE:
            _add_missing_columns(table, DOCUMENTS)
        scope = f"doc_id IN ({sql_list(doc_ids)})" if doc_ids else None
        if empty:
            deleted = table.count_rows(scope)
            if deleted == 0:
                return None, 0
            table.delete(scope)
        elif name == CHUNKS and scope and table.count_rows(scope) == 0:
            # A chunk id derives from its document's id: no stored chunk of these documents,
            # so no stored row can match or need deleting.
            table.add(rows if streamed else rows.select(table.schema.names))
            deleted = 0
        else:
            merge = table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all()
            if scope:
                merge = merge.when_not_matched_by_source_delete(scope)
            result = merge.execute(rows if streamed else rows.select(table.schema.names))
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
        self._maintain_vector_index(table)
        return table.version

    def _maintain_vector_index(self, table) -> None:
        """Build the ANN index once the table has vector_index_min_rows; retrain it when outgrown.

        New rows reach an existing index through `optimize` (after each publish); until
        then search scans them exactly, so results stay complete. A retrain happens when
        the configured type changed or the rows grew so that ~sqrt(rows) partitions are
        twice as many as the index has (4x the rows it was trained for).
        """
        rows = table.count_rows()
        if rows < self.config.vector_index_min_rows:
            return
        current = [index.name for index in table.list_indices() if index.columns == ["vector"]]
        wanted = vector_index_name(self.config, rows)
        trained = VECTOR_INDEX_NAME.match(current[0]) if len(current) == 1 else None
        if trained and trained["kind"] == self.config.vector_index_type:
            have, want = int(trained["partitions"]), partitions_for(self.config, rows)
            outgrown = want != have if self.config.vector_index_partitions else want >= 2 * have
            if not outgrown:
                return
        dim = table.schema.field("vector").type.list_size
        table.create_index("vector", config=vector_index_config(self.config, rows, dim), name=wanted, replace=True)
        for name in current:
            if name != wanted:
                table.drop_index(name)  # after the new one exists: searches never lose their index

    def optimize(self) -> dict[str, int]:
        """Maintenance: compact files, merge new rows into the indexes, remove old versions' files.

        Versions newer than `optimize_retention_days` are never removed, nor those of
        the newest `keep_runs` runs per table, nor the newest version older than the
        window (what the table looked like when the window opened): rollback to any
        run inside the window, and to the last `keep_runs` runs, keeps working. Tags of
        older runs are deleted first, since a tagged version blocks cleanup; rollback to
        such a run is then refused. Returns the versions removed per table.
        """
        retention = timedelta(days=self.config.optimize_retention_days)
        runs = self._rows(RUNS_TABLE, columns=["run_id"])
        known_runs = set(runs.column("run_id").to_pylist()) if runs is not None else set()
        removed = {}
        for name in (CHUNKS, DOCUMENTS_TABLE, RUNS_TABLE, QUARANTINE_TABLE):
            if not self.has(name):
                continue
            table = self.db.open_table(name)
            before = {version["version"] for version in table.list_versions()}
            # Compaction and index merging first (they may take long), then a cleanup whose age is
            # computed just before it runs: Lance refuses a cleanup that would reach a tagged version.
            table.optimize(cleanup_older_than=NO_CLEANUP)
            older_than = self._release_old_tags(table, known_runs, retention)
            try:
                table.optimize(cleanup_older_than=older_than)
            except RuntimeError as error:  # the cleanup's clock ran past a kept tag (a slow store): spare more
                if "tagged version" not in str(error):
                    raise
                table.optimize(cleanup_older_than=older_than + timedelta(minutes=5))
            removed[name] = len(before - {version["version"] for version in table.list_versions()})
        return removed

    def _release_old_tags(self, table, known_runs: set[str], retention: timedelta) -> timedelta:
        """Delete the tags of runs past retention (see `optimize`); the cleanup age that spares the rest."""
        timestamps = {version["version"]: version["timestamp"] for version in table.list_versions()}
        now = datetime.now(next(iter(timestamps.values())).tzinfo)  # like Lance's (naive) timestamps
        tags = sorted(table.tags.list().items(), key=lambda item: item[1]["version"], reverse=True)
        in_window = sum(1 for _, tag in tags if now - timestamps.get(tag["version"], now) < retention)
        keep = max(self.config.keep_runs, in_window + 1)
        for name, _ in tags[keep:]:
            if name in known_runs:  # only kbflow's own run tags; others are the user's to delete
                table.tags.delete(name)
        kept = [timestamps[tag["version"]] for _, tag in table.tags.list().items() if tag["version"] in timestamps]
        # A tagged version older than the cleanup age makes Lance refuse the whole cleanup.
        spare = now - min(kept) + timedelta(seconds=1) if kept else timedelta(0)
        return max(retention, spare, timedelta(seconds=1))

    def _optimize_after_publish(self) -> None:
        """Run `optimize`; a failure is logged, never fatal: the publish is committed already."""
        try:
            removed = self.optimize()
        except (OSError, RuntimeError) as error:  # Lance IO/commit errors; the next publish retries
            log.warning("store maintenance (optimize) failed, the publish stands: %s", error)
            return
        if any(removed.values()):
            log.info("optimize removed old versions: %s", removed)

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
            raise NotFound(f"run {target_run_id!r} did not publish anything; `kbflow runs` lists the runs")
        candidates = history[history.index(target_run_id):]  # the target, then older runs
        versions = {}
        for name in (CHUNKS, DOCUMENTS_TABLE):
            table = self.table(name)
            tags = table.tags.list()
            tagged = next((tags[r]["version"] for r in candidates if r in tags), None)
            if tagged is None:
                raise NotFound(f"no version of {name!r} is tagged with {target_run_id!r} or an earlier run")
            table.restore(tagged)  # a version tagged before indexes existed has none: _switched rebuilds
            versions[name] = self._switched(name, run_id)
        return versions

    def replace_with(self, staging: Store, run_id: str) -> dict[str, int]:
        """Switch `chunks`, then `documents`, to staging's: one overwrite commit each, tagged `run_id`.

        The overwrite keeps the tables' history, so the replaced index stays reachable
        by `restore` (rollback) until old versions are cleaned up. Rows that name a run of
        the staging store (its nested ingest, whose record goes with it) name `run_id`
        instead, so `kbflow trace` finds the run that wrote a chunk and its table version.
        """
        staged_runs = [run["run_id"] for run in staging.runs()]
        versions = {}
        for name in (CHUNKS, DOCUMENTS_TABLE):
            rows = _runs_renamed(staging.table(name).to_arrow(), staged_runs, run_id)
            self.db.create_table(name, data=rows, mode="overwrite")
            versions[name] = self._switched(name, run_id)
        return versions

    def _switched(self, name: str, run_id: str) -> int:
        """After a table was swapped whole: indexes for chunks, the run's tag; the version."""
        if name == CHUNKS:
            self._maintain_indexes()
        self._tag(name, run_id)
        return self.db.open_table(name).version

    def add_quarantine(self, records: pa.Table) -> int:
        """Append quarantine records, each run's own: a run that sets aside an item an earlier
        run did keeps its record too (`quarantine(run_id)` shows it). A record its run already
        holds (same place, stage, reason, content) is not added twice."""
        if records.num_rows == 0:
            return 0
        table = self._table_or_create(QUARANTINE_TABLE, QUARANTINE)
        key_columns = ["run_id", *QUARANTINE_KEY]

        def keys(rows: pa.Table) -> list[tuple]:
            return list(zip(*(rows.column(name).to_pylist() for name in key_columns)))

        run_ids = sorted(set(records.column("run_id").to_pylist()))
        known = set(keys(self._rows(QUARANTINE_TABLE, where=f"run_id IN ({sql_list(run_ids)})", columns=key_columns)))
        fresh = pa.array([key not in known for key in keys(records)], pa.bool_())
        new_records = records.filter(fresh)
        if new_records.num_rows:
            table.add(new_records)
        return new_records.num_rows

    def add_run(self, run: dict[str, Any]) -> None:
        row = {**run, **{k: json.dumps(v) for k, v in run.items() if isinstance(v, (dict, list))}}
        table = _add_missing_columns(self._table_or_create(RUNS_TABLE, RUNS), RUNS)
        table.add(pa.Table.from_pylist([row], schema=RUNS))

    def add_rows(self, name: str, rows: pa.Table) -> None:
        """Append rows to a table, creating it with their schema first (a run's staging store)."""
        if self.has(name):
            self.db.open_table(name).add(rows)
        else:
            self.db.create_table(name, data=rows)


def _runs_renamed(rows: pa.Table, old_run_ids: list[str], run_id: str) -> pa.Table:
    """`rows` with `run_id` wherever a run column (run_id, first_run_id, last_run_id) names one of `old_run_ids`."""
    for column in ("run_id", "first_run_id", "last_run_id"):
        if column in rows.column_names and old_run_ids:
            values = rows.column(column)
            renamed = pc.if_else(pc.is_in(values, value_set=pa.array(old_run_ids, values.type)),
                                 pa.scalar(run_id, values.type), values)
            rows = rows.set_column(rows.schema.get_field_index(column), column, renamed)
    return rows


def _add_missing_columns(table, schema: pa.Schema):
    """A table written by an older kbflow lacks the newer (nullable, string) columns: add them."""
    present = set(table.schema.names)  # `table.schema` asks the table each time: once, not once per column
    missing = [name for name in schema.names if name not in present]
    if missing:
        table.add_columns({name: "CAST(NULL AS STRING)" for name in missing})
    return table
