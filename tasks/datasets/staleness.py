"""Stale rows of a built dataset: what `kbflow dataset check` reports.

A row is stale when a chunk its text comes from (the kind's `chunk_columns`) or its
document was deleted from the index, or its document changed since the build (the
content hash in manifest.json against the `documents` table, or the labeled source as
it is now). Chunk ids are content-derived, so an edited passage is a deleted chunk.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from kbflow.config import KbflowConfig
from kbflow.dataset_files import SPLITS, read_split
from kbflow.errors import MissingFile
from kbflow.store import CHUNKS, Store
from kbflow.tasks.datasets.kinds import dataset_kind
from kbflow.tasks.datasets.labeled import content_hashes, read_labeled_records

STALE_EXAMPLES = 10


def find_stale_rows(dataset_dir: Path, config: KbflowConfig) -> dict[str, Any]:
    """Rows whose chunk or document was deleted, or whose document changed, since the build.

    Chunk ids are content-derived, so an edited passage is a deleted chunk. Documents are
    compared by the content hash the manifest recorded: index documents with the
    `documents` table, labeled records with their source as it is now.
    """
    dataset_dir = Path(dataset_dir)
    manifest_path = dataset_dir / "manifest.json"
    if not manifest_path.is_file():
        raise MissingFile(f"{dataset_dir} is not a kbflow dataset (no manifest.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    spec = dataset_kind(manifest["kind"])
    store = Store(config.store)
    chunk_ids = set(store.chunks(["chunk_id"]).column("chunk_id").to_pylist()) if store.has(CHUNKS) else set()
    documents = store.documents()
    current = dict(zip(documents.column("doc_id").to_pylist(), documents.column("content_hash").to_pylist()))
    if manifest.get("labeled_sources"):
        records, _ = read_labeled_records([config.source(name) for name in manifest["labeled_sources"]])
        current.update(content_hashes(records))
    recorded = manifest.get("documents", {})
    counts, examples = Counter(), []
    rows = 0
    for split in SPLITS:
        for row in read_split(dataset_dir, split).to_pylist():
            rows += 1
            doc_id = row["doc_id"]
            missing = [c for c in spec.dependencies(row) if c not in chunk_ids]
            if missing or doc_id not in current:
                reason = "deleted"
            elif recorded.get(doc_id) not in (None, current[doc_id]):
                reason = "changed"
            else:
                continue
            counts[reason] += 1
            if len(examples) < STALE_EXAMPLES:
                examples.append({"split": split, "id": row[spec.id_column], "doc_id": doc_id, "reason": reason,
                                 **({"missing_chunks": missing} if missing else {})})
    return {"stale": counts["deleted"] + counts["changed"], "rows": rows, "deleted": counts["deleted"],
            "changed": counts["changed"], "examples": examples}
