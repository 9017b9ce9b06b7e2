"""Lineage: from a chunk back to its document, source, the run that wrote it and the table version."""

from __future__ import annotations

from typing import Any

from kbflow.config import KbflowConfig
from kbflow.errors import NotFound
from kbflow.store import CHUNKS, DOCUMENTS_TABLE, Store, sql_string


def trace_chunk(config: KbflowConfig, chunk_id: str) -> dict[str, Any]:
    """`kbflow trace`: chunk -> document (uri, content hash) -> source -> run -> table version."""
    store = Store.existing(config.store)
    chunk = store.row(CHUNKS, f"chunk_id = {sql_string(chunk_id)}", exclude=("vector",))
    if chunk is None:
        raise NotFound(f"no chunk {chunk_id!r} in {store.uri}")
    document = store.row(DOCUMENTS_TABLE, f"doc_id = {sql_string(chunk['doc_id'])}")
    source = next((s for s in config.sources if s.name == chunk["source"]), None)
    run = store.run(chunk["run_id"])
    tags = store.tags(CHUNKS)
    return {
        "chunk": {k: chunk[k] for k in ("chunk_id", "ordinal", "heading", "text_hash", "n_tokens", "model", "run_id")},
        "document": None if document is None else {
            **{k: document[k] for k in ("doc_id", "uri", "content_hash", "title", "status", "n_chunks")},
            # a sql row lives in its database, not in a file: its uri says where
            "path": None if source is None else source.document_path(document["uri"]),
        },
        "source": None if source is None else source.described(),
        "run": None if run is None else {
            k: run[k] for k in ("run_id", "flow", "status", "started_at", "prefect_flow_run_id", "quality_results")
        },
        "table_version": tags.get(chunk["run_id"], {}).get("version"),
    }
