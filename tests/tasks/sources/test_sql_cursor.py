"""The cursors of sql sources: encoded with their type, stored one a source, dropped on rollback."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from kbflow.store import Store
from kbflow.tasks.sources.sql_cursor import (
    decode_cursor,
    encode_cursor,
    forget_cursors,
    save_cursors,
    stored_cursor,
    stored_cursors,
)


def test_cursors_keep_their_type():
    for value in (datetime(2026, 11, 30, 12, 0, 1, 5), date(2026, 11, 30), Decimal("12.50"), 42, "2026-11-30", None):
        decoded = decode_cursor(encode_cursor(value))
        assert decoded == value and type(decoded) is type(value)


def test_a_run_replaces_its_sources_cursors_and_keeps_the_others(tmp_path):
    store = Store.from_uri(str(tmp_path / "store"))
    assert stored_cursor(store, "tickets") is None  # no table yet: none stored
    save_cursors(store, {"tickets": encode_cursor(5), "orders": encode_cursor("2026-11-01")}, "run-1")
    save_cursors(store, {"tickets": encode_cursor(9)}, "run-2")
    save_cursors(store, {}, "run-3")  # a run that read no cursor writes nothing
    rows = sorted(stored_cursors(store).to_pylist(), key=lambda row: row["source"])
    assert [(row["source"], decode_cursor(row["cursor"]), row["run_id"]) for row in rows] == [
        ("orders", "2026-11-01", "run-1"), ("tickets", 9, "run-2")]
    forget_cursors(store)
    assert stored_cursor(store, "tickets") is None and stored_cursors(store).num_rows == 0
