"""Publish: the new manifest rows, and the one commit per table that makes a run visible.

A document that could not be parsed or failed the documents suite is recorded
as `quarantined` with its new content hash (so it is not retried until it
changes again); its last good chunks, if any, stay searchable.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.schemas import DOCUMENTS, chunks_schema
from kbflow.store import Published, Store


def build_manifest(
    to_parse: pa.Table,
    documents: pa.Table,
    chunks: pa.Table,
    quarantined_doc_ids: set[str],
    previous: pa.Table,
    run_id: str,
) -> tuple[pa.Table, list[str]]:
    """Manifest rows of new/changed documents, and the ids of those whose old chunks go.

    `documents` are the parsed documents (for titles); `previous` is the manifest
    before this run (for first_run_id and the chunk count a quarantined document keeps).
    """
    titles = dict(zip(documents.column("doc_id").to_pylist(), documents.column("title").to_pylist()))
    before = {row["doc_id"]: row for row in previous.select(["doc_id", "first_run_id", "n_chunks"]).to_pylist()}
    chunk_counts = Counter(chunks.column("doc_id").to_pylist())
    rows, replaced = [], set()
    for item in to_parse.to_pylist():
        doc_id, old = item["doc_id"], before.get(item["doc_id"], {})
        is_quarantined = doc_id in quarantined_doc_ids
        if not is_quarantined:
            replaced.add(doc_id)
        rows.append(
            {
                **{name: item.get(name) for name in DOCUMENTS.names},
                "title": titles.get(doc_id),
                "status": "quarantined" if is_quarantined else "active",
                "n_chunks": old.get("n_chunks", 0) if is_quarantined else chunk_counts[doc_id],
                "first_run_id": old.get("first_run_id") or run_id,
                "last_run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=DOCUMENTS), sorted(replaced)


@task(name="publish", cache_policy=NO_CACHE)
def publish(
    store: Store, run_id: str, chunks: pa.Table, manifest_rows: pa.Table, replaced_doc_ids: list[str]
) -> Published:
    """Commit chunks (stamped with the run), then the manifest, to the store."""
    stamped = chunks.append_column("run_id", pa.array([run_id] * chunks.num_rows, pa.string()))
    stamped = stamped.cast(chunks_schema(stamped.schema.field("vector").type.list_size))
    return store.publish(run_id, stamped, manifest_rows, replaced_doc_ids)
