from __future__ import annotations

import numpy as np
import pyarrow as pa

from kbflow.config import StoreConfig
from kbflow.quarantine import Quarantined, quarantine_table
from kbflow.schemas import CHUNKED, DOCUMENTS, RUNS
from kbflow.store import Store, new_run_id
from kbflow.tasks.index.embed import vector_column


def chunk_rows(doc_id: str, texts: list[str], run_id: str, dim: int = 4) -> pa.Table:
    rows = [{"chunk_id": f"{doc_id}-{i}", "doc_id": doc_id, "source": "s", "uri": f"{doc_id}.md", "tenant": "t",
             "ordinal": i, "heading": "", "text": text, "text_hash": f"h-{text}", "n_tokens": 3, "metadata": "{}"}
            for i, text in enumerate(texts)]
    table = pa.Table.from_pylist(rows, schema=CHUNKED)
    vectors = np.eye(dim, dtype=np.float32)[np.arange(len(texts)) % dim]
    return (table.append_column("vector", vector_column(vectors, dim))
            .append_column("model", pa.array(["m"] * len(texts)))
            .append_column("run_id", pa.array([run_id] * len(texts))))


def document_rows(doc_ids: list[str], run_id: str) -> pa.Table:
    return pa.Table.from_pylist([{"doc_id": d, "source": "s", "uri": f"{d}.md", "content_hash": "c", "status": "active",
                                  "n_chunks": 1, "first_run_id": run_id, "last_run_id": run_id} for d in doc_ids],
                                schema=DOCUMENTS)


def test_publish_replaces_a_documents_chunks_in_one_tagged_commit(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db")))
    first = new_run_id()
    store.publish(first, chunk_rows("a", ["one", "two", "three"], first), document_rows(["a"], first), ["a"])
    second = new_run_id()
    published = store.publish(second, chunk_rows("a", ["one"], second), document_rows(["a"], second), ["a"])
    assert published.chunks_deleted == 2 and store.count("chunks") == 1
    chunks = store.table("chunks")
    assert {first, second} <= set(chunks.tags.list())
    assert chunks.tags.list()[second]["version"] == published.chunks_version
    assert store.count("documents") == 1


def test_a_switch_to_staging_names_the_switching_run_not_the_staging_one(tmp_path):
    # After `kbflow reindex` every chunk named the staging store's ingest run, deleted with it:
    # `kbflow trace` showed no run and no table version for any chunk.
    staging = Store(StoreConfig(uri=str(tmp_path / "staging")))
    staged = new_run_id()
    staging.publish(staged, chunk_rows("a", ["one", "two"], staged), document_rows(["a"], staged), ["a"])
    staging.add_run({"run_id": staged, "flow": "ingest", "status": "published"})
    store = Store(StoreConfig(uri=str(tmp_path / "db")))
    switch = new_run_id()
    versions = store.replace_with(staging, switch)
    assert set(store.chunks(["run_id"]).column("run_id").to_pylist()) == {switch}
    (document,) = store.documents().to_pylist()
    assert (document["first_run_id"], document["last_run_id"]) == (switch, switch)
    assert store.tags("chunks")[switch]["version"] == versions["chunks"]


def test_embedding_cache_is_keyed_by_model_and_text_hash(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db")))
    run_id = new_run_id()
    store.publish(run_id, chunk_rows("a", ["one", "two"], run_id), document_rows(["a"], run_id), ["a"])
    cached = store.cached_vectors("m", ["h-one", "h-missing"])
    assert list(cached) == ["h-one"] and cached["h-one"].shape == (4,)
    assert store.cached_vectors("other-model", ["h-one"]) == {}


def test_each_run_keeps_what_it_set_aside_and_all_runs_list_each_item_once(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db")))
    record = Quarantined("s", "bad.pdf", "parse", "corrupt_file", "EOF", doc_id="d", content_hash="c1")
    first, second = new_run_id(), new_run_id()
    assert store.add_quarantine(quarantine_table([record], first)) == 1
    assert store.add_quarantine(quarantine_table([record], first)) == 0  # a run's record is not added twice
    assert store.add_quarantine(quarantine_table([record], second)) == 1  # seen again by a later run
    assert [row["uri"] for row in store.quarantine(first)] == [row["uri"] for row in store.quarantine(second)] == ["bad.pdf"]
    (listed,) = store.quarantine()  # all runs: the item once, its newest record
    assert listed["run_id"] == second
    changed = Quarantined("s", "bad.pdf", "parse", "corrupt_file", "EOF", doc_id="d", content_hash="c2")
    assert store.add_quarantine(quarantine_table([changed], second)) == 1
    assert sorted(row["content_hash"] for row in store.quarantine()) == ["c1", "c2"]


def test_runs_are_listed_newest_first(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "db")))
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    for offset, run_id in ((0, "old"), (5, "new")):
        store.add_run({"run_id": run_id, "flow": "ingest", "status": "published",
                       "started_at": now + timedelta(seconds=offset), "documents": {"new": 1}})
    assert [run["run_id"] for run in store.runs()] == ["new", "old"]


def test_a_documents_table_from_an_older_kbflow_gains_change_token_on_its_next_write(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "store")))
    older = pa.schema([f for f in DOCUMENTS if f.name != "change_token"])
    store.db.create_table("documents", data=document_rows(["a", "b"], "old").select(older.names).cast(older))
    assert store.documents().column("change_token").to_pylist() == [None, None]  # read: null, not an error

    store.record_change_tokens({"a": "etag:1"})  # an unchanged object's new ETag
    assert "change_token" in store.table("documents").schema.names
    tokens = dict(zip(*(store.documents().column(n).to_pylist() for n in ("doc_id", "change_token"))))
    assert tokens == {"a": "etag:1", "b": None}

    fresh = tmp_path / "publish"
    store = Store(StoreConfig(uri=str(fresh)))
    store.db.create_table("documents", data=document_rows(["a"], "old").select(older.names).cast(older))
    run_id = new_run_id()
    rows = document_rows(["a"], run_id).set_column(DOCUMENTS.get_field_index("change_token"), "change_token",
                                                  pa.array(["etag:2"]))
    store.publish(run_id, chunk_rows("a", ["one"], run_id), rows, ["a"])
    assert store.documents().column("change_token").to_pylist() == ["etag:2"]


def test_a_runs_table_from_an_older_kbflow_gains_the_new_columns(tmp_path):
    from datetime import UTC, datetime

    store = Store(StoreConfig(uri=str(tmp_path / "store")))
    older = pa.schema([f for f in RUNS if f.name != "warnings"])
    first = {"run_id": "old", "status": "published", "started_at": datetime(2026, 1, 1, tzinfo=UTC)}
    store.db.create_table("runs", schema=older).add(pa.Table.from_pylist([first], schema=older))
    store.add_run({"run_id": "new", "flow": "ingest", "status": "no_change", "started_at": datetime.now(UTC),
                   "warnings": ["source 'docs' is empty"]})

    rows = {row["run_id"]: row for row in store.runs()}
    assert rows["old"]["warnings"] is None and rows["new"]["warnings"] == '["source \'docs\' is empty"]'
