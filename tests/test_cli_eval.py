"""`kbflow evaluate` (alias `kbflow eval`): the JSON contract, the tuning output, usage and input errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbflow.cli import app

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
EXAMPLES = Path(__file__).parents[1] / "examples"


def kbflow(*args: str):
    return runner.invoke(app, list(args))


def queries_file(root: Path) -> Path:
    path = root / "eval.jsonl"
    path.write_text('{"query": "which port does the server listen on", "relevant": ["install.md"]}\n'
                    '{"question": "restore a snapshot", "relevant": ["backup.md"]}\n')
    return path


def test_eval_json_keys_and_tuned_search_lines(small_corpus, hash_embedder):
    config = str(small_corpus)
    assert kbflow("ingest", "--config", config, "--json").exit_code == 0
    result = kbflow("eval", "--config", config, "--queries", str(queries_file(small_corpus.parent)),
                    "--k", "3", "--tune", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert {"hit@1", "hit@5", "hit@10", "recall@3", "mrr@10", "ndcg@10", "n", "modes", "run_id", "results",
            "chart", "tuned"} <= set(report)
    assert set(report["modes"]) == {"vector", "fts", "hybrid"} and report["n"] == 2
    assert {"fusion", "weight", "metrics", "grid"} <= set(report["tuned"])
    assert "[search]\nhybrid_fusion = " in result.stderr and "hybrid_weight = " in result.stderr
    assert Path(report["results"]).is_file() and Path(report["chart"]).is_file()

    human = kbflow("evaluate", "--config", config, "--queries", str(queries_file(small_corpus.parent)), "--mode", "fts")
    assert human.exit_code == 0, human.output
    assert "fts" in human.stdout and "ndcg@10" in human.stdout


def test_eval_defaults_to_the_configured_queries_and_fails_clearly(small_corpus, hash_embedder, tmp_path):
    config = str(small_corpus)
    result = kbflow("eval", "--config", config, "--mode", "keyword")
    assert result.exit_code == 2 and "Invalid value for '--mode'" in result.stderr  # Typer checks the EvalMode choices
    result = kbflow("eval", "--config", config)
    assert result.exit_code == 1 and "[evaluation] queries" in result.stderr
    result = kbflow("evaluate", "--config", config, "--mode", "keyword")
    assert result.exit_code == 2 and "Invalid value for '--mode'" in result.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "ports", "relevant": ["install.md"]}\n{"query": "no labels"}\n')
    result = kbflow("eval", "--config", config, "--queries", str(bad), "--json")
    assert result.exit_code == 1 and "bad.jsonl:2" in result.stderr and result.stdout == ""


@pytest.mark.model
def test_eval_on_the_bundled_manual_with_the_real_model(tmp_path):
    """The example config and labels, over the labeled manual pages only, so it runs in under a minute."""
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns(".kbflow"))
    root = tmp_path / "examples"
    for folder in ("faq", "policies", "releases"):
        shutil.rmtree(root / "docs" / folder)
    (root / "records" / "support_answers.jsonl").unlink()
    labels = [json.loads(line) for line in (root / "qa.jsonl").read_text().splitlines()]
    manual = [line for line in labels if all(r.startswith("manual/") for r in line["relevant"])]
    (root / "qa.jsonl").write_text("".join(json.dumps(line) + "\n" for line in manual))
    labeled = {r for line in manual for r in line["relevant"]}
    for page in (root / "docs" / "manual").iterdir():
        if f"manual/{page.name}" not in labeled:
            page.unlink()  # fewer pages to embed; the rest are each other's distractors
    config = str(root / "kbflow.toml")

    assert kbflow("ingest", "--config", config, "--json").exit_code == 0
    result = kbflow("eval", "--config", config, "--tune", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == len(manual) >= 10 and report["unresolved"] == 0
    modes = report["modes"]
    assert min(modes[m]["hit@10"] for m in modes) >= 0.8  # the packaged model and BM25 both find the manual's pages
    assert report["tuned"]["metrics"]["ndcg@10"] >= max(modes["vector"]["ndcg@10"], modes["fts"]["ndcg@10"])
