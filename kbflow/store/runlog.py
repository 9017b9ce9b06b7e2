"""The store's run log and quarantine: what each flow run did, and what runs set aside."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from kbflow.schemas import QUARANTINE, RUNS
from kbflow.store.filters import RowFilter
from kbflow.store.tables import QUARANTINE_TABLE, RUNS_TABLE, Tables, add_missing_columns

QUARANTINE_KEY = ("source", "uri", "stage", "reason", "content_hash")  # one quarantined item


def new_run_id() -> str:
    """Sortable, readable and unique: 20261122T103000Z-ab12cd."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class RunLog(Tables):
    """The `runs` and `quarantine` tables."""

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Run history, newest first."""
        rows = self._rows(RUNS_TABLE)
        if rows is None:
            return []
        history = sorted(rows.to_pylist(), key=lambda row: row["started_at"], reverse=True)
        return history[:limit] if limit else history

    def run(self, run_id: str) -> dict[str, Any] | None:
        return self.row(RUNS_TABLE, RowFilter(run_ids=[run_id]))

    def published_runs(self) -> list[dict[str, Any]]:
        """Runs that changed the index, newest first: what `rollback` can return to."""
        return [run for run in self.runs() if run["status"] == "published"]

    def add_run(self, run: dict[str, Any]) -> None:
        """Record a run, or replace its record (a run written as `running` before its publish, closed after)."""
        row = {**run, **{k: json.dumps(v) for k, v in run.items() if isinstance(v, (dict, list))}}
        table = add_missing_columns(self._table_or_create(RUNS_TABLE, RUNS), RUNS)
        (table.merge_insert("run_id").when_matched_update_all().when_not_matched_insert_all()
         .execute(pa.Table.from_pylist([row], schema=RUNS)))

    def quarantine(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """What runs set aside. One run: every record it made (an item it saw again included).
        All runs: each item once (same place, stage, reason and content), its newest record."""
        rows = self._rows(QUARANTINE_TABLE, RowFilter(run_ids=[run_id]) if run_id else None)
        if rows is None:
            return []
        if run_id:
            return rows.to_pylist()
        newest: dict[tuple, dict[str, Any]] = {}
        for row in sorted(rows.to_pylist(), key=lambda row: row["quarantined_at"]):
            newest[tuple(row[name] for name in QUARANTINE_KEY)] = row
        return list(newest.values())

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
        known = set(keys(self._rows(QUARANTINE_TABLE, RowFilter(run_ids=run_ids), columns=key_columns)))
        fresh = pa.array([key not in known for key in keys(records)], pa.bool_())
        new_records = records.filter(fresh)
        if new_records.num_rows:
            table.add(new_records)
        return new_records.num_rows
