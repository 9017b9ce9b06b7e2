"""Ingest in bounded batches: same index as one batch, one streamed commit, merged quality results.

Peak memory itself is measured by bench/memory_bench.py (1x vs 10x corpus); these
tests check what makes it bounded and that batching changes nothing a user sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from prefect import task
from prefect.cache_policies import NO_CACHE

import kbflow.flows.ingest
from kbflow import progress
from kbflow.config import load_config
from kbflow.flows.ingest import ingest
from kbflow.store import CHUNKS, Store
from kbflow.tasks.index.publish import STAGING_DIR

from conftest import write, write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")

LICENCE = "## Licence\n\nThis page is shared under the Lumen documentation licence, version two.\n"
TOPICS = ["ports", "storage", "backups", "restore", "billing", "refunds", "sync"]


def corpus(root, batch_documents: int) -> str:
    # One title for every page: a heading path starts with its page's title, so the licence section is the
    # same chunk text on every page only when the pages share it.
    files = {f"docs/{topic}.md": f"# Lumen Notes\n\n## {topic.title()}\n\nHow {topic} works in Lumen Notes, step by "
                                 f"step.\n\n{LICENCE}" for topic in TOPICS}
    files["docs/a-stub.txt"] = "tiny"  # fails min_document_chars: quarantined, in the first batch
    # the same, in the last batch; other bytes, or it would be an exact duplicate, indexed once and never parsed
    files["docs/zz-stub.txt"] = "tiny."
    write(root, files)
    source = '[[sources]]\nname = "docs"\nkind = "files"\npath = "docs/"\ntenant = "public"\n'
    # The licence is on every page: boilerplate, which ingest removes before chunking. Here it is the
    # text that repeats across batches and must be embedded once, so the boilerplate pass is off.
    no_boilerplate = "[chunking]\nboilerplate_min_share = 2\n"
    return str(write_config(root, source, f"[ingest]\nbatch_documents = {batch_documents}\n{no_boilerplate}"))


def index(config_path: str) -> dict:
    rows = lancedb.connect(load_config(config_path).store.uri).open_table(CHUNKS).to_arrow().to_pylist()
    return {row["chunk_id"]: (row["text"], np.asarray(row["vector"])) for row in rows}


def test_batches_build_the_same_index_as_one_batch_in_one_streamed_commit(tmp_path, hash_embedder, monkeypatch):
    single = corpus(tmp_path / "single", batch_documents=1000)
    one_batch = ingest(config_path=single)

    parsed_batches, commits, reports = [], [], []
    real_parse, real_commit = kbflow.flows.ingest.parse, Store._commit

    @task(name="parse", cache_policy=NO_CACHE)
    def recording_parse(items, sources):
        parsed_batches.append(items.num_rows)
        return real_parse.fn(items, sources)

    def recording_commit(self, name, rows, doc_ids, relabelled=None):
        commits.append((name, "stream" if isinstance(rows, pa.RecordBatchReader) else "table"))
        return real_commit(self, name, rows, doc_ids, relabelled)

    monkeypatch.setattr(kbflow.flows.ingest, "parse", recording_parse)
    monkeypatch.setattr(Store, "_commit", recording_commit)
    progress.listen(lambda stage, done, total: reports.append((stage, done, total)))
    hash_embedder.encoded.clear()
    try:
        batched = corpus(tmp_path / "batched", batch_documents=2)
        report = ingest(config_path=batched)
    finally:
        progress.listen(None)

    assert parsed_batches == [2, 2, 2, 2, 1]  # nine documents, at most two in memory at a time
    # One commit per table, the chunks streamed from the staging, not materialised.
    assert commits == [("chunks", "stream"), ("documents", "table")]
    assert report["status"] == "published"
    assert report["documents"] == one_batch["documents"] == {
        "new": 7, "changed": 0, "unchanged": 0, "deleted": 0,
            "quarantined": 2, "acl_changed": 0}  # the stubs: set aside, not new
    assert report["chunks"]["total"] == one_batch["chunks"]["total"]
    assert report["chunks"]["embedded"] == one_batch["chunks"]["embedded"]
    # The licence section repeats in every document: embedded once in the run, across batches.
    licence_chunks = {text for text, _ in index(batched).values() if "documentation licence" in text}
    assert len(licence_chunks) == 1, licence_chunks  # the same text on all seven pages
    assert [text for text, _ in index(batched).values()].count(*licence_chunks) == len(TOPICS)
    assert hash_embedder.encoded.count(*licence_chunks) == 1
    expected, actual = index(single), index(batched)
    assert set(actual) == set(expected)
    for chunk_id, (text, vector) in expected.items():
        assert actual[chunk_id][0] == text
        np.testing.assert_allclose(actual[chunk_id][1], vector, atol=1e-6)
    documents = [r for r in reports if r[0] == "documents"]
    assert documents[-1] == ("documents", 9, 9) and [d for _, d, _ in documents] == sorted(d for _, d, _ in documents)
    # The run's scratch space is gone.
    assert not any((Path(load_config(batched).store.uri) / STAGING_DIR).iterdir())


def test_per_batch_quality_results_add_up_to_one_entry_per_suite(tmp_path, hash_embedder):
    config_path = corpus(tmp_path, batch_documents=2)
    report = ingest(config_path=config_path)
    run = Store(load_config(config_path).store).run(report["run_id"])
    summary = json.loads(open(run["quality_results"]).read())
    assert [suite["name"] for suite in summary["suites"]] == ["documents", "chunks", "embeddings", "run"]
    documents = summary["suites"][0]
    stub_check = next(e for e in documents["expectations"]
                      if e["column"] == "n_chars" and not e["success"] and e["unexpected_count"])
    # One stub in the first batch, one in the last: both counted in the run's result.
    assert stub_check["unexpected_count"] == 2
    assert {example["uri"] for example in stub_check["examples"]} == {"a-stub.txt", "zz-stub.txt"}


def test_a_killed_runs_staging_is_removed_and_never_published(tmp_path, hash_embedder):
    config_path = corpus(tmp_path, batch_documents=3)
    store_dir = load_config(config_path).store.uri
    leftover = Path(store_dir) / STAGING_DIR / "20260101T000000Z-dead00-x"
    leftover.mkdir(parents=True)
    lancedb.connect(str(leftover)).create_table(CHUNKS, data=pa.table({"chunk_id": ["ghost"]}))
    report = ingest(config_path=config_path)
    assert report["status"] == "published"
    assert not leftover.exists()
    assert "ghost" not in index(config_path)


def test_a_run_that_only_adds_documents_appends_and_one_that_changes_them_merges(tmp_path, hash_embedder):
    config_path = corpus(tmp_path, batch_documents=4)
    first = ingest(config_path=config_path)
    before = index(config_path)
    write(tmp_path, {"docs/new.md": "## Webhooks\n\nWebhooks fire within a second of every change in Lumen.\n"})
    added = ingest(config_path=config_path)  # an append: nothing stored matches, nothing to delete
    after = index(config_path)
    assert set(before) < set(after) and added["chunks"]["total"] == first["chunks"]["total"] + 1
    write(tmp_path, {"docs/new.md": "## Webhooks\n\nWebhooks fire within two seconds of a change.\n"})
    changed = ingest(config_path=config_path)  # a merge: the old chunk of new.md goes
    assert changed["documents"]["changed"] == 1 and changed["chunks"]["deleted"] == 1
    assert changed["chunks"]["total"] == added["chunks"]["total"]
    assert set(index(config_path)) - set(after) and set(before) < set(index(config_path))
