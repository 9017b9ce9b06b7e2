"""Dataset hygiene as plain functions: splits by document, empty fields, PII, length, duplicates."""

from __future__ import annotations

import pyarrow as pa

from kbflow.config import DatasetsConfig
from kbflow.schemas import dataset_schema
from kbflow.tasks.datasets import hygiene
from kbflow.tasks.datasets.snapshot import GROUP, SPLIT
from kbflow.tasks.datasets.hygiene import clean_rows, split_of

from fakes import WhitespaceTokenizer


def test_split_of_is_stable_seeded_and_follows_the_shares():
    groups = [f"doc-{n}" for n in range(2000)]
    splits = [split_of(g, 42, 0.1, 0.2) for g in groups]
    assert splits == [split_of(g, 42, 0.1, 0.2) for g in groups]
    assert 0.17 < splits.count("test") / 2000 < 0.23 and 0.07 < splits.count("validation") / 2000 < 0.13
    assert splits != [split_of(g, 7, 0.1, 0.2) for g in groups]
    assert {split_of(g, 42, 0.0, 0.0) for g in groups} == {"train"}


def pairs_table(rows: list[dict]) -> pa.Table:
    schema = pa.schema([*dataset_schema("embedding-pairs", 1), (GROUP, pa.string())])
    full = [
        {"anchor": r["anchor"], "positive": r.get("positive", "a passage about things"), "negative_1": "another passage",
         "query_id": r["id"], "positive_chunk_id": "c-" + r["id"], "doc_id": r["doc"], "source": "docs",
         "generator": "ict", GROUP: r["doc"]}
        for r in rows
    ]
    return pa.Table.from_pylist(full, schema=schema)


def test_clean_rows_redacts_pii_and_drops_empty_long_and_duplicate_rows():
    config = DatasetsConfig(validation_share=0.0, test_share=0.0, seed=1)
    table = pairs_table([
        {"id": "1", "doc": "d1", "anchor": "mail jane.doe@example.org about the restore"},
        {"id": "2", "doc": "d1", "anchor": "how do I restore a snapshot"},
        {"id": "3", "doc": "d2", "anchor": "How do I restore a snapshot?"},  # exact after normalising
        {"id": "4", "doc": "d2", "anchor": "   "},
        {"id": "5", "doc": "d3", "anchor": "words " * 80},
    ])
    cleaned, dropped, pii = clean_rows("embedding-pairs", table, WhitespaceTokenizer(), 64, config)
    assert dropped == {"empty": 1, "pii": 0, "too_long": 1, "duplicate_exact": 1, "duplicate_near": 0,
                       "cross_split_duplicate": 0}
    assert pii == {"email": 1}
    assert cleaned.column("anchor").to_pylist() == ["mail [EMAIL] about the restore", "how do I restore a snapshot"]
    assert set(cleaned.column(SPLIT).to_pylist()) == {"train"}


def test_clean_rows_drops_a_near_duplicate_query_from_the_later_split(monkeypatch):
    config = DatasetsConfig(seed=1, near_duplicate_threshold=0.5)
    monkeypatch.setattr(hygiene, "split_of", lambda group, *_: {"d1": "train", "d2": "test"}[group])
    table = pairs_table([
        {"id": "1", "doc": "d2", "anchor": "how to restore a nightly backup snapshot quickly"},
        {"id": "2", "doc": "d1", "anchor": "how to restore a nightly backup snapshot fast"},
    ])
    cleaned, dropped, _ = clean_rows("embedding-pairs", table, WhitespaceTokenizer(), 64, config)
    assert dropped["cross_split_duplicate"] == 1
    assert cleaned.column("query_id").to_pylist() == ["2"] and cleaned.column(SPLIT).to_pylist() == ["train"]
