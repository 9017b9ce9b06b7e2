"""`kbflow finetune`: JSON on stdout only, and clear errors before any model or Prefect start."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.schemas import embedding_pairs_schema

runner = CliRunner()
SPLITS = {
    "train": [("Which port does the server listen on?", "The server listens on port 8420 by default.", "c1"),
              ("Where are notes stored?", "Notes are stored under /var/lib/lumen in plain files.", "c2"),
              ("How long do refunds take?", "Refunds take five business days.", "c3"),
              ("How often do clients sync?", "Clients sync every ten seconds.", "c4")],
    "test": [("When do backups run?", "Nightly backups run at 02:00 and keep fourteen snapshots.", "c5"),
             ("When is support open?", "Support is open on weekdays from nine to five.", "c6")],
}


def write_pairs(root: Path, labeled: set[str] = frozenset()) -> Path:
    """The pairs of SPLITS as a dataset; rows whose chunk id is in `labeled` come from a labeled source."""
    dataset = root / "embedding-pairs"
    (dataset / "data").mkdir(parents=True)
    for split, rows in SPLITS.items():
        table = pa.Table.from_pylist(
            [{"anchor": a, "positive": p, "negative_1": rows[(i + 1) % len(rows)][1], "query_id": f"q{c}",
              "positive_chunk_id": c, "doc_id": c, "source": "docs",
              "generator": "labeled" if c in labeled else "llm"}
             for i, (a, p, c) in enumerate(rows)],
            schema=embedding_pairs_schema(1),
        )
        pq.write_table(table, dataset / "data" / f"{split}-00000-of-00001.parquet")
    return dataset


def test_finetune_errors_are_clear_and_come_before_any_work(small_corpus, tmp_path):
    config = str(small_corpus)
    missing = runner.invoke(app, ["finetune", "--config", config, "--dataset", str(tmp_path / "none"),
                                  "--out", str(tmp_path / "m")])
    assert missing.exit_code == 1 and "kbflow dataset build" in missing.stderr
    used = tmp_path / "used"
    used.mkdir()
    (used / "config.json").write_text("{}")
    taken = runner.invoke(app, ["finetune", "--config", config, "--dataset", str(write_pairs(tmp_path)),
                                "--out", str(used)])
    assert taken.exit_code == 1 and "choose a new --out" in taken.stderr
    assert runner.invoke(app, ["finetune", "--config", config, "--out", str(tmp_path / "m")]).exit_code == 2


@pytest.mark.model
@pytest.mark.usefixtures("prefect_harness")
def test_finetune_json_contract(small_corpus, tmp_path):
    out = tmp_path / "tuned"
    result = runner.invoke(app, ["finetune", "--config", str(small_corpus), "--dataset", str(write_pairs(tmp_path)),
                                 "--out", str(out), "--max-steps", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"base", "tuned", "model_dir", "steps", "train_rows", "minutes", "dataset"} <= set(report)
    assert report["steps"] == 1 and report["train_rows"] == 4 and report["model_dir"] == str(out)
    assert report["base"]["n"] == report["tuned"]["n"] == 2
    assert (out / "config_sentence_transformers.json").is_file()


@pytest.mark.model
@pytest.mark.usefixtures("prefect_harness")
def test_finetune_adapts_with_tsdae_first_and_scores_the_labeled_questions_apart(small_corpus, tmp_path, monkeypatch):
    from kbflow.flows.ingest import ingest

    ingest(config_path=str(small_corpus))  # TSDAE reads the index's chunk texts
    import kbflow.tasks.evaluation.finetune as finetune_tasks

    adapted_on = []
    real = finetune_tasks.adapt_embedder
    monkeypatch.setattr(finetune_tasks, "adapt_embedder",
                        lambda model, texts, *args: adapted_on.extend(texts) or real(model, texts, *args))
    out = tmp_path / "tuned"
    result = runner.invoke(app, ["finetune", "--config", str(small_corpus), "--out", str(out), "--max-steps", "1",
                                 "--dataset", str(write_pairs(tmp_path, labeled={"c5"})), "--tsdae-steps", "1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tsdae"]["steps"] == 1 and report["steps"] == 2  # one TSDAE step, then one pair step
    assert any("port 8420" in text for text in adapted_on)  # the index's own texts, not the dataset's
    assert report["labeled"]["base"]["n"] == report["labeled"]["tuned"]["n"] == 1  # c5, held out
    assert report["base"]["n"] == 2 and "labeled questions apart" in report["scored_on"]
