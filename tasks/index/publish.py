"""Publish: the new `documents` rows, and the one commit per table that makes a run visible.

A document that could not be parsed or failed the documents suite is recorded
as `quarantined` with its new content hash (so it is not retried until it
changes again); its last good chunks, if any, stay searchable.

Embedded chunks are staged batch by batch in a local Lance table (`StagedChunks`)
and streamed from there into the one `chunks` commit, so a run holds one batch of
chunks in memory, not the corpus. The staging is the run's scratch space: a
killed run leaves the index untouched, and the next run removes the leftovers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import StoreConfig
from kbflow.schemas import DOCUMENTS, chunks_schema, vector_matrix
from kbflow.store import CHUNKS, Published, Store

STAGING_DIR = ".staging"  # inside a local store; never a LanceDB table of the store itself
PUBLISH_BATCH_ROWS = 4096  # rows per batch streamed from the staging into the commit
# Vectors of the run's most recently staged distinct texts kept for reuse (~12 MB at 384 d).
# Not a scan of the staging table: that scan's memory grows with the staging, a bounded
# map does not, and repeated text (boilerplate) keeps itself among the recent ones.
RECENT_VECTORS = 8192


class StagedChunks:
    """The run's embedded chunks, spilled to a local Lance table until the one publish commit.

    Also the run's own embedding cache: a text embedded in one of the run's recent
    batches (the last RECENT_VECTORS distinct texts) is found here and not embedded again.
    """

    def __init__(self, store: StoreConfig, run_id: str, dim: int) -> None:
        if store.is_local:
            root = Path(store.uri) / STAGING_DIR
            shutil.rmtree(root, ignore_errors=True)  # a killed run's leftovers (we hold the writer lock)
            root.mkdir(parents=True)
            self.path = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=root))
        else:
            self.path = Path(tempfile.mkdtemp(prefix=f"kbflow-staging-{run_id}-"))
        self.run_id, self.schema = run_id, chunks_schema(dim)
        self.staging = Store.from_uri(str(self.path))
        self.num_rows = 0
        self._recent: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def add(self, chunks: pa.Table) -> None:
        """Stage a batch of embedded chunks, stamped with the run."""
        if chunks.num_rows == 0:
            return
        stamped = chunks.append_column("run_id", pa.array([self.run_id] * chunks.num_rows, pa.string()))
        stamped = stamped.select(self.schema.names).cast(self.schema)
        self.staging.add_rows(CHUNKS, stamped)
        self.num_rows += stamped.num_rows
        vectors = vector_matrix(stamped.column("vector"))
        for model, text_hash, vector in zip(stamped.column("model").to_pylist(),
                                            stamped.column("text_hash").to_pylist(), vectors):
            self._recent[(model, text_hash)] = vector.copy()  # not a view: the batch is freed
            self._recent.move_to_end((model, text_hash))
        while len(self._recent) > RECENT_VECTORS:
            self._recent.popitem(last=False)

    def cached_vectors(self, model: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors this run recently computed for these text hashes."""
        found = {}
        for text_hash in text_hashes:
            if (model, text_hash) in self._recent:
                self._recent.move_to_end((model, text_hash))  # repeated text stays recent
                found[text_hash] = self._recent[(model, text_hash)]
        return found

    def rows(self) -> pa.Table | pa.RecordBatchReader:
        """What to commit: a stream of the staged chunks, or an empty table when none were staged."""
        if self.num_rows == 0:
            return self.schema.empty_table()
        batches = self.staging.chunk_batches(self.schema.names, PUBLISH_BATCH_ROWS)
        return pa.RecordBatchReader.from_batches(self.schema, (batch.cast(self.schema) for batch in batches))

    def __enter__(self) -> StagedChunks:
        return self

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def build_document_rows(
    to_parse: pa.Table,
    documents: pa.Table,
    chunks: pa.Table,
    quarantined_doc_ids: set[str],
    previous: pa.Table,
    run_id: str,
) -> tuple[pa.Table, list[str]]:
    """`documents` rows of new/changed documents, and the ids of those whose old chunks go.

    Called per batch: `to_parse` are the batch's items, `documents` its parsed documents
    (for titles), `chunks` its published chunks; `previous` is the `documents` rows before
    this run (for first_run_id and the chunk count a quarantined document keeps).
    """
    titles = dict(zip(documents.column("doc_id").to_pylist(), documents.column("title").to_pylist()))
    # Only this batch's documents: called once per batch, this stays linear in the documents.
    previous = previous.filter(pc.is_in(previous.column("doc_id"), value_set=to_parse.column("doc_id")))
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


@dataclass
class AclChanges:
    """Documents whose content is unchanged but whose ACL changed: metadata to update, nothing to embed."""

    acl: dict[str, list[str] | None]  # doc_id -> its new ACL
    documents: pa.Table  # their `documents` rows with the new ACL (DOCUMENTS)


def find_acl_changes(items: pa.Table, documents: pa.Table, run_id: str) -> AclChanges:
    """The discovered `items` whose content hash equals their `documents` row's but whose ACL differs.

    A document whose content changed is re-parsed and carries its new ACL anyway; one whose ACL
    alone changed keeps its chunks and vectors, relabelled in the run's publish.
    """
    known = {row["doc_id"]: row for row in documents.to_pylist()}
    changed: dict[str, list[str] | None] = {}
    for doc_id, content_hash, acl in zip(items.column("doc_id").to_pylist(), items.column("content_hash").to_pylist(),
                                         items.column("acl").to_pylist()):
        old = known.get(doc_id)
        if old is not None and old["content_hash"] == content_hash and _principals(old["acl"]) != _principals(acl):
            changed[doc_id] = acl
    rows = [{**known[doc_id], "acl": acl, "last_run_id": run_id} for doc_id, acl in changed.items()]
    return AclChanges(changed, pa.Table.from_pylist(rows, schema=DOCUMENTS))


def _principals(acl: list[str] | None) -> tuple[str, ...]:
    return tuple(sorted(set(acl or ())))


@task(name="publish", cache_policy=NO_CACHE)
def publish(
    store: Store, staged: StagedChunks | None, document_rows: pa.Table, replaced_doc_ids: list[str],
    acl_changes: AclChanges | None = None, run_id: str | None = None,
) -> Published:
    """Commit the staged chunks (streamed, one commit) and the ACL changes, then the documents, to the store.

    Without `staged` (a run whose only changes are ACLs) the chunks commit only relabels: nothing embedded.
    """
    acl = acl_changes.acl if acl_changes else None
    if acl_changes is not None:
        document_rows = pa.concat_tables([document_rows, acl_changes.documents])
    if staged is None:
        return store.publish(run_id, pa.table({}), document_rows, replaced_doc_ids, acl)
    return store.publish(staged.run_id, staged.rows(), document_rows, replaced_doc_ids, acl)
