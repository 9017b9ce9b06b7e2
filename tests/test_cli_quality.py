"""The CLI of the data-quality layer: quality, quarantine, trace, runs, the mass-deletion guard."""

from __future__ import annotations

import io
import json
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

from rich.console import Console

from kbflow.cli import app
from kbflow.cli.inspect import quality_table, runs_table

from conftest import write

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def kbflow(*args: str):
    return runner.invoke(app, list(args))


def ingest_json(config: Path, *extra: str) -> tuple[int, dict]:
    result = kbflow("ingest", "--config", str(config), "--json", *extra)
    return result.exit_code, json.loads(result.stdout)


def test_quality_reports_every_expectation_with_failures_first(small_corpus, hash_embedder):
    write(small_corpus.parent, {"docs/stub.txt": "tiny"})
    code, report = ingest_json(small_corpus)
    assert code == 0 and report["documents"]["quarantined"] == 1
    summary = json.loads(kbflow("quality", "--config", str(small_corpus), "--json").stdout)
    assert summary["run_id"] == report["run_id"] and summary["success"] is False
    assert [s["name"] for s in summary["suites"]] == ["documents", "chunks", "embeddings", "run"]
    documents = summary["suites"][0]
    assert documents["success"] is False
    failed = documents["expectations"][0]
    assert failed["success"] is False and failed["column"] == "n_chars" and failed["unexpected_count"] == 1
    assert failed["examples"] == [{"id": failed["examples"][0]["id"], "uri": "stub.txt", "value": 4}]
    for expectation in documents["expectations"]:
        assert {"type", "column", "success", "observed", "unexpected_count", "examples"} <= set(expectation)

    human = kbflow("quality", "--config", str(small_corpus))
    assert human.exit_code == 0 and "stub.txt" in human.stdout
    # Two checks of one column (n_chars >= 1, n_chars >= min_document_chars) used to read the same.
    columns = list(next(c for c in quality_table(documents).columns if c.header == "column").cells)
    assert "n_chars\n≥ 10 (min_document_chars)" in columns and "n_chars\n≥ 1" in columns
    # Issue 15 #12: an observed value (a run-level share) is in "observed", never in the "examples" column.
    run_suite = summary["suites"][-1]
    cells = {column.header: list(column.cells) for column in quality_table(run_suite).columns}
    for row, expectation in enumerate(run_suite["expectations"]):
        if not expectation["examples"]:
            assert cells["examples"][row] == "", expectation["column"]
        if expectation["observed"] is not None:
            assert cells["observed"][row] == str(expectation["observed"]), expectation["column"]

    docs = kbflow("quality", "--config", str(small_corpus), "--docs").stdout.strip().splitlines()[-1]
    assert docs.endswith("index.html") and Path(docs).is_file()
    assert ingest_json(small_corpus)[1]["status"] == "no_change"  # a run that validates nothing
    assert kbflow("quality", "--config", str(small_corpus), "--docs").stdout.strip().splitlines()[-1] == docs
    assert json.loads(kbflow("quality", "--config", str(small_corpus), "--json").stdout)["data_docs"] == docs

    rows = json.loads(kbflow("quarantine", "--config", str(small_corpus), "--run", report["run_id"], "--json").stdout)
    assert [(r["uri"], r["stage"]) for r in rows] == [("stub.txt", "quality:documents")]
    assert "n_chars" in rows[0]["reason"] and json.loads(rows[0]["detail"]) == {"n_chars": 4}


def test_trace_leads_from_a_chunk_to_its_source_and_run(small_corpus, hash_embedder):
    code, report = ingest_json(small_corpus)
    hit = json.loads(kbflow("search", "restore a snapshot", "--config", str(small_corpus), "--json").stdout)[0]
    lineage = json.loads(kbflow("trace", hit["chunk_id"], "--config", str(small_corpus), "--json").stdout)
    assert lineage["chunk"]["chunk_id"] == hit["chunk_id"] and lineage["chunk"]["run_id"] == report["run_id"]
    assert lineage["document"]["uri"] == "backup.md" and len(lineage["document"]["content_hash"]) == 64
    assert Path(lineage["document"]["path"]).read_text().startswith("# Backups")
    assert lineage["source"] == {"name": "docs", "kind": "files", "path": str(small_corpus.parent / "docs"),
                                 "tenant": "public"}
    assert lineage["run"]["run_id"] == report["run_id"] and lineage["run"]["prefect_flow_run_id"]
    assert isinstance(lineage["table_version"], int)
    missing = kbflow("trace", "nope", "--config", str(small_corpus))
    assert missing.exit_code == 1 and "no chunk 'nope'" in missing.stderr


def test_mass_deletion_is_blocked_with_exit_3_and_search_keeps_the_old_results(small_corpus, hash_embedder):
    total = ingest_json(small_corpus)[1]["chunks"]["total"]
    before = kbflow("search", "nightly backups", "--config", str(small_corpus), "--json").stdout
    for name in ("backup.md", "billing.txt"):
        (small_corpus.parent / "docs" / name).unlink()
    code, report = ingest_json(small_corpus)
    assert code == 3 and report["status"] == "blocked"
    assert report["chunks"]["total"] == total > 0  # the index's total, which the blocked run kept
    failures = {(f["suite"], f["column"]) for f in report["failures"]}
    assert failures == {("run", "deleted_share"), ("run", "document_count_ratio")}  # 3 documents -> 1
    assert kbflow("search", "nightly backups", "--config", str(small_corpus), "--json").stdout == before
    runs = json.loads(kbflow("runs", "--config", str(small_corpus), "--json").stdout)
    assert runs[0]["status"] == "blocked" and runs[0]["dq_success"] is False and runs[0]["chunks"]["total"] == total
    assert {f["column"] for f in runs[0]["dq_failures"]} == {"deleted_share", "document_count_ratio"}
    summary = json.loads(kbflow("quality", "--config", str(small_corpus), "--json").stdout)
    assert summary["suites"][-1]["name"] == "run" and summary["suites"][-1]["success"] is False

    code, report = ingest_json(small_corpus, "--allow-mass-delete")
    assert code == 0 and report["documents"]["deleted"] == 2
    after = json.loads(kbflow("search", "nightly backups", "--config", str(small_corpus), "--json").stdout)
    assert {hit["uri"] for hit in after} == {"install.md"}


def test_runs_lists_counts_durations_and_outcome(small_corpus, hash_embedder):
    ingest_json(small_corpus)
    ingest_json(small_corpus)
    runs = json.loads(kbflow("runs", "--config", str(small_corpus), "--json").stdout)
    assert [run["status"] for run in runs] == ["no_change", "published"]
    assert runs[1]["documents"]["new"] == 3 and runs[1]["chunks"]["total"] > 0
    assert runs[0]["chunks"]["total"] == runs[1]["chunks"]["total"]
    assert {"discover", "parse", "chunk", "embed", "publish"} <= set(runs[1]["stage_durations"])
    assert [run["dq_success"] for run in runs] == [None, True]  # the no-change run checked nothing
    assert "published" in kbflow("runs", "--config", str(small_corpus)).stdout
    # Issue 15 #12: readable at 80 columns: whole run ids (to paste into --run), no header cut to "…".
    narrow = Console(width=80, record=True, file=io.StringIO())
    narrow.print(runs_table(runs))
    shown = narrow.export_text()
    assert all(run["run_id"] in shown and run["status"] in shown for run in runs) and "…" not in shown
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_a_refused_run_says_so_and_checked_nothing(small_corpus, hash_embedder):
    total = ingest_json(small_corpus)[1]["chunks"]["total"]
    with small_corpus.open("a") as handle:
        handle.write('\n[embedding]\nmodel = "another-model"\n')
    refused = kbflow("ingest", "--config", str(small_corpus))
    assert refused.exit_code == 1 and "kbflow reindex" in refused.stderr
    last = json.loads(kbflow("runs", "--config", str(small_corpus), "--json").stdout)[0]
    assert (last["status"], last["dq_success"], last["chunks"]["total"]) == ("refused", None, total)
    assert json.loads(kbflow("status", "--config", str(small_corpus), "--json").stdout)["last_run"]["status"] == "refused"
    quality = kbflow("quality", "--config", str(small_corpus))
    said = " ".join(quality.stdout.split())  # as read, whatever the terminal's wrapping
    assert quality.exit_code == 0 and "passed" not in said and "nothing changed" not in said
    assert "(refused): no checks ran (the index holds vectors of" in said and "kbflow reindex" in said
    assert json.loads(kbflow("quality", "--config", str(small_corpus), "--json").stdout)["success"] is None
    table = kbflow("runs", "--config", str(small_corpus)).stdout
    assert "refused" in table and "✅" in table and "—" in table  # the published run passed; the refused one: no outcome


def test_prefect_artifacts_show_quality_next_to_the_run(small_corpus, hash_embedder):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    code, report = ingest_json(small_corpus)
    run = json.loads(kbflow("runs", "--config", str(small_corpus), "--json").stdout)[0]
    with get_client(sync_client=True) as client:  # this run's only: the session's harness holds every test's
        mine = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["kbflow-quality", "kbflow-expectations"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run["prefect_flow_run_id"])])))
    assert {a.type for a in mine} == {"markdown", "table"}
    markdown = next(a for a in mine if a.type == "markdown")
    assert report["run_id"] in markdown.data and "| documents |" in markdown.data


def test_ingest_and_status_name_the_units_of_what_was_set_aside(small_corpus, hash_embedder):
    # Issue 26 #16: ingest said "quarantined 1" (documents), status "2" (records: one document's two chunks).
    from kbflow.config import load_config
    from kbflow.quarantine import Quarantined, quarantine_table
    from kbflow.store import Store

    write(small_corpus.parent, {"docs/stub.txt": "tiny"})
    ingested = kbflow("ingest", "--config", str(small_corpus))
    assert ingested.exit_code == 0 and "quarantined: 1 document (kbflow quarantine --run" in ingested.stdout
    chunks = [Quarantined("docs", "install.md", "quality:chunks", "too_repetitive", doc_id="d", chunk_id=f"c{i}",
                          content_hash=f"text-hash-{i}") for i in (1, 2)]
    Store(load_config(small_corpus).store).add_quarantine(quarantine_table(chunks, "later-run"))
    status = json.loads(kbflow("status", "--config", str(small_corpus), "--json").stdout)
    assert status["quarantined"] == 3 and status["quarantined_units"] == {"documents": 2, "chunks": 2}
    shown = " ".join(kbflow("status", "--config", str(small_corpus)).stdout.split())
    assert "quarantined │ 2 documents (2 chunks)" in shown
    runs = json.loads(kbflow("runs", "--config", str(small_corpus), "--json").stdout)
    assert (runs[0]["status"], runs[0]["dq_success"], runs[0]["dq_outcome"]) == ("published", False, "set_aside")
