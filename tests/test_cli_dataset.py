"""`kbflow dataset build` and `kbflow dataset check`: JSON on stdout, exit codes, clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import kbflow.flows.build_dataset  # noqa: F401  - imported before hash_embedder patches its loader
from kbflow.cli import app

from conftest import QA_SOURCE, write

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()

LABELED = QA_SOURCE + """
[datasets]
negatives = 1
"""


def kbflow(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def labeled_corpus(small_corpus):
    write(small_corpus.parent, {"labels/qa.jsonl": "".join(json.dumps(row) + "\n" for row in [
        {"id": "1", "question": "Which port does the server listen on?", "answer": "8420, unless --port says otherwise.",
         "relevant": ["install.md"]},
        {"id": "2", "question": "How long are nightly backups kept?", "answer": "Fourteen snapshots.",
         "relevant": ["backup.md"]},
    ])})
    with small_corpus.open("a") as handle:
        handle.write(LABELED)
    return small_corpus


def test_build_and_check_json_contracts_and_exit_codes(labeled_corpus, hash_embedder, tmp_path):
    config, out = str(labeled_corpus), str(tmp_path / "sets")
    assert kbflow("ingest", "--config", config).exit_code == 0

    result = kbflow("dataset", "build", "--config", config, "--kind", "sft", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"kind", "dir", "rows", "dropped", "pii", "checks"}
    assert sum(report["rows"].values()) == 2 and report["checks"]["success"]

    result = kbflow("dataset", "build", "--config", config, "--kind", "embedding-pairs", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)
    assert pairs["dir"].endswith("embedding-pairs") and sum(pairs["rows"].values()) > 0

    result = kbflow("dataset", "check", pairs["dir"], "--config", config, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"stale": 0, "rows": sum(pairs["rows"].values()), "deleted": 0,
                                         "changed": 0, "examples": []}

    for name in ("backup.md", "install.md"):  # every pair's positive comes from one of the three
        (labeled_corpus.parent / "docs" / name).unlink()
    assert kbflow("ingest", "--config", config, "--allow-mass-delete").exit_code == 0
    result = kbflow("dataset", "check", pairs["dir"], "--config", config, "--json")
    assert result.exit_code == 4, result.output
    stale = json.loads(result.stdout)
    assert stale["deleted"] >= 1 and stale["examples"][0]["reason"] == "deleted"
    assert stale["stale"] == stale["deleted"] + stale["changed"] and stale["rows"] == sum(pairs["rows"].values())


def test_build_errors_are_clear(labeled_corpus, hash_embedder, tmp_path):
    config = str(labeled_corpus)
    result = kbflow("dataset", "build", "--config", config, "--kind", "pairs")
    # A kind that does not exist is a usage error (exit 2, as README promises), naming the choices.
    assert result.exit_code == 2 and "'pairs' is not one of" in result.stderr and "'embedding-pairs'" in result.stderr
    result = kbflow("dataset", "build", "--config", config, "--kind", "sft", "--source", "docs")
    assert result.exit_code == 1 and "no question_field/answer_field" in result.stderr
    result = kbflow("dataset", "check", str(tmp_path), "--config", config)
    assert result.exit_code == 1 and "not a kbflow dataset" in result.stderr
    # The flow's name works as a command too: the same command behind it.
    result = kbflow("build-dataset", "--config", config, "--kind", "sft", "--source", "docs")
    assert result.exit_code == 1 and "no question_field/answer_field" in result.stderr


def test_build_progress_is_silent_with_json_and_shown_by_rows_with_progress(labeled_corpus, hash_embedder, tmp_path,
                                                                            monkeypatch, capsys):
    import sys

    from kbflow.cli import main

    config = str(labeled_corpus)
    assert kbflow("ingest", "--config", config).exit_code == 0
    monkeypatch.setenv("KBFLOW_PROGRESS", "0")  # main() sets these: restored after the test
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "CRITICAL")
    monkeypatch.setenv("KBFLOW_NO_WORKER", "1")
    capsys.readouterr()
    stderr = {}
    for flag in ("", "--progress"):
        args = ["dataset", "build", "--config", config, "--kind", "embedding-pairs", "--out", str(tmp_path / flag),
                "--json", *([flag] if flag else [])]
        monkeypatch.setattr(sys, "argv", ["kbflow", *args])
        with pytest.raises(SystemExit) as done:
            main()
        captured = capsys.readouterr()
        assert done.value.code == 0, captured.err
        assert sum(json.loads(captured.out)["rows"].values()) > 0  # stdout: the JSON report only
        stderr[flag] = captured.err
    assert stderr[""] == ""
    lines = stderr["--progress"].splitlines()
    for stage in ("generating queries", "mining negatives"):
        counts = [line.rsplit(" ", 1)[1].split("/") for line in lines if line.startswith(stage + " ")]
        assert counts and counts[-1][0] == counts[-1][1] != "0", (stage, lines)


def test_an_unreachable_llm_endpoint_ends_the_build_as_one_line(small_corpus, hash_embedder):
    # LlmUnavailable is a KbflowError: the command's own except clause for it is gone, the line stays.
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with small_corpus.open("a") as handle:
        handle.write(f'\n[datasets]\ngenerators = ["llm"]\n[datasets.llm]\nbase_url = "http://127.0.0.1:{port}/v1"\n'
                     "max_retries = 0\n")
    assert kbflow("ingest", "--config", str(small_corpus), "--json").exit_code == 0
    result = kbflow("dataset", "build", "--config", str(small_corpus), "--kind", "embedding-pairs")
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: LLM endpoint http://127.0.0.1:{port}/v1 failed 1 time(s), last: ")
