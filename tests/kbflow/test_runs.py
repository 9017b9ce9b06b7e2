from __future__ import annotations

import io
import json

from rich.console import Console

from kbflow.cli.inspect import runs_table
from kbflow.quarantine import Quarantined, quarantine_counts, quarantine_phrase
from kbflow.runs import decoded_run, quality_summary


def test_a_quality_summary_is_shown_under_the_run_asked_for(tmp_path):
    # `kbflow quality --run <reindex run>` printed "run <staging ingest run>": the results file
    # a reindex keeps was written by its staging ingest, under that run's id.
    results = tmp_path / "staged.json"
    results.write_text(json.dumps({"run_id": "staged", "success": True, "suites": [{"name": "documents"}]}))
    summary = quality_summary({"run_id": "reindex", "quality_results": str(results), "dq_success": True})
    assert summary == {"run_id": "reindex", "success": True, "suites": [{"name": "documents"}]}
    assert quality_summary({"run_id": "none", "dq_success": None}) == {"run_id": "none", "success": None, "suites": []}


def test_a_run_that_set_rows_aside_is_told_apart_from_a_blocked_one():
    published = {"run_id": "a", "status": "published", "dq_success": False, "dq_failures": "[]",
                 "documents": '{"quarantined": 1}', "chunks": "{}"}
    blocked = {**published, "run_id": "b", "status": "blocked", "dq_failures": '[{"suite": "run"}]'}
    runs = [decoded_run(run) for run in (
        published, blocked, {**published, "run_id": "c", "dq_success": True}, {**published, "run_id": "d", "dq_success": None})]
    assert [run["dq_outcome"] for run in runs] == ["set_aside", "blocked", "passed", None]
    assert runs[0]["dq_success"] is False  # the JSON key keeps its meaning: not every expectation passed
    shown = Console(width=80, record=True, file=io.StringIO())
    shown.print(runs_table([{**run, "flow": "ingest", "duration_s": 1.0, "stage_durations": {}} for run in runs]))
    rows = [line.split() for line in shown.export_text().splitlines()]
    marks = {row[0]: row[3] for row in rows if len(row) > 3 and row[0] in "abcd"}
    assert marks == {"a": "⚠", "b": "❌", "c": "✅", "d": "—"}


def test_quarantine_counts_name_documents_and_chunks():
    records = [Quarantined("docs", "a.md", "chunks", "too_long", doc_id="d", chunk_id=f"c{i}") for i in range(2)]
    records.append(Quarantined("docs", "b.md", "documents", "too_short", doc_id="e"))
    assert quarantine_counts(records) == {"documents": 2, "chunks": 2}
    assert quarantine_phrase(quarantine_counts(records)) == "2 documents (2 chunks)"
    assert quarantine_phrase(quarantine_counts(records[:1])) == "1 document (1 chunk)"
    assert quarantine_phrase({"documents": 0, "chunks": 0}) == "none"
