"""Relevance: which hit answers a labeled query, and the retrieval metrics of a ranking.

Plain rules shared by evaluation, dataset building and fine-tuning, so that
`kbflow evaluate`, the dataset miner and `kbflow finetune` judge hits the same way.

A ranked list is given as, per rank, the relevant id that hit matched (or None).
A relevant id is counted once, at its best rank: a document that appears as three
chunks in the top ten is one hit, so nDCG and recall never exceed 1.

A relevant id names a document or a chunk: its uri, the file name, a trailing part
of its path (`manual/backup.md`), a records row's id (`faq.jsonl#id` → `id`),
`source/uri`, a doc_id or a chunk_id (see `hit_keys`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from kbflow.errors import InvalidInput

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
        raise InvalidInput("a query needs at least one relevant id")
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


METRIC_NAMES = ("hit@1", "hit@5", "hit@10", "recall@{k}", "mrr@10", "ndcg@10", "n")


def hit_keys(hit: dict[str, Any]) -> set[str]:
    """Every id that names this hit's chunk or document.

    >>> sorted(hit_keys({"uri": "manual/backup.md", "doc_id": "d1", "source": "docs"}))
    ['backup.md', 'd1', 'docs/manual/backup.md', 'manual/backup.md']
    """
    keys = {hit[name] for name in ("doc_id", "chunk_id") if hit.get(name)}
    uri = hit.get("uri") or ""
    if uri:
        parts = uri.split("/")
        keys.update("/".join(parts[i:]) for i in range(len(parts)))  # the uri, its tails, the file name
        if "#" in parts[-1]:
            keys.add(parts[-1].rsplit("#", 1)[1])  # a records row: file.jsonl#id
        if hit.get("source"):
            keys.add(f"{hit['source']}/{uri}")
    return keys


def matched_ids(hits: Sequence[dict[str, Any]], relevant: Sequence[str]) -> list[str | None]:
    """Per rank, the relevant id the hit matched (the first listed, if several), or None."""
    matches = []
    for hit in hits:
        keys = hit_keys(hit)
        matches.append(next((r for r in relevant if r in keys), None))
    return matches
