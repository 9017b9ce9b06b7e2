"""The store's upkeep: the ANN index's size thresholds and retraining, and optimize's retention window."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from kbflow.config import StoreConfig
from kbflow.schemas import CHUNKED, DOCUMENTS
from kbflow.search import vector_hits
from kbflow.store import Store, new_run_id
from kbflow.vector_index import sub_vectors_for, vector_index_name
from kbflow.tasks.index.embed import vector_column

DIM = 16


def chunks(doc_id: str, n: int, run_id: str, seed: int) -> pa.Table:
    rows = [{"chunk_id": f"{doc_id}-{i}", "doc_id": doc_id, "source": "s", "uri": f"{doc_id}.md", "tenant": "t",
             "ordinal": i, "heading": "", "text": f"text {doc_id} {i}", "text_hash": f"h-{doc_id}-{i}",
             "n_tokens": 3, "metadata": "{}"} for i in range(n)]
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return (pa.Table.from_pylist(rows, schema=CHUNKED).append_column("vector", vector_column(vectors, DIM))
            .append_column("model", pa.array(["m"] * n)).append_column("run_id", pa.array([run_id] * n)))


def documents(doc_id: str, run_id: str) -> pa.Table:
    return pa.Table.from_pylist([{"doc_id": doc_id, "source": "s", "uri": f"{doc_id}.md", "content_hash": run_id,
                                  "status": "active", "n_chunks": 1, "first_run_id": run_id, "last_run_id": run_id}],
                                schema=DOCUMENTS)


def publish(store: Store, doc_id: str, n: int, seed: int) -> str:
    run_id = new_run_id()
    store.publish(run_id, chunks(doc_id, n, run_id, seed), documents(doc_id, run_id), [doc_id])
    store.add_run({"run_id": run_id, "flow": "ingest", "status": "published", "started_at": datetime.now(UTC)})
    return run_id


def vector_indexes(store: Store) -> list:
    return [index for index in store.table("chunks").list_indices() if index.columns == ["vector"]]


def test_ann_index_is_built_at_the_threshold_fed_by_optimize_and_retrained_when_outgrown(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db"), vector_index_min_rows=256))
    publish(store, "a", 200, seed=1)
    assert vector_indexes(store) == []  # below the threshold: exact search

    publish(store, "b", 100, seed=2)  # 300 rows
    (index,) = vector_indexes(store)
    assert index.name == "vector_ivf_pq_p17" and index.index_type == "IvfPq"  # ~sqrt(300) partitions

    publish(store, "c", 50, seed=3)  # merged into the index by the publish's optimize, no retrain
    (index,) = vector_indexes(store)
    assert index.name == "vector_ivf_pq_p17" and index.num_unindexed_rows == 0 and index.num_indexed_rows == 350
    query = store.table("chunks").search().where("chunk_id = 'c-7'").select(["vector"]).to_arrow()
    hits = vector_hits(store, np.array(query.column("vector")[0].as_py()), 3)
    assert hits[0]["chunk_id"] == "c-7" and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)

    publish(store, "d", 900, seed=4)  # 1250 rows: sqrt says 35 partitions >= 2 x 17, so retrain
    assert [index.name for index in vector_indexes(store)] == ["vector_ivf_pq_p35"]


def test_hnsw_variant_is_built_and_searched_with_refine(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db"), vector_index_min_rows=256, vector_index_type="ivf_hnsw_sq"))
    publish(store, "a", 300, seed=5)
    assert [index.name for index in vector_indexes(store)] == ["vector_ivf_hnsw_sq_p4"]
    query = store.table("chunks").search().where("chunk_id = 'a-42'").select(["vector"]).to_arrow()
    hits = vector_hits(store, np.array(query.column("vector")[0].as_py()), 20)  # ef >= 20 * 30
    assert len(hits) == 20 and hits[0]["chunk_id"] == "a-42"


def test_hnsw_variant_and_index_sizing():
    hnsw = StoreConfig(vector_index_type="ivf_hnsw_sq")
    assert vector_index_name(hnsw, 1_000_000) == "vector_ivf_hnsw_sq_p250"
    assert vector_index_name(StoreConfig(), 1_000_000) == "vector_ivf_pq_p1000"
    assert [sub_vectors_for(StoreConfig(), dim) for dim in (384, 768, 100, 3)] == [48, 96, 25, 3]
    with pytest.raises(ValueError, match="must divide the vector dimension 384"):
        sub_vectors_for(StoreConfig(vector_index_sub_vectors=5), 384)


def test_optimize_keeps_runs_inside_the_retention_window_restorable(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db"), optimize_retention_days=1, keep_runs=1))
    runs = [publish(store, "a", 5 + i, seed=i) for i in range(3)]
    store.optimize()
    assert set(store.table("chunks").tags.list()) == set(runs)  # all inside the window
    store.restore(runs[0], new_run_id())
    assert store.count("chunks") == 5


def test_optimize_releases_runs_past_retention_and_reclaims_their_versions(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db"), optimize_retention_days=0, keep_runs=2))
    runs = [publish(store, "a", 5 + i, seed=i) for i in range(2)]
    time.sleep(1.5)  # cleanup spares a second before the oldest kept version: age the first runs past it
    runs += [publish(store, "a", 5 + i, seed=i) for i in range(2, 4)]  # each publish ran optimize
    table = store.table("chunks")
    assert set(table.tags.list()) == set(runs[-2:])
    assert min(version["version"] for version in table.list_versions()) == table.tags.list()[runs[-2]]["version"]
    with pytest.raises(LookupError, match="tagged"):
        store.restore(runs[0], new_run_id())
    store.restore(runs[-2], new_run_id())
    assert store.count("chunks") == 7
