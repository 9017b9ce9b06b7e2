"""The store: LanceDB tables `chunks`, `documents`, `runs` and `quarantine`.

Every write to `chunks` and to `documents` is one atomic LanceDB commit, tagged
with the run that made it. Chunks are committed before the manifest, so a crash
between the two leaves the manifest saying "changed" and the next run redoes the
same work (with the vectors already stored reused): the store converges.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, IvfHnswSq, IvfPq

from kbflow.config import Fusion, SearchMode, StoreConfig
from kbflow.errors import ModelMismatch
from kbflow.schemas import DOCUMENTS, QUARANTINE, RUNS, vector_matrix

CHUNKS, DOCUMENTS_TABLE, RUNS_TABLE, QUARANTINE_TABLE = "chunks", "documents", "runs", "quarantine"
SEARCH_COLUMNS = ["chunk_id", "doc_id", "uri", "source", "tenant", "heading", "text"]
SEARCH_MODES = get_args(SearchMode)
FUSIONS = get_args(Fusion)  # how hybrid fuses the vector and full-text rankings (fuse_hits)
RRF_K = 60  # the usual reciprocal-rank-fusion constant: 1 / (60 + rank)
SCORE_COLUMNS = {"vector": "_distance", "fts": "_score"}
# Selected explicitly to silence Lance's scoring auto-projection warning.
SELECTED_SCORE = {"vector": ["_distance"], "fts": ["_score"]}
FTS_REFRESH_MIN_ROWS = 1000  # refresh the FTS index once this many rows (or 10%) are unindexed
# The ANN index's name records its type and partitions, so an outgrown index is seen and retrained.
VECTOR_INDEX_NAME = re.compile(r"^vector_(?P<kind>ivf_pq|ivf_hnsw_sq)_p(?P<partitions>\d+)$")
NO_CLEANUP = timedelta(days=36_500)  # an optimize that removes no version
log = logging.getLogger("kbflow.store")


class StoreEmpty(LookupError):
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
        rows = self._rows(QUARANTINE_TABLE, where=f"run_id = {sql_string(run_id)}" if run_id else None)
        return [] if rows is None else rows.to_pylist()

    # -- writes -------------------------------------------------------------------------------

    def publish(
        self,
        run_id: str,
        chunks: pa.Table | pa.RecordBatchReader,
        manifest_rows: pa.Table,
        replaced_doc_ids: list[str],
    ) -> Published:
        """Commit chunks, then the manifest; each one atomic commit tagged with the run.

        `chunks` (a table, or a non-empty stream in the table's column order, merged
        batch by batch) are the new chunks of new/changed documents; the old chunks of every
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
            have, want = int(trained["partitions"]), _partitions_for(self.config, rows)
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
        table = self._table_or_create(RUNS_TABLE, RUNS)
        # A store written by an older kbflow lacks the newer (nullable, string) columns: add them.
        missing = [name for name in RUNS.names if name not in table.schema.names]
        if missing:
            table.add_columns({name: "CAST(NULL AS STRING)" for name in missing})
        table.add(pa.Table.from_pylist([row], schema=RUNS))

    # -- search -------------------------------------------------------------------------------

    def search(
        self,
        vector: np.ndarray | None,
        text: str,
        k: int,
        tenant: str | None,
        mode: str,
        *,
        fusion: str = "linear",
        weight: float = 0.5,
        candidates: int = 50,
    ) -> list[dict[str, Any]]:
        """Top-k chunks by vector, full-text or hybrid relevance; tenant filtered first.

        Hybrid takes the top `candidates` (at least k) of the vector and of the full-text
        ranking, each tenant-filtered, and fuses them with `fuse_hits(fusion, weight)`.
        """
        if mode == "hybrid":
            depth = max(k, candidates)
            vector_hits = self.search(vector, text, depth, tenant, "vector")
            fts_hits = self.search(vector, text, depth, tenant, "fts")
            return fuse_hits(vector_hits, fts_hits, fusion, weight)[:k]
        table = self.table(CHUNKS)
        if mode == "vector":
            query = table.search(vector, vector_column_name="vector").distance_type("cosine")
            query = tune_vector_query(query, self.config, k)
        elif mode == "fts":
            query = table.search(text, query_type="fts")
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


def _partitions_for(config: StoreConfig, rows: int) -> int:
    """IVF partitions: ~sqrt(rows) for IVF-PQ; HNSW searches big partitions well, so 4x fewer."""
    if config.vector_index_partitions:
        return config.vector_index_partitions
    root = math.sqrt(max(rows, 1))
    return max(1, round(root / 4 if config.vector_index_type == "ivf_hnsw_sq" else root))


def _sub_vectors_for(config: StoreConfig, dim: int) -> int:
    """PQ sub-vectors: dim/8 (8 dims per byte code keeps recall high), or the nearest that divides dim."""
    if config.vector_index_sub_vectors:
        if dim % config.vector_index_sub_vectors:
            raise ValueError(f"store.vector_index_sub_vectors = {config.vector_index_sub_vectors} must divide "
                             f"the vector dimension {dim}")
        return config.vector_index_sub_vectors
    width = next(w for w in (8, 4, 2, 1) if dim % w == 0)
    return dim // width


def vector_index_name(config: StoreConfig, rows: int) -> str:
    return f"vector_{config.vector_index_type}_p{_partitions_for(config, rows)}"


def vector_index_config(config: StoreConfig, rows: int, dim: int) -> IvfPq | IvfHnswSq:
    """The ANN index for `rows` vectors of `dim` dimensions (cosine), as configured."""
    partitions = _partitions_for(config, rows)
    # Fewer k-means iterations and samples than Lance's defaults (50, 256 per centroid): PQ training
    # dominated the build (100k rows: 450 s -> 190 s on 2 busy cores) at no measured recall loss.
    training = {"max_iterations": 20, "sample_rate": 64}
    if config.vector_index_type == "ivf_hnsw_sq":
        return IvfHnswSq(distance_type="cosine", num_partitions=partitions, **training)
    return IvfPq(
        distance_type="cosine", num_partitions=partitions, num_sub_vectors=_sub_vectors_for(config, dim), **training
    )


def refine_factor(config: StoreConfig) -> int:
    """The configured re-rank factor, or the type's default: 48-byte PQ codes need 30 for recall@10 >= 0.95
    at 1M rows, 8-bit SQ codes 10 (bench/vector_index_bench.py); 0: no exact re-rank."""
    if config.vector_refine_factor is not None:
        return config.vector_refine_factor
    return 10 if config.vector_index_type == "ivf_hnsw_sq" else 30


def tune_vector_query(query, config: StoreConfig, k: int):
    """Recall knobs of an ANN query (ignored by an exact scan): partitions probed, exact re-rank, HNSW ef."""
    query = query.nprobes(config.vector_nprobes)
    refine = refine_factor(config)
    if refine:
        query = query.refine_factor(refine)
    if config.vector_index_type == "ivf_hnsw_sq":
        # The graph must return all k * refine_factor candidates: Lance refuses an ef below that.
        query = query.ef(max(config.hnsw_ef, k * max(refine, 1)))
    return query


def _score(hit: dict[str, Any], mode: str) -> float:
    if mode == "vector":
        return 1.0 - float(hit["_distance"])  # cosine similarity
    return float(hit["_score"])  # BM25


def fuse_hits(
    vector_hits: list[dict[str, Any]], fts_hits: list[dict[str, Any]], fusion: str = "linear", weight: float = 0.5
) -> list[dict[str, Any]]:
    """One ranking from the vector and the full-text ranking of a query; "score" is the fused score.

    linear: weight * minmax(cosine) + (1 - weight) * minmax(BM25), a hit missing from a
    ranking scoring 0 there; rrf: weight / (60 + vector rank) + (1 - weight) / (60 + fts rank).
    Ties go to the ranking with the larger weight, so weight 1 gives exactly the vector
    ranking and weight 0 the full-text one: a tuned weight is never worse than either.

    >>> a, b = {"chunk_id": "a", "score": 0.9}, {"chunk_id": "b", "score": 7.0}
    >>> [hit["chunk_id"] for hit in fuse_hits([a], [b], "rrf", weight=0.7)]
    ['a', 'b']
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"hybrid weight must be between 0 and 1, not {weight}")
    vector_rank = {hit["chunk_id"]: rank for rank, hit in enumerate(vector_hits, start=1)}
    fts_rank = {hit["chunk_id"]: rank for rank, hit in enumerate(fts_hits, start=1)}
    if fusion == "linear":
        vector_part, fts_part = _min_max(vector_hits), _min_max(fts_hits)
    else:
        vector_part = {chunk_id: 1.0 / (RRF_K + rank) for chunk_id, rank in vector_rank.items()}
        fts_part = {chunk_id: 1.0 / (RRF_K + rank) for chunk_id, rank in fts_rank.items()}
    hits: dict[str, dict[str, Any]] = {}
    for hit in [*vector_hits, *fts_hits]:
        hits.setdefault(hit["chunk_id"], hit)
    fused = {c: weight * vector_part.get(c, 0.0) + (1.0 - weight) * fts_part.get(c, 0.0) for c in hits}
    first, second = (vector_rank, fts_rank) if weight >= 0.5 else (fts_rank, vector_rank)
    missing = len(hits) + 1
    order = sorted(hits, key=lambda c: (-fused[c], first.get(c, missing), second.get(c, missing)))
    return [{**hits[chunk_id], "score": fused[chunk_id]} for chunk_id in order]


def _min_max(hits: list[dict[str, Any]]) -> dict[str, float]:
    """Scores scaled to [0, 1] within one ranking (all 1 when they are equal)."""
    if not hits:
        return {}
    scores = [float(hit["score"]) for hit in hits]
    low, high = min(scores), max(scores)
    span = high - low
    return {hit["chunk_id"]: (score - low) / span if span else 1.0 for hit, score in zip(hits, scores)}
