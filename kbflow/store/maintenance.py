"""Index maintenance: FTS, ANN and ACL indexes, optimize and cleanup, run tags, restore and switch.

Each publish leaves `chunks` with fresh indexes and its run's tag; `optimize` compacts and
removes old versions outside the retention window; `restore` (rollback) and `replace_with`
(reindex) swap whole tables in one commit each, keeping the history.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS, LabelList

from kbflow.errors import NotFound
from kbflow.store.filters import ACL_COLUMN
from kbflow.store.runlog import RunLog
from kbflow.store.tables import CHUNKS, DOCUMENTS_TABLE, QUARANTINE_TABLE, RUNS_TABLE, Tables
from kbflow.vector_index import VECTOR_INDEX_NAME, partitions_for, vector_index_config, vector_index_name

FTS_REFRESH_MIN_ROWS = 1000  # refresh the FTS index once this many rows (or 10%) are unindexed
NO_CLEANUP = timedelta(days=36_500)  # an optimize that removes no version
log = logging.getLogger("kbflow.store")


class Maintenance(RunLog):
    """Indexes, optimize, tags and whole-table switches of one store."""

    def tags(self, name: str) -> dict[str, Any]:
        """The table's tags (run id -> version): what rollback and trace find."""
        return self.table(name).tags.list()

    def _tag(self, name: str, run_id: str) -> None:
        """Tag the table's current version with the run: what rollback and trace find."""
        table = self.db.open_table(name)
        if run_id not in table.tags.list():
            table.tags.create(run_id, table.version)

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
        maintain_acl_index(table)
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

    def replace_with(self, staging: Tables, run_id: str) -> dict[str, int]:
        """Switch `chunks`, then `documents`, to staging's: one overwrite commit each, tagged `run_id`.

        The overwrite keeps the tables' history, so the replaced index stays reachable
        by `restore` (rollback) until old versions are cleaned up. Rows that name a run of
        the staging store (its nested ingest, whose record goes with it) name `run_id`
        instead, so `kbflow trace` finds the run that wrote a chunk and its table version.
        """
        staged_runs = [run["run_id"] for run in staging.runs()]
        versions = {}
        for name in (CHUNKS, DOCUMENTS_TABLE):
            rows = runs_renamed(staging.table(name).to_arrow(), staged_runs, run_id)
            self.db.create_table(name, data=rows, mode="overwrite")
            versions[name] = self._switched(name, run_id)
        return versions

    def _switched(self, name: str, run_id: str) -> int:
        """After a table was swapped whole: indexes for chunks, the run's tag; the version."""
        if name == CHUNKS:
            self._maintain_indexes()
        self._tag(name, run_id)
        return self.db.open_table(name).version


def runs_renamed(rows: pa.Table, old_run_ids: list[str], run_id: str) -> pa.Table:
    """`rows` with `run_id` wherever a run column (run_id, first_run_id, last_run_id) names one of `old_run_ids`."""
    for column in ("run_id", "first_run_id", "last_run_id"):
        if column in rows.column_names and old_run_ids:
            values = rows.column(column)
            renamed = pc.if_else(pc.is_in(values, value_set=pa.array(old_run_ids, values.type)),
                                 pa.scalar(run_id, values.type), values)
            rows = rows.set_column(rows.schema.get_field_index(column), column, renamed)
    return rows


def maintain_acl_index(table) -> None:
    """A LABEL_LIST index on the `acl` list column: ACL prefilters (`array_has_any`) read it, not every row.

    Created once; rows added later are merged into it by `optimize` (after each publish), and
    until then the filter scans them, so results stay complete.
    """
    if ACL_COLUMN in table.schema.names and not any(index.columns == [ACL_COLUMN] for index in table.list_indices()):
        table.create_index(ACL_COLUMN, config=LabelList())
