"""Query generators as plain functions: heading, ict, and the configured list."""

from __future__ import annotations

import random

import pytest

from kbflow.config import ConfigError, DatasetsConfig
from kbflow.tasks.datasets.generators import HeadingGenerator, IctGenerator, make_generators
from kbflow.tasks.datasets.pairs import Passage


def passage(text: str, heading: str = "", chunk_id: str = "c1", doc_id: str = "d1", title: str = "") -> Passage:
    return Passage(chunk_id, doc_id, "docs", heading, text, title)


def test_heading_generator_asks_one_question_per_section_and_skips_structural_headings():
    generator = HeadingGenerator(min_query_tokens=3)
    passages = [
        passage("Stop the server, then restore.", "Backup and Restore > Restoring the Dump", "c1"),
        passage("More of the same section.", "Backup and Restore > Restoring the Dump", "c2"),
        passage("Generic.", "Backup and restore > Overview", "c3"),
        passage("Only a heading.", "Part III. Server Administration", "c4"),
        passage("A synopsis.", "Synopsis", "c5"),
        passage("No heading at all.", "", "c6"),
        passage("Print the commands sent to the server.", "Options", "c7", "d2", title="vacuumdb"),
        passage("Run VACUUM FULL.", "Options > -f --full", "c8", "d2", title="vacuumdb"),
    ]
    pairs = generator.generate(passages, random.Random(0))
    assert [(p.query, p.chunk_id, p.generator) for p in pairs] == [
        ("How do I restore the dump?", "c1", "heading"),
        ("What options does vacuumdb accept?", "c7", "heading"),  # the title names the subject
        ("What does the -f (--full) option of vacuumdb do?", "c8", "heading"),
    ]
    assert pairs[0].positive == "Stop the server, then restore."
    assert all(pair.query.endswith("?") for pair in pairs)


TEXT = ("Backups run nightly at two in the morning. They keep fourteen snapshots on the backup disk. "
        "Restore needs a stopped server and a snapshot id.")


def test_ict_generator_takes_a_sentence_out_unless_it_keeps_it():
    removed = IctGenerator(keep_sentence=0.0, min_query_tokens=3).generate([passage(TEXT)], random.Random(1))[0]
    assert removed.query in TEXT and removed.query not in removed.positive
    assert len(removed.positive) < len(TEXT)
    kept = IctGenerator(keep_sentence=1.0, min_query_tokens=3).generate([passage(TEXT)], random.Random(1))[0]
    assert kept.positive == TEXT and kept.query == removed.query
    # One sentence only, or only table rows: no pair.
    assert IctGenerator(0.1, 3).generate([passage("Just one sentence here about backups.")], random.Random(0)) == []
    assert IctGenerator(0.1, 3).generate([passage("| a | b c d |\n| e | f g h |")], random.Random(0)) == []


@pytest.mark.parametrize("seed", range(8))
def test_ict_queries_are_whole_informative_sentences_never_code_or_fragments(seed):
    text = ("The archive command copies each finished WAL segment to the archive.\n\n"
            "archive_command = 'cp %p /mnt/server/archivedir/%f'\n\n"
            "SELECT pg_switch_wal();\n\n"
            "and then the rest of it\n\n"
            "See Section 26.3.")
    pairs = IctGenerator(0.0, 3).generate([passage(text)], random.Random(seed))
    assert [pair.query for pair in pairs] == ["The archive command copies each finished WAL segment to the archive."]


def test_ict_sentences_run_on_past_e_g_and_i_e():
    # The Python tutorial gave "If the expression is a tuple (e.g." as a query.
    text = ("If the expression is a tuple (e.g. the one a comma makes), the result is a tuple as well.\n"
            "Two or more string literals (i.e. the ones next to each other) are joined automatically.")
    queries = {IctGenerator(0.0, 3).generate([passage(text)], random.Random(seed))[0].query for seed in range(6)}
    assert queries == {"If the expression is a tuple (e.g. the one a comma makes), the result is a tuple as well.",
                       "Two or more string literals (i.e. the ones next to each other) are joined automatically."}


def test_ict_joins_hard_wrapped_lines_into_one_query():
    text = "The server listens on port\n8420 by default for clients. Change it with the port flag please."
    pair = IctGenerator(0.0, 3).generate([passage(text)], random.Random(3))[0]
    assert "\n" not in pair.query


def test_llm_generator_needs_an_endpoint():
    with pytest.raises(ConfigError, match="datasets.llm.base_url"):
        make_generators(DatasetsConfig(generators=["heading", "llm"]))
    assert [g.name for g in make_generators(DatasetsConfig(generators=["ict", "heading"]))] == ["ict", "heading"]
    # `labeled` pairs come from labeled records, not passages: the flow adds them.
    assert [g.name for g in make_generators(DatasetsConfig())] == ["heading", "ict"]
