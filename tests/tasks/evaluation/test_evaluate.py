"""kbflow.tasks.evaluation.evaluate: dataset queries, per-source scoring, fusion tuning, results and chart.

The metrics and id matching it uses are tested in tests/kbflow/test_relevance.py, query files in
tests/kbflow/test_queries.py."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.queries import LabeledQuery
from kbflow.search import Candidates
from kbflow.tasks.evaluation.evaluate import (
    draw_chart,
    previous_results,
    query_sources,
    read_dataset_queries,
    results_markdown,
    save_results,
    score_rankings,
    tune_fusion,
)


def test_dataset_test_split_gives_each_anchor_its_positive_chunks(tmp_path):
    data = tmp_path / "embedding-pairs" / "data"
    data.mkdir(parents=True)
    rows = {"anchor": ["q1", "q1", "q2"], "positive": ["p", "p2", "p3"], "query_id": ["1", "1", "2"],
            "positive_chunk_id": ["c1", "c2", "c3"], "doc_id": ["d", "d", "e"], "source": ["docs", "docs", "faq"],
            "generator": ["heading"] * 3}
    pq.write_table(pa.table(rows), data / "test-00000-of-00001.parquet")
    assert read_dataset_queries(tmp_path / "embedding-pairs") == [
        LabeledQuery("q1", ["c1", "c2"], "docs"), LabeledQuery("q2", ["c3"], "faq")]
    with pytest.raises(FileNotFoundError):
        read_dataset_queries(tmp_path / "nothing")


def test_query_sources_come_from_the_index_and_unknown_ids_are_reported():
    labeled = [LabeledQuery("a", ["manual/a.md"]), LabeledQuery("b", ["nowhere.md", "c9"]),
               LabeledQuery("c", ["x"], source="labels")]
    catalog = [{"doc_id": "d1", "uri": "manual/a.md", "source": "docs"},
               {"chunk_id": "c9", "doc_id": "d2", "uri": "faq.jsonl#9", "source": "faq"}]
    sources, unresolved = query_sources(labeled, catalog)
    assert sources == ["docs", "faq", "labels"]
    assert unresolved == ["nowhere.md", "x"]


# -- scores per source and the fusion grid ---------------------------------------------------


def ranked(*uris: str) -> list[dict]:
    return [{"chunk_id": f"{uri}#{i}", "uri": uri, "score": 1.0 - i / 10} for i, uri in enumerate(uris)]


def test_score_rankings_breaks_down_per_source():
    labeled = [LabeledQuery("a", ["a.md"]), LabeledQuery("b", ["b.md"]), LabeledQuery("c", ["c.md"])]
    scores = score_rankings(labeled, [ranked("a.md"), ranked("x.md", "b.md"), ranked("x.md")], 10,
                            ["docs", "docs", "faq"])
    assert scores["hit@1"] == pytest.approx(1 / 3) and scores["n"] == 3
    assert scores["per_source"]["docs"]["mrr@10"] == pytest.approx(0.75)
    assert scores["per_source"]["faq"] == {**dict.fromkeys(scores["per_source"]["faq"], 0.0), "n": 1}


def test_tuned_hybrid_is_never_worse_than_either_part():
    # Vector finds what the first two queries need; full text what the last two need.
    labeled = [LabeledQuery(q, [f"{q}.md"]) for q in ("a", "b", "c", "d")]
    candidates = [
        Candidates(ranked("a.md", "x.md"), ranked("x.md", "y.md", "a.md")),
        Candidates(ranked("b.md", "z.md"), ranked("z.md", "b.md")),
        Candidates(ranked("x.md", "y.md", "c.md"), ranked("c.md", "y.md")),
        Candidates(ranked("y.md", "x.md", "z.md", "d.md"), ranked("d.md")),
    ]
    tuned = tune_fusion(labeled, candidates, k=10, depth=10)
    vector = score_rankings(labeled, [c.vector for c in candidates], 10)
    fts = score_rankings(labeled, [c.fts for c in candidates], 10)
    assert tuned["metrics"]["ndcg@10"] >= max(vector["ndcg@10"], fts["ndcg@10"])
    assert tuned["metrics"]["ndcg@10"] > max(vector["ndcg@10"], fts["ndcg@10"])  # here fusing helps
    assert len(tuned["grid"]) == 22 and {p["weight"] for p in tuned["grid"]} >= {0.0, 1.0}
    assert tuned["config"] == f'[search]\nhybrid_fusion = "{tuned["fusion"]}"\nhybrid_weight = {tuned["weight"]:g}'


def test_tuning_ties_go_to_the_weight_nearest_one_half():
    labeled = [LabeledQuery("a", ["a.md"])]
    tuned = tune_fusion(labeled, [Candidates(ranked("a.md"), ranked("a.md"))], k=10, depth=10)
    assert (tuned["fusion"], tuned["weight"], tuned["metrics"]["ndcg@10"]) == ("linear", 0.5, 1.0)


# -- results and chart -----------------------------------------------------------------------


def report(run_id: str, ndcg: float) -> dict:
    modes = {m: {"hit@5": ndcg, "ndcg@10": ndcg, "n": 3} for m in ("vector", "fts", "hybrid")}
    return {"run_id": run_id, "label": "qa.jsonl", "k": 10, "modes": modes, "results": "r.json", "chart": "c.png",
            "tuned": {"fusion": "rrf", "weight": 0.3, "metrics": {"ndcg@10": ndcg}, "config": "[search]"}}


def test_results_are_kept_per_run_and_charted_as_png(tmp_path):
    for run_id, ndcg in (("20260101T000000Z-aaaaaa", 0.5), ("20260102T000000Z-bbbbbb", 0.75)):
        path = save_results(tmp_path, report(run_id, ndcg), {"queries": []})
        assert json.loads(path.read_text())["modes"]["fts"]["ndcg@10"] == ndcg
    (tmp_path / "notes.json").write_text("[1, 2]")  # not an eval result: left out
    history = previous_results(tmp_path)
    assert [r["run_id"] for r in history] == ["20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb"]
    chart = draw_chart(history, tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_summary_has_one_row_per_mode_and_the_tuned_config():
    text = results_markdown(report("r1", 0.5))
    assert "| vector |" in text and "| hybrid tuned (rrf, weight 0.3) |" in text and "[search]" in text
