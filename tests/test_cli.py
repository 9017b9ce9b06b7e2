"""The CLI's contracts: JSON shapes on stdout only, exit codes, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kbflow.cli import app

from conftest import DOCS_SOURCE, write, write_config

EXAMPLES = Path(__file__).parents[1] / "examples"

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def kbflow(*args: str):
    return runner.invoke(app, list(args))


def test_ingest_search_status_json_contracts(small_corpus, hash_embedder):
    config = str(small_corpus)
    result = kbflow("ingest", "--config", config, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"run_id", "status", "documents", "chunks", "duration_s", "quarantined"}
    # acl_changed: documents whose ACL alone changed (issue 25), an addition to the contract
    assert set(report["documents"]) == {"new", "changed", "unchanged", "deleted", "quarantined", "acl_changed"}
    assert set(report["chunks"]) == {"embedded", "reused", "deleted", "total"}

    result = kbflow("search", "which port does the server listen on", "--config", config, "--k", "2", "--json")
    hits = json.loads(result.stdout)
    assert len(hits) == 2
    assert {"chunk_id", "doc_id", "uri", "source", "score", "text", "heading"} <= set(hits[0])
    assert hits[0]["uri"] == "install.md"

    for mode in ("fts", "hybrid"):
        result = kbflow("search", "nightly backups", "--config", config, "--mode", mode, "--json")
        assert json.loads(result.stdout)[0]["uri"] == "backup.md", mode

    result = kbflow("status", "--config", config, "--json")
    status = json.loads(result.stdout)
    assert (status["documents"], status["quarantined"]) == (3, 0)
    assert status["chunks"] == report["chunks"]["total"]
    assert status["last_run"]["run_id"] == report["run_id"]


def test_search_prints_indexed_text_as_written_not_as_markup(tmp_path, hash_embedder):
    write(tmp_path, {"docs/backup.md": "# Backups\n\nBackups are configured in the `[backup]` section: [bold]keep_days[/bold].\n"})
    config = str(write_config(tmp_path, DOCS_SOURCE))
    assert kbflow("ingest", "--config", config, "--json").exit_code == 0
    result = kbflow("search", "[backup] section", "--config", config, "--mode", "fts")
    assert result.exit_code == 0, result.output
    assert "Backups are configured" in result.output  # the hit is printed (positive control)
    assert "[backup]" in result.output and "[bold]keep_days[/bold]" in result.output
    assert "search: [backup] section" in result.output


def test_a_tenant_the_index_does_not_hold_is_named_on_stderr(small_corpus, hash_embedder):
    # A misspelt --tenant used to answer an empty list with exit 0 and no word why.
    kbflow("ingest", "--config", str(small_corpus), "--json")
    result = kbflow("search", "backups", "--config", str(small_corpus), "--tenant", "pubilc", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert "no chunk has tenant 'pubilc'; the index holds public" in result.stderr

    result = kbflow("search", "backups", "--config", str(small_corpus), "--tenant", "public", "--json")
    assert json.loads(result.stdout) and "warning" not in result.stderr

    # a tenant the index holds, with nothing matching: an empty answer, and no warning
    control = kbflow("search", "backups", "--config", str(small_corpus), "--tenant", "public", "--mode", "fts", "--json")
    assert json.loads(control.stdout)  # the control: the same mode and tenant find a word the index holds
    result = kbflow("search", "zyxwvut", "--config", str(small_corpus), "--tenant", "public", "--mode", "fts", "--json")
    assert json.loads(result.stdout) == [] and "warning" not in result.stderr


def test_batch_queries_answer_in_input_order(small_corpus, hash_embedder, tmp_path):
    kbflow("ingest", "--config", str(small_corpus), "--json")
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "refunds invoices"}\n\n{"query": "restore a snapshot"}\n')
    result = kbflow("search", "--queries", str(queries), "--config", str(small_corpus), "--k", "1", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["refunds invoices", "restore a snapshot"]
    assert [line["hits"][0]["uri"] for line in lines] == ["billing.txt", "backup.md"]

    # Issue 15 #6: the project's own question file ("question" lines with labels) is a queries file too.
    qa = EXAMPLES / "qa.jsonl"
    result = kbflow("search", "--queries", str(qa), "--config", str(small_corpus), "--k", "1", "--json")
    assert result.exit_code == 0, result.stderr
    questions = [json.loads(line)["question"] for line in qa.read_text().splitlines() if line.strip()]
    assert [json.loads(line)["query"] for line in result.stdout.splitlines()] == questions


def test_blocked_gate_exits_3_with_the_failing_expectation(small_corpus, hash_embedder):
    kbflow("ingest", "--config", str(small_corpus))
    write(small_corpus.parent, {"docs/twin.md": "# Twin\n\ntext"})
    checks = small_corpus.parent / "checks"
    checks.mkdir()
    for name in ("chunks", "embeddings"):
        (checks / f"{name}.json").write_text(json.dumps({"name": name, "expectations": []}))
    (checks / "documents.json").write_text(json.dumps({"name": "documents", "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 0}, "meta": {"on_failure": "block"}}]}))
    with small_corpus.open("a") as handle:
        handle.write('\n[quality]\nexpectations_dir = "checks"\n')
    result = kbflow("ingest", "--config", str(small_corpus), "--json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["status"] == "blocked"
    assert report["failures"][0]["type"] == "expect_table_row_count_to_be_between"
    assert "expect_table_row_count_to_be_between" in result.stderr


def test_errors_are_clear_and_exit_1(tmp_path):
    result = kbflow("ingest", "--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 1 and "kbflow init" in result.stderr
    (tmp_path / "kbflow.toml").write_text('[store]\nuri = ".kbflow"\n')
    result = kbflow("search", "anything", "--config", str(tmp_path / "kbflow.toml"))
    assert result.exit_code == 1 and "run `kbflow ingest` first" in result.stderr


def test_a_kbflow_error_is_one_line_with_its_exit_code_and_kbflow_debug_shows_its_traceback(capsys, monkeypatch):
    from kbflow.cli.common import reports_errors
    from kbflow.errors import NotFound, QualityGateFailed

    @reports_errors
    def not_found() -> None:
        raise NotFound("no run 'r1'; `kbflow runs` lists them")

    @reports_errors
    def blocked() -> None:
        raise QualityGateFailed([])

    codes = []
    for command in (not_found, blocked):
        with pytest.raises(typer.Exit) as ended:
            command()
        codes.append(ended.value.exit_code)
    assert codes == [1, 3]
    assert capsys.readouterr().err.splitlines() == [
        "error: no run 'r1'; `kbflow runs` lists them", "error: data-quality gate blocked the publish: "]
    monkeypatch.setenv("KBFLOW_DEBUG", "1")
    with pytest.raises(NotFound):
        not_found()


def test_an_unexpected_error_is_one_line_naming_the_log_that_holds_its_traceback(monkeypatch, capsys, tmp_path):
    """Issue 23 #7: an error kbflow did not expect (here a ValueError inside the json module) ends as one
    line saying where its traceback went; KBFLOW_DEBUG=1 shows the traceback instead."""
    from kbflow.cli.common import reports_errors

    monkeypatch.setenv("KBFLOW_CACHE_DIR", str(tmp_path / "cache"))

    @reports_errors
    def library_error() -> None:
        json.loads("{")

    with pytest.raises(typer.Exit) as ended:
        library_error()
    assert ended.value.exit_code == 1
    log = tmp_path / "cache" / "logs" / "internal-errors.log"
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == ("error: internal error (JSONDecodeError: Expecting property name enclosed in double quotes: "
                    f"line 1 column 2 (char 1)); the traceback is in {log}; KBFLOW_DEBUG=1 prints it here")
    logged = log.read_text()
    assert "Traceback (most recent call last)" in logged and 'json.loads("{")' in logged
    assert logged.rstrip().endswith("json.decoder.JSONDecodeError: Expecting property name enclosed in double "
                                    "quotes: line 1 column 2 (char 1)")
    monkeypatch.setenv("KBFLOW_DEBUG", "1")
    with pytest.raises(json.JSONDecodeError):
        library_error()


def test_an_unexpected_error_of_a_command_is_logged_in_its_store(small_corpus, hash_embedder, monkeypatch):
    kbflow("ingest", "--config", str(small_corpus), "--json")

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr("kbflow.search.search", broken)
    result = kbflow("search", "backups", "--config", str(small_corpus))
    log = small_corpus.parent / ".kbflow" / "logs" / "internal-errors.log"
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: internal error (TypeError: unsupported operand); the traceback is in "
                                     f"{log}; KBFLOW_DEBUG=1 prints it here")
    assert "in broken" in log.read_text()


@pytest.mark.parametrize("command", [["search", "hello"], ["status"], ["quality"], ["quarantine"],
                                     ["trace", "some-chunk"], ["runs"]])
def test_read_only_commands_on_a_missing_store_say_so_and_create_nothing(tmp_path, command):
    """Issue 15 #7: they created the directory tree, and status printed zeros with exit 0."""
    config = tmp_path / "kbflow.toml"
    config.write_text('[store]\nuri = "does/not/exist"\n')
    result = kbflow(*command, "--config", str(config))
    assert result.exit_code == 1, result.output
    assert f"there is no kbflow index at {tmp_path / 'does/not/exist'}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kbflow.toml"]


@pytest.mark.parametrize("arguments", [["search", ""], ["search", "   "], ["search", "hello", "--mode", "foo"],
                                       ["search"]])
def test_usage_errors_exit_2(tmp_path, arguments):
    """Issue 15 #8: an empty query returned arbitrary hits with exit 0; a bad mode exited 1."""
    config = tmp_path / "kbflow.toml"
    config.write_text('[store]\nuri = ".kbflow"\n')
    result = kbflow(*arguments, "--config", str(config))
    assert result.exit_code == 2, result.output
    assert not (tmp_path / ".kbflow").exists()


def test_a_source_that_yields_no_documents_is_warned_about(tmp_path, hash_embedder):
    """Issue 15 #14: an empty source folder ingested as `no_change` with exit 0 and no warning."""
    (tmp_path / "docs").mkdir()
    config = str(write_config(tmp_path, DOCS_SOURCE))
    result = kbflow("ingest", "--config", config, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (warning,) = report["warnings"]
    assert warning.startswith("source 'docs' yields no documents") and str(tmp_path / "docs") in warning
    assert f"warning: {warning}" in " ".join(result.stderr.split())
    run = json.loads(kbflow("runs", "--config", config, "--json").stdout)[0]
    assert run["run_id"] == report["run_id"] and run["warnings"] == [warning]


def test_init_writes_a_starter_config_once(tmp_path):
    target = tmp_path / "kbflow.toml"
    result = kbflow("init", str(target))
    assert result.exit_code == 0
    # Issue 15 #13: Rich markup swallowed the section name ("edit [] then run").
    assert f"edit [[sources]] then run `kbflow ingest --config {target}`" in " ".join(result.stderr.split())
    assert "[[sources]]" in target.read_text()
    assert kbflow("init", str(target)).exit_code == 1


def test_deployments_lists_the_catalog_and_renders_the_prefect_yaml():
    config = str(EXAMPLES / "kbflow.toml")
    result = kbflow("deployments", "--config", config, "--yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout == (EXAMPLES.parent / "deployments" / "prefect.yaml").read_text()
    catalog = json.loads(kbflow("deployments", "--config", config, "--json").stdout)
    assert [d["name"] for d in catalog] == ["ingest-all", "ingest-on-change", "reindex",
                                            "build-dataset-embedding-pairs", "evaluate-weekly"]
    assert {d["entrypoint"] for d in catalog} == {"kbflow.flows.ingest:ingest", "kbflow.flows.reindex:reindex",
                                                  "kbflow.flows.build_dataset:build_dataset",
                                                  "kbflow.flows.evaluate:evaluate"}
