"""The store: LanceDB tables `chunks`, `documents`, `runs` and `quarantine`, split by job.

- `tables`: the connection and generic table access;
- `filters`: typed row filters (tenant, ACL principals, ids) and the one place they become predicates;
- `reads`: documents, chunks, nearest / best-matching chunks, the embedding cache;
- `publish`: a run's atomic commits (chunks, then documents, each tagged with the run);
- `maintenance`: indexes, optimize and cleanup, tags, restore (rollback) and whole-table switch (reindex);
- `runlog`: the run log and quarantine.

`Store` is all of them over one connection: what flows, tasks and the CLI open.
"""

from __future__ import annotations

from kbflow.store.filters import ACL_COLUMN, RowFilter
from kbflow.store.publish import Published, Publishing
from kbflow.store.reads import SEARCH_COLUMNS, IndexReads
from kbflow.store.runlog import QUARANTINE_KEY, new_run_id
from kbflow.store.tables import CHUNKS, DOCUMENTS_TABLE, QUARANTINE_TABLE, RUNS_TABLE, NoStore, StoreEmpty

ACTIVE = RowFilter(status="active")  # documents with chunks in the index (not quarantined)

__all__ = [
    "ACL_COLUMN", "ACTIVE", "CHUNKS", "DOCUMENTS_TABLE", "QUARANTINE_KEY", "QUARANTINE_TABLE", "RUNS_TABLE", "SEARCH_COLUMNS",
    "NoStore", "Published", "RowFilter", "Store", "StoreEmpty", "new_run_id",
]


class Store(IndexReads, Publishing):
    """Access to one kbflow store (a LanceDB database): reads, publish, maintenance, run log."""
