"""kbflow.relevance: retrieval metrics against hand-computed cases, and matching hits to relevant ids."""

from __future__ import annotations

import math

import pytest

from kbflow.relevance import hit_keys, matched_ids, mean_metrics, query_metrics

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


def test_docstring_examples_hold():
    import doctest

    import kbflow.relevance

    results = doctest.testmod(kbflow.relevance)
    assert results.attempted >= 2 and results.failed == 0
