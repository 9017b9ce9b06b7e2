"""kbflow.queries: the one reader of query files (search --queries, evaluate, datasets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbflow.queries import LabeledQuery, read_queries

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_read_queries_accepts_query_or_question_and_skips_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "a?", "relevant": ["a.md", "a.md", "b.md"]}\n\n'
                    '{"question": "b?", "relevant": "b.md", "answer": "..."}\n')
    assert read_queries(path) == [LabeledQuery("a?", ["a.md", "b.md"]), LabeledQuery("b?", ["b.md"])]


@pytest.mark.parametrize("line, problem", [
    ('{"query": "a?"}', "no \"relevant\" ids"),
    ('{"query": "a?", "relevant": []}', "no \"relevant\" ids"),
    ('{"relevant": ["a.md"]}', "\"query\""),
    ("not json", "not a JSON object"),
])
def test_bad_lines_are_named_by_number(tmp_path, line, problem):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "fine", "relevant": ["a.md"]}\n' + line + "\n")
    with pytest.raises(ValueError, match=f"q.jsonl:2: .*{problem}"):
        read_queries(path)


def test_the_example_question_file_is_a_search_queries_file():
    """Issue 15 #6: `kbflow search --queries examples/qa.jsonl` read only "query" lines."""
    lines = [json.loads(line) for line in (EXAMPLES / "qa.jsonl").read_text().splitlines() if line.strip()]

    queries = read_queries(EXAMPLES / "qa.jsonl", require_relevant=False)

    assert [q.query for q in queries] == [line.get("query") or line["question"] for line in lines]


def test_search_queries_need_no_relevant_ids(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "a?"}\n{"question": "b?"}\n')
    assert read_queries(path, require_relevant=False) == [LabeledQuery("a?", []), LabeledQuery("b?", [])]
    with pytest.raises(ValueError, match="q.jsonl:1: no \"relevant\" ids"):
        read_queries(path)
