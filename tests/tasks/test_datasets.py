"""Dataset tasks as plain functions: generators, splits, relevant ids, hygiene, writing."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from kbflow.config import ConfigError, DatasetsConfig
from kbflow.schemas import dataset_schema
from kbflow.tasks import datasets
from kbflow.tasks.datasets import (
    GROUP,
    SPLIT,
    HeadingGenerator,
    IctGenerator,
    clean_rows,
    make_generators,
    read_split,
    relevant_lookup,
    resolve_relevant,
    split_of,
    strip_heading,
    write_dataset,
)
from kbflow.tasks.generators import Passage

from fakes import WhitespaceTokenizer


def passage(text: str, heading: str = "", chunk_id: str = "c1", doc_id: str = "d1") -> Passage:
    return Passage(chunk_id, doc_id, "docs", heading, text)


def test_strip_heading_removes_only_the_heading_line():
    assert strip_heading("Backup > Restore\nStop the server first.", "Backup > Restore") == "Stop the server first."
    assert strip_heading("No heading here.", "") == "No heading here."
    assert strip_heading("Other\ntext", "Backup") == "Other\ntext"


def test_heading_generator_one_query_per_section_skipping_short_and_generic_headings():
    generator = HeadingGenerator(min_query_tokens=3)
    passages = [
        passage("Stop the server, then restore.", "Backup and restore > Restoring", "c1"),
        passage("More of the same section.", "Backup and restore > Restoring", "c2"),
        passage("Too short a heading.", "Backups", "c3"),
        passage("Generic.", "Backup and restore > Overview", "c4"),
        passage("No heading at all.", "", "c5"),
    ]
    pairs = generator.generate(passages, random.Random(0))
    assert [(p.query, p.chunk_id, p.generator) for p in pairs] == [("Backup and restore > Restoring", "c1", "heading")]
    assert pairs[0].positive == "Stop the server, then restore."


def test_ict_generator_takes_a_sentence_out_unless_it_keeps_it():
    text = "Backups run nightly at two. They keep fourteen snapshots on disk. Restore needs a stopped server."
    removed = IctGenerator(keep_sentence=0.0, min_query_tokens=3).generate([passage(text)], random.Random(1))[0]
    assert removed.query in text and removed.query not in removed.positive
    assert len(removed.positive) < len(text)
    kept = IctGenerator(keep_sentence=1.0, min_query_tokens=3).generate([passage(text)], random.Random(1))[0]
    assert kept.positive == text and kept.query == removed.query
    # One sentence only, or only table rows: no pair.
    assert IctGenerator(0.1, 3).generate([passage("Just one sentence here.")], random.Random(0)) == []
    assert IctGenerator(0.1, 3).generate([passage("| a | b c d |\n| e | f g h |")], random.Random(0)) == []


def test_ict_joins_hard_wrapped_lines_into_one_query():
    text = "The server listens on port\n8420 by default for clients. Change it with the port flag please."
    pair = IctGenerator(0.0, 3).generate([passage(text)], random.Random(3))[0]
    assert "\n" not in pair.query


def test_llm_generator_needs_an_endpoint():
    with pytest.raises(ConfigError, match="datasets.llm.base_url"):
        make_generators(DatasetsConfig(generators=["heading", "llm"]))
    assert [g.name for g in make_generators(DatasetsConfig(generators=["ict", "heading"]))] == ["ict", "heading"]


def test_split_of_is_stable_seeded_and_follows_the_shares():
    groups = [f"doc-{n}" for n in range(2000)]
    splits = [split_of(g, 42, 0.1, 0.2) for g in groups]
    assert splits == [split_of(g, 42, 0.1, 0.2) for g in groups]
    assert 0.17 < splits.count("test") / 2000 < 0.23 and 0.07 < splits.count("validation") / 2000 < 0.13
    assert splits != [split_of(g, 7, 0.1, 0.2) for g in groups]
    assert {split_of(g, 42, 0.0, 0.0) for g in groups} == {"train"}


def test_resolve_relevant_matches_doc_id_uri_source_path_and_file_name():
    documents = pa.table({
        "doc_id": ["a", "b", "c"],
        "source": ["docs", "docs", "support"],
        "uri": ["manual/backup.md", "faq/general.txt", "answers.jsonl#sa-1"],
    })
    lookup = relevant_lookup(documents)
    assert resolve_relevant(["manual/backup.md"], lookup) == ["a"]
    assert resolve_relevant(["backup.md", "docs/faq/general.txt"], lookup) == ["a", "b"]
    assert resolve_relevant(["c", "answers.jsonl"], lookup) == ["c"]  # a records file is not one document
    assert resolve_relevant(["missing.md"], lookup) == []


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
    monkeypatch.setattr(datasets, "split_of", lambda group, *_: {"d1": "train", "d2": "test"}[group])
    table = pairs_table([
        {"id": "1", "doc": "d2", "anchor": "how to restore a nightly backup snapshot quickly"},
        {"id": "2", "doc": "d1", "anchor": "how to restore a nightly backup snapshot fast"},
    ])
    cleaned, dropped, _ = clean_rows("embedding-pairs", table, WhitespaceTokenizer(), 64, config)
    assert dropped["cross_split_duplicate"] == 1
    assert cleaned.column("query_id").to_pylist() == ["2"] and cleaned.column(SPLIT).to_pylist() == ["train"]


def test_write_dataset_swaps_in_whole_or_leaves_the_previous(tmp_path, monkeypatch):
    table = pa.table({"x": [1]})
    splits = {"train": table, "validation": table.slice(0, 0), "test": table.slice(0, 0)}
    target = tmp_path / "sets" / "sft"
    (target / "manifest.json").parent.mkdir(parents=True)
    (target / "manifest.json").write_text("{}")  # an older build
    write_dataset(splits, target, {"kind": "sft"}, "card one")
    assert (target / "README.md").read_text() == "card one"
    assert json.loads((target / "manifest.json").read_text())["kind"] == "sft"
    # A split without rows has no file (datasets cannot load a zero-row Parquet file); it reads as empty.
    assert sorted(p.name for p in (target / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert read_split(target, "test").num_rows == 0 and read_split(target, "test").schema == table.schema
    assert not list(target.parent.glob(".sft.*"))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.pq, "write_table", crash)
    with pytest.raises(OSError):
        write_dataset(splits, target, {"kind": "sft"}, "card two")
    assert (target / "README.md").read_text() == "card one"
    assert (target / "data" / "train-00000-of-00001.parquet").is_file()
