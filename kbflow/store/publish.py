"""Publishing: the atomic commits of a run's chunks and documents, and other writes to the index tables.

Every write to `chunks` and to `documents` is one atomic LanceDB commit, tagged
with the run that made it. Chunks are committed before the documents, so a crash
between the two leaves the `documents` table saying "changed" and the next run redoes the
same work (with the vectors already stored reused): the store converges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.schemas import ACL, DOCUMENTS
from kbflow.store.filters import ACL_COLUMN, RowFilter, where
from kbflow.store.maintenance import Maintenance, maintain_acl_index
from kbflow.store.tables import CHUNKS, DOCUMENTS_TABLE, add_missing_columns


@dataclass
class Published:
    chunks_version: int | None
    documents_version: int | None
    chunks_deleted: int


class Publishing(Maintenance):
    """The writes of a run to `chunks` and `documents`."""

    def publish(
        self,
        run_id: str,
        chunks: pa.Table | pa.RecordBatchReader,
        document_rows: pa.Table,
        replaced_doc_ids: list[str],
        acl_changes: dict[str, list[str] | None] | None = None,
    ) -> Published:
        """Commit chunks, then documents; each one atomic commit tagged with the run.

        `chunks` (a table, or a non-empty stream in the table's column order, merged
        batch by batch) are the new chunks of new/changed documents; the old chunks of every
        document in `replaced_doc_ids` (changed or deleted) that are not among them are
        removed in the same commit. `document_rows` are upserted; `documents` rows of
        documents in `replaced_doc_ids` that are not among them are removed.
        `acl_changes` (doc_id -> its new ACL) relabel the stored chunks of documents whose
        text did not change, in the same chunks commit: their vectors are kept, nothing is embedded.
        """
        relabelled = self._relabelled_chunks(acl_changes) if acl_changes else None
        chunks_version, chunks_deleted = self._commit(CHUNKS, chunks, replaced_doc_ids, relabelled)
        if chunks_version is not None:
            chunks_version = self._maintain_indexes()
            self._tag(CHUNKS, run_id)
        documents_version, _ = self._commit(DOCUMENTS_TABLE, document_rows, replaced_doc_ids)
        if documents_version is not None:
            documents = self.db.open_table(DOCUMENTS_TABLE)
            maintain_acl_index(documents)
            documents_version = documents.version
            self._tag(DOCUMENTS_TABLE, run_id)
        if chunks_version is not None or documents_version is not None:
            self._optimize_after_publish()
        return Published(chunks_version, documents_version, chunks_deleted)

    def _relabelled_chunks(self, acl_changes: dict[str, list[str] | None]) -> pa.Table | None:
        """The stored chunks of these documents with their new ACL (all other columns as stored)."""
        if not self.has(CHUNKS):
            return None
        table = add_missing_columns(self.db.open_table(CHUNKS), pa.schema([pa.field(ACL_COLUMN, ACL)]))
        stored = self._rows(CHUNKS, RowFilter(doc_ids=sorted(acl_changes)))
        if stored is None or stored.num_rows == 0:
            return None
        acl = pa.array([acl_changes[doc_id] for doc_id in stored.column("doc_id").to_pylist()], ACL)
        return stored.set_column(stored.schema.get_field_index(ACL_COLUMN), ACL_COLUMN, acl).select(
            table.schema.names)

    def _commit(self, name: str, rows: pa.Table | pa.RecordBatchReader, doc_ids: list[str],
                relabelled: pa.Table | None = None) -> tuple[int | None, int]:
        """Upsert rows by key and drop the rest of `doc_ids`' rows: one commit.

        `rows` may be a RecordBatchReader. When none of `doc_ids` has chunks stored yet
        (a cold run, or only new documents), the commit is an append, which streams in
        flat memory; LanceDB's merge_insert holds memory in proportion to the rows it merges.
        `relabelled` are stored rows with a new ACL, upserted in the same commit.
        """
        streamed = isinstance(rows, pa.RecordBatchReader)
        if relabelled is not None and not streamed and rows.num_rows == 0:
            rows = relabelled  # an ACL-only change: the relabelled rows are the whole commit
        elif relabelled is not None:
            rows, streamed = _with_rows(rows, relabelled), True
        empty = not streamed and rows.num_rows == 0
        if empty and not doc_ids:
            return None, 0
        key = "chunk_id" if name == CHUNKS else "doc_id"
        if empty and not self.has(name):
            return None, 0
        table = self._table_or_create(name, rows.schema)
        add_missing_columns(table, DOCUMENTS if name == DOCUMENTS_TABLE else rows.schema)
        scope = where(RowFilter(doc_ids=doc_ids)) if doc_ids else None
        if empty:
            deleted = table.count_rows(scope)
            if deleted == 0:
                return None, 0
            table.delete(scope)
        elif name == CHUNKS and scope and relabelled is None and table.count_rows(scope) == 0:
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

    def record_change_tokens(self, tokens: dict[str, str]) -> None:
        """Store new change tokens of documents whose content did not change (one commit).

        An object re-uploaded with the same bytes gets a new ETag; recording it spares the
        next run another read of its body.
        """
        if not tokens:
            return
        rows = self.documents()
        rows = rows.filter(pc.is_in(rows.column("doc_id"), value_set=pa.array(list(tokens), pa.string())))
        if rows.num_rows == 0:
            return
        updated = rows.set_column(rows.schema.get_field_index("change_token"), "change_token",
                                  pa.array([tokens[d] for d in rows.column("doc_id").to_pylist()], pa.string()))
        table = add_missing_columns(self.db.open_table(DOCUMENTS_TABLE), DOCUMENTS)
        table.merge_insert("doc_id").when_matched_update_all().execute(updated.select(table.schema.names))

    def add_rows(self, name: str, rows: pa.Table) -> None:
        """Append rows to a table, creating it with their schema first (a run's staging store)."""
        if self.has(name):
            self.db.open_table(name).add(rows)
        else:
            self.db.create_table(name, data=rows)


def _with_rows(rows: pa.Table | pa.RecordBatchReader, more: pa.Table) -> pa.RecordBatchReader:
    """One stream of `rows`, then `more` (in `rows`' columns)."""
    schema = rows.schema
    more = more.select(schema.names).cast(schema)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from (rows if isinstance(rows, pa.RecordBatchReader) else rows.to_batches())
        yield from more.to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())
