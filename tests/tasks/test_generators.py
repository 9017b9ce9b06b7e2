"""Query generators as plain functions: heading, ict, and the configured list."""

from __future__ import annotations

import random

import pytest

from kbflow.config import ConfigError, DatasetsConfig
from kbflow.tasks.generators import HeadingGenerator, IctGenerator, Passage, make_generators


def passage(text: str, heading: str = "", chunk_id: str = "c1", doc_id: str = "d1") -> Passage:
    return Passage(chunk_id, doc_id, "docs", heading, text)


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
