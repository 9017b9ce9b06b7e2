"""The `evaluate` flow on a small indexed corpus: modes, sources, tuning, results per run, datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.config import load_config
from kbflow.flows.evaluate import evaluate
from kbflow.flows.ingest import ingest
from kbflow.store import Store

from conftest import write

pytestmark = pytest.mark.usefixtures("prefect_harness")

QUERIES = [
    {"query": "which port does the server listen on", "relevant": ["install.md"]},
    {"question": "nightly backups snapshots", "relevant": ["backup.md"]},
    {"query": "restore a snapshot while the server is stopped", "relevant": ["docs/backup.md"]},
    {"query": "when are invoices emailed", "relevant": ["billing.txt", "nowhere.md"]},
]


def write_queries(root: Path, lines: list[dict]) -> Path:
    path = root / "queries.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_evaluate_reports_every_mode_tunes_and_keeps_each_run(small_corpus, hash_embedder):
    ingest(config_path=str(small_corpus))
    queries = write_queries(small_corpus.parent, QUERIES)

    report = evaluate(config_path=str(small_corpus), queries=str(queries), k=5, tune=True)

    assert {"hit@1", "hit@5", "hit@10", "recall@5", "mrr@10", "ndcg@10", "n", "mode", "modes", "run_id",
            "results", "chart", "tuned"} <= set(report)
    assert (report["mode"], report["n"]) == ("vector", 4)
    assert list(report["modes"]) == ["vector", "fts", "hybrid"]
    assert {k: v for k, v in report["modes"]["vector"].items() if k != "per_source"} == {
        k: report[k] for k in ("hit@1", "hit@5", "hit@10", "recall@5", "mrr@10", "ndcg@10", "n")}
    assert report["modes"]["fts"]["hit@10"] == 1.0  # every query shares words with its document
    assert report["modes"]["fts"]["recall@5"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)  # nowhere.md is never found
    assert set(report["modes"]["hybrid"]["per_source"]) == {"docs"}
    assert report["unresolved"] == 1  # nowhere.md

    best_part = max(report["modes"]["vector"]["ndcg@10"], report["modes"]["fts"]["ndcg@10"])
    assert report["tuned"]["metrics"]["ndcg@10"] >= best_part
    assert report["tuned"]["fusion"] in ("linear", "rrf") and 0 <= report["tuned"]["weight"] <= 1

    saved = json.loads(Path(report["results"]).read_text())
    assert saved["run_id"] == report["run_id"] and len(saved["queries"]) == 4
    assert saved["queries"][1]["modes"]["fts"]["ranks"][0] == 1
    assert Path(report["chart"]).read_bytes()[:4] == b"\x89PNG"
    results_dir = load_config(small_corpus).evaluation.results_dir
    assert Path(report["results"]).parent == results_dir

    again = evaluate(config_path=str(small_corpus), queries=str(queries), mode="fts")
    assert (again["mode"], list(again["modes"])) == ("fts", ["fts"])
    assert again["recall@10"] == report["modes"]["fts"]["recall@5"]
    kept = sorted(path.name for path in results_dir.glob("*.json"))
    assert kept == sorted(f"{run['run_id']}.json" for run in (report, again))  # one results file per run


def test_evaluate_on_a_dataset_test_split(small_corpus, hash_embedder, tmp_path):
    ingest(config_path=str(small_corpus))
    chunks = Store(load_config(small_corpus).store).table("chunks").to_arrow().select(["chunk_id", "doc_id", "text"])
    rows = chunks.to_pylist()[:3]
    dataset = tmp_path / "datasets" / "embedding-pairs"
    (dataset / "data").mkdir(parents=True)
    pq.write_table(pa.table({
        "anchor": [row["text"][:60] for row in rows], "positive": [row["text"] for row in rows],
        "query_id": [str(i) for i in range(len(rows))], "positive_chunk_id": [row["chunk_id"] for row in rows],
        "doc_id": [row["doc_id"] for row in rows], "source": ["docs"] * len(rows), "generator": ["ict"] * len(rows),
    }), dataset / "data" / "test-00000-of-00001.parquet")

    report = evaluate(config_path=str(small_corpus), dataset=str(dataset), mode="hybrid")

    assert (report["n"], report["mode"], report["unresolved"]) == (3, "hybrid", 0)
    assert report["hit@10"] == 1.0  # each anchor is the start of its own chunk
    assert list(report["modes"]["hybrid"]["per_source"]) == ["docs"]


def test_a_query_without_relevant_ids_fails_with_its_line(small_corpus, hash_embedder):
    write(small_corpus.parent, {"bad.jsonl": '{"query": "a", "relevant": ["x"]}\n{"query": "b"}\n'})
    with pytest.raises(ValueError, match=r"bad.jsonl:2: no \"relevant\" ids"):
        evaluate(config_path=str(small_corpus), queries=str(small_corpus.parent / "bad.jsonl"))


def test_without_labels_questions_made_from_the_headings_are_scored_and_tuned(small_corpus, hash_embedder):
    ingest(config_path=str(small_corpus))
    store = Store(load_config(small_corpus).store)
    doc_ids = set(store.documents().column("doc_id").to_pylist())

    report = evaluate(config_path=str(small_corpus), k=5, tune=True)  # no [evaluation] queries, no --queries

    assert report["label"] == "generated" and report["n"] >= 2
    assert "tuned" in report and report["tuned"]["fusion"] in ("linear", "rrf")
    saved = json.loads(Path(report["results"]).read_text())
    assert all(q["query"].endswith("?") for q in saved["queries"])  # questions, not headings
    assert all(set(q["relevant"]) <= doc_ids for q in saved["queries"])
    assert report["modes"]["fts"]["hit@10"] > 0  # a heading's question finds its own section's document

    again = evaluate(config_path=str(small_corpus), k=5, generated=True)
    assert [q["query"] for q in json.loads(Path(again["results"]).read_text())["queries"]] == [
        q["query"] for q in saved["queries"]]  # the same seeded sample


def test_generated_and_labeled_queries_are_exclusive(small_corpus):
    with pytest.raises(ValueError, match="one of --queries, --dataset or --generated"):
        evaluate(config_path=str(small_corpus), queries="q.jsonl", generated=True)
