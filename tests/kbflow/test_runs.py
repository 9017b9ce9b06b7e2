from __future__ import annotations

import json

from kbflow.runs import quality_summary


def test_a_quality_summary_is_shown_under_the_run_asked_for(tmp_path):
    # `kbflow quality --run <reindex run>` printed "run <staging ingest run>": the results file
    # a reindex keeps was written by its staging ingest, under that run's id.
    results = tmp_path / "staged.json"
    results.write_text(json.dumps({"run_id": "staged", "success": True, "suites": [{"name": "documents"}]}))
    summary = quality_summary({"run_id": "reindex", "quality_results": str(results), "dq_success": True})
    assert summary == {"run_id": "reindex", "success": True, "suites": [{"name": "documents"}]}
    assert quality_summary({"run_id": "none", "dq_success": None}) == {"run_id": "none", "success": None, "suites": []}
