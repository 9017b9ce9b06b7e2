"""Dataset rows from the index: the snapshot's passages and its vector query."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kbflow.config import StoreConfig
from kbflow.schemas import CHUNKED, DOCUMENTS
from kbflow.store import RowFilter, Store, new_run_id
from kbflow.tasks.datasets.snapshot import read_index, strip_heading
from kbflow.tasks.index.embed import vector_column


def test_strip_heading_removes_only_the_heading_line():
    assert strip_heading("Backup > Restore\nStop the server first.", "Backup > Restore") == "Stop the server first."
    assert strip_heading("No heading here.", "") == "No heading here."
    assert strip_heading("Other\ntext", "Backup") == "Other\ntext"


DIM = 16


def indexed_store(tmp_path, rows: int) -> Store:
    """A store whose chunks (random unit vectors) are past vector_index_min_rows: searched through an ANN index."""
    store = Store(StoreConfig(uri=str(tmp_path / "db"), vector_index_min_rows=256))
    run_id = new_run_id()
    chunks = [{"chunk_id": f"c-{i:04d}", "doc_id": f"d-{i // 10}", "source": "s", "uri": f"d-{i // 10}.md",
               "tenant": "t", "ordinal": i % 10, "heading": "", "text": f"text {i}", "text_hash": f"h-{i}",
               "n_tokens": 2, "metadata": "{}"} for i in range(rows)]
    vectors = np.random.default_rng(7).standard_normal((rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = (pa.Table.from_pylist(chunks, schema=CHUNKED).append_column("vector", vector_column(vectors, DIM))
             .append_column("model", pa.array(["m"] * rows)).append_column("run_id", pa.array([run_id] * rows)))
    documents = sorted({(c["doc_id"], c["uri"]) for c in chunks})
    store.publish(run_id, table, pa.Table.from_pylist(
        [{"doc_id": d, "source": "s", "tenant": "t", "uri": uri, "content_hash": d, "status": "active", "n_chunks": 10,
          "first_run_id": run_id, "last_run_id": run_id} for d, uri in documents], schema=DOCUMENTS), [])
    return store


def test_snapshot_search_scores_are_exact_cosines_past_the_ann_threshold(tmp_path):
    # The miner compares a candidate's score with an exact floor (the positive's own cosine): the
    # snapshot must query like `kbflow search` (ANN-tuned, exact re-rank), not raw PQ approximations.
    store = indexed_store(tmp_path, 300)
    assert [i for i in store.table("chunks").list_indices() if i.columns == ["vector"]]  # an ANN index is used
    index = read_index(store, "m")
    query = index.vector("c-0042")
    hits = index.search(query, RowFilter(exclude_doc_ids=["d-4"]), 10)
    assert len(hits) == 10 and all(hit["doc_id"] != "d-4" for hit in hits)
    for hit in hits:
        assert hit["score"] == pytest.approx(float(query @ index.vector(hit["chunk_id"])), abs=1e-5)
