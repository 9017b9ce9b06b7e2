"""Index reads: documents and chunks, the nearest and best-matching chunks, the embedding cache.

The store stores and reads: its reads return rows (and LanceDB's raw `_distance` /
`_score`); ranking them (scores, hybrid fusion) is kbflow.search's. A `RowFilter`
(tenant, ACL principals, ids) is applied inside LanceDB before the top k are taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from kbflow.errors import ModelMismatch
from kbflow.schemas import DOCUMENTS, vector_matrix
from kbflow.store.filters import RowFilter, cached_vectors_predicate, where
from kbflow.store.tables import CHUNKS, DOCUMENTS_TABLE, Tables
from kbflow.vector_index import tune_vector_query

SEARCH_COLUMNS = ["chunk_id", "doc_id", "uri", "source", "tenant", "heading", "text"]


class IndexReads(Tables):
    """Reads of the `chunks` and `documents` tables."""

    def documents(self, sources: list[str] | None = None, rows: RowFilter | None = None) -> pa.Table:
        """The `documents` rows of the given sources (None: of every source) that `rows` keeps."""
        if sources is not None and not sources:
            found = None
        else:
            scope = rows if sources is None else replace(rows or RowFilter(), sources=sources)
            found = self._rows(DOCUMENTS_TABLE, scope)
        if found is None:
            return DOCUMENTS.empty_table()
        for name in DOCUMENTS.names:  # written by an older kbflow: its newer columns are null
            if name not in found.column_names:
                found = found.append_column(name, pa.nulls(found.num_rows, DOCUMENTS.field(name).type))
        return found.select(DOCUMENTS.names).cast(DOCUMENTS)

    def chunks(
        self, columns: Sequence[str], rows: RowFilter | None = None, version: int | None = None
    ) -> pa.Table:
        """The `chunks` rows that `rows` keeps (all by default), `columns` only; at `version` when given."""
        query = self._chunks_at(version).search()
        if (predicate := where(rows)) is not None:
            query = query.where(predicate)
        return query.select(list(columns)).limit(None).to_arrow()

    def chunk_batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Every `chunks` row, `columns` only, as a stream of record batches (flat memory)."""
        return self.table(CHUNKS).search().select(list(columns)).limit(None).to_batches(batch_rows)

    def nearest_chunks(
        self,
        vector: np.ndarray,
        k: int,
        rows: RowFilter | None = None,
        columns: Sequence[str] = SEARCH_COLUMNS,
        version: int | None = None,
    ) -> list[dict[str, Any]]:
        """The k chunks nearest `vector` by cosine `_distance`, among those `rows` keeps (filtered first).

        An ANN index (past `vector_index_min_rows`) is queried with the configured recall
        knobs (`tune_vector_query`: exact re-rank, probes); below it the scan is exact.
        """
        query = self._chunks_at(version).search(vector, vector_column_name="vector").distance_type("cosine")
        query = tune_vector_query(query, self.config, k)
        if (predicate := where(rows)) is not None:
            query = query.where(predicate, prefilter=True)
        # `_distance` selected explicitly: it silences Lance's scoring auto-projection warning.
        return query.select([*columns, "_distance"]).limit(k).to_arrow().to_pylist()

    def matching_chunks(
        self, text: str, k: int, rows: RowFilter | None = None, columns: Sequence[str] = SEARCH_COLUMNS
    ) -> list[dict[str, Any]]:
        """The k chunks best matching `text` by full-text BM25 `_score`, among those `rows` keeps (first)."""
        query = self.table(CHUNKS).search(text, query_type="fts")
        if (predicate := where(rows)) is not None:
            query = query.where(predicate, prefilter=True)
        return query.select([*columns, "_score"]).limit(k).to_arrow().to_pylist()

    def _chunks_at(self, version: int | None):
        """The chunks table, or a handle checked out at `version` (kept: a snapshot queries it often)."""
        if version is None:
            return self.table(CHUNKS)
        if version not in self._pinned:
            table = self.table(CHUNKS)
            table.checkout(version)
            self._pinned[version] = table
        return self._pinned[version]

    def cached_vectors(self, model: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of `model` for these text hashes (the embedding cache)."""
        wanted = sorted(set(text_hashes))
        if not wanted or not self.has(CHUNKS):
            return {}
        found = self._rows(CHUNKS, cached_vectors_predicate(model, wanted), columns=["text_hash", "vector"])
        if found.num_rows == 0:
            return {}
        return dict(zip(found.column("text_hash").to_pylist(), vector_matrix(found.column("vector"))))

    def index_model(self) -> str | None:
        """The model whose vectors the chunks table holds, if any."""
        if not self.has(CHUNKS):
            return None
        sample = self.db.open_table(CHUNKS).search().select(["model"]).limit(1).to_arrow()
        return sample.column("model")[0].as_py() if sample.num_rows else None

    def check_model(self, model: str) -> None:
        """Refuse to mix vectors: raise ModelMismatch if the index holds another model's."""
        indexed = self.index_model()
        if indexed not in (None, model):
            raise ModelMismatch(model, indexed)
