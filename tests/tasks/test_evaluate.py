"""Retrieval metrics against hand-computed cases; matching, query files, tuning, results and chart."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kbflow.queries import LabeledQuery, read_queries
from kbflow.relevance import hit_keys, matched_ids, mean_metrics, query_metrics
from kbflow.search import Candidates
from kbflow.tasks.evaluate import (
    draw_chart,
    previous_results,
    query_sources,
    read_dataset_queries,
    results_markdown,
    save_results,
    score_rankings,
    tune_fusion,
)

# -- metrics ---------------------------------------------------------------------------------


def test_two_relevant_found_at_ranks_two_and_four():
    metrics = query_metrics([None, "a", None, "b", None], n_relevant=2, k=10)
    ideal = 1 + 1 / math.log2(3)
    assert metrics["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert metrics["mrr@10"] == pytest.approx(0.5)
    assert (metrics["hit@1"], metrics["hit@5"], metrics["hit@10"]) == (0.0, 1.0, 1.0)
    assert metrics["recall@10"] == 1.0


def test_recall_at_k_counts_each_relevant_once_within_k():
    matches = ["a", "a", None, None, "b"]  # "a" twice is one hit; "b" at rank 5 is beyond k = 3
    metrics = query_metrics(matches, n_relevant=3, k=3)
    assert metrics["recall@3"] == pytest.approx(1 / 3)
    assert metrics["hit@1"] == 1.0 and metrics["mrr@10"] == 1.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6)) / ideal)


def test_nothing_found_scores_zero_and_beyond_ten_does_not_count():
    assert set(query_metrics([None] * 10, 1).values()) == {0.0}
    late = query_metrics([None] * 10 + ["a"], n_relevant=1, k=20)
    assert (late["hit@10"], late["mrr@10"], late["ndcg@10"], late["recall@20"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        query_metrics([], n_relevant=0)


def test_mean_metrics_averages_and_counts():
    means = mean_metrics([{"hit@1": 1.0, "ndcg@10": 0.5}, {"hit@1": 0.0, "ndcg@10": 0.25}])
    assert means == {"hit@1": 0.5, "ndcg@10": 0.375, "n": 2}
    assert mean_metrics([]) == {"n": 0}


# -- matching hits to relevant ids -----------------------------------------------------------

HIT = {"uri": "manual/backup-and-restore.md", "doc_id": "d1", "chunk_id": "c1", "source": "docs"}


@pytest.mark.parametrize("relevant", [
    "manual/backup-and-restore.md", "backup-and-restore.md", "docs/manual/backup-and-restore.md", "d1", "c1",
])
def test_an_id_matches_uri_file_name_path_tail_doc_or_chunk(relevant):
    assert matched_ids([HIT], [relevant]) == [relevant]


@pytest.mark.parametrize("relevant", ["anual/backup-and-restore.md", "backup", "other/backup-and-restore.md", "d"])
def test_partial_names_do_not_match(relevant):
    assert matched_ids([HIT], [relevant]) == [None]


def test_records_rows_match_by_their_id():
    assert "sa-0001" in hit_keys({"uri": "support_answers.jsonl#sa-0001", "doc_id": "x", "source": "support"})


def test_a_hit_matching_two_ids_counts_for_the_first_listed():
    assert matched_ids([HIT, {"uri": "x.md"}], ["backup-and-restore.md", "d1"]) == ["backup-and-restore.md", None]


# -- labeled queries -------------------------------------------------------------------------


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


def test_docstring_examples_hold():
    import doctest

    import kbflow.relevance

    results = doctest.testmod(kbflow.relevance)
    assert results.attempted >= 2 and results.failed == 0
