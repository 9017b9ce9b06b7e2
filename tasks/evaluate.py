"""Evaluate: retrieval metrics of ranked results against labeled relevant ids.

The metric functions are plain and shared: `kbflow eval` scores the index with
them, `kbflow finetune` scores base and tuned models with them.

A ranked list is given as, per rank, the relevant id that hit matched (or None).
A relevant id is counted once, at its best rank: a document that appears as three
chunks in the top ten is one hit, so nDCG and recall never exceed 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

HIT_KS = (1, 5, 10)
RANK_CUTOFF = 10  # MRR@10 and nDCG@10


def query_metrics(matches: Sequence[str | None], n_relevant: int, k: int = 10) -> dict[str, float]:
    """hit@1/5/10, recall@k, mrr@10 and ndcg@10 of one query.

    `matches[r]` is the relevant id the hit at rank r+1 matched, or None;
    `n_relevant` is how many relevant ids the query has (at least 1).

    >>> query_metrics([None, "a.md", "a.md"], n_relevant=1)["mrr@10"]
    0.5
    """
    if n_relevant < 1:
        raise ValueError("a query needs at least one relevant id")
    first_rank: dict[str, int] = {}
    for rank, matched in enumerate(matches, start=1):
        if matched is not None and matched not in first_rank:
            first_rank[matched] = rank
    ranks = sorted(first_rank.values())
    metrics = {f"hit@{cutoff}": float(bool(ranks) and ranks[0] <= cutoff) for cutoff in HIT_KS}
    metrics[f"recall@{k}"] = sum(rank <= k for rank in ranks) / n_relevant
    metrics[f"mrr@{RANK_CUTOFF}"] = 1.0 / ranks[0] if ranks and ranks[0] <= RANK_CUTOFF else 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank in ranks if rank <= RANK_CUTOFF)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(n_relevant, RANK_CUTOFF) + 1))
    metrics[f"ndcg@{RANK_CUTOFF}"] = dcg / ideal
    return metrics


def mean_metrics(per_query: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over queries, plus `n` (the number of queries)."""
    if not per_query:
        return {"n": 0}
    names = per_query[0].keys()
    means = {name: round(sum(q[name] for q in per_query) / len(per_query), 6) for name in names}
    return {**means, "n": len(per_query)}
