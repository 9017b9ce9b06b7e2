"""The incremental state of sql sources with a `cursor_field`: the cursor each read up to.

A cursor is the highest `cursor_field` value the last successful run of a source read, kept as JSON
that decodes to the same Python value (a datetime stays a datetime, so it binds as one). One row a
source in the store's `source_cursors` table (schema kbflow.schemas.SOURCE_CURSORS), written only
after the run that read it published or found nothing to publish, so a blocked, failed or killed
run never advances it; a rollback drops the table, and the next run reads every row once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.schemas import SOURCE_CURSORS
from kbflow.sources.cursor import decode_cursor, encode_cursor
from kbflow.store import Store

CURSORS_TABLE = "source_cursors"


def stored_cursors(store: Store) -> pa.Table:
    """Every sql source's stored cursor: one small row a source, read whole (a filtered scan costs more)."""
    if not store.has(CURSORS_TABLE):
        return SOURCE_CURSORS.empty_table()
    return store.db.open_table(CURSORS_TABLE).to_arrow().cast(SOURCE_CURSORS)


def stored_cursor_text(store: Store, source: str) -> str | None:
    """The cursor the last successful run of `source` read up to, as stored (None: none yet)."""
    cursors = stored_cursors(store).filter(pc.field("source") == source).column("cursor").to_pylist()
    return cursors[0] if cursors else None


def stored_cursor(store: Store, source: str) -> Any | None:
    """The cursor the last successful run of `source` read up to, decoded (None: none yet)."""
    text = stored_cursor_text(store, source)
    return None if text is None else decode_cursor(text)


__all__ = ["decode_cursor", "encode_cursor", "forget_cursors", "save_cursors", "stored_cursor", "stored_cursor_text"]


def save_cursors(store: Store, cursors: dict[str, str], run_id: str) -> None:
    """Record the cursors a run read up to (after its publish: a blocked or failed run never gets here)."""
    if not cursors:
        return
    rows = pa.Table.from_pylist([{"source": name, "cursor": cursor, "run_id": run_id}
                                 for name, cursor in sorted(cursors.items())], schema=SOURCE_CURSORS)
    stored = stored_cursors(store)
    others = pc.invert(pc.is_in(stored.column("source"), value_set=rows.column("source")))
    rows = pa.concat_tables([stored.filter(others), rows])
    table = store.db.create_table(CURSORS_TABLE, data=rows, mode="overwrite")
    # Only the newest state is ever read: old versions' files would pile up, one per run.
    table.optimize(cleanup_older_than=timedelta(seconds=1))


def forget_cursors(store: Store) -> None:
    """Drop every cursor: the next ingest reads each sql source in full (after a rollback the
    restored `documents` are older than the cursors)."""
    if store.has(CURSORS_TABLE):
        store.db.drop_table(CURSORS_TABLE)
