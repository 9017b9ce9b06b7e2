"""Search the index: the Python API behind `kbflow search` and `kbflow eval`.

Tenant filtering happens inside LanceDB before ranking (a prefilter), so a
query for one tenant never sees another tenant's chunks, however close they are.

Ranking lives here, the store only reads: `vector_hits` is kbflow's one vector query
(search, eval, and the dataset builder's hard-negative miner and RAFT retrieval all go
through it, so all see the same ANN tuning and the same cosine scores); hybrid search
fuses the vector and the full-text ranking as `[search]` says (`hybrid_fusion`,
`hybrid_weight`, `candidates`; see `fuse_hits`). Adaptive fusion sets the weight per query from how
many of its terms are rare in the index (`rare_terms`, `HybridFusion`).
When `[search] rerank_model` names a cross-encoder, its scores reorder the top
`rerank_candidates` hits of any mode. `kbflow eval` goes through `retrieve`,
`rank` and `rerank` here, so it measures exactly what search returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from kbflow.config import Fusion, KbflowConfig, SearchConfig, SearchMode
from kbflow.errors import InvalidInput
from kbflow.models import load_embedder
from kbflow.store import CHUNKS, SEARCH_COLUMNS, Store, sql_string

__all__ = [
    "FUSIONS", "SEARCH_MODES", "Candidates", "HybridFusion", "fts_hits", "fuse_hits", "rank", "rare_terms", "rerank",
    "rerank_depth", "retrieve", "search", "search_hits", "vector_hits",
]

SEARCH_MODES = get_args(SearchMode)
FUSIONS = get_args(Fusion)  # how hybrid fuses the vector and full-text rankings (fuse_hits)
RRF_K = 60  # the usual reciprocal-rank-fusion constant: 1 / (60 + rank)
TERM = re.compile(r"[^\W_]+")  # what the full-text index's simple tokenizer calls a word


@dataclass
class Candidates:
    """The vector and the full-text ranking of one query, deep enough to fuse and cut.

    `rare_share`: the share of the query's indexed terms that are rare (`rare_terms`), what
    adaptive fusion weighs by; 0 when not measured.
    """

    vector: list[dict[str, Any]]
    fts: list[dict[str, Any]]
    rare_share: float = 0.0


@dataclass(frozen=True)
class HybridFusion:
    """How hybrid fuses a query's two rankings: `[search]`'s hybrid_fusion, hybrid_weight, rare_term_weight.

    linear and rrf use `weight` (vector's share) for every query. adaptive is linear with a
    weight per query: `weight` for a query none of whose indexed terms is rare, moving to
    `rare_weight` as the share of rare terms grows to 1. A rare term (an option name, an error
    code, a function) is one the full-text index matches exactly and the small bi-encoder
    blurs; a question in everyday words is better served by the vector ranking alone.
    """

    fusion: str = "linear"
    weight: float = 0.5
    rare_weight: float = 0.5

    @classmethod
    def of(cls, settings: SearchConfig) -> HybridFusion:
        return cls(settings.hybrid_fusion, settings.hybrid_weight, settings.rare_term_weight)

    def weight_for(self, rare_share: float) -> float:
        """Vector's share for a query whose indexed terms are `rare_share` rare."""
        if self.fusion != "adaptive":
            return self.weight
        return self.weight + (self.rare_weight - self.weight) * rare_share

    def fuse(self, vector_ranking: list[dict[str, Any]], fts_ranking: list[dict[str, Any]],
             rare_share: float = 0.0) -> list[dict[str, Any]]:
        method = "rrf" if self.fusion == "rrf" else "linear"
        return fuse_hits(vector_ranking, fts_ranking, method, self.weight_for(rare_share))


def search(
    config: KbflowConfig,
    queries: list[str],
    k: int = 10,
    tenant: str | None = None,
    mode: str | None = None,
) -> list[list[dict[str, Any]]]:
    """Top-k hits for each query, in input order; the model is loaded once for all.

    `mode` defaults to `[search] mode` (hybrid).
    """
    mode = mode or config.search.mode
    _check_mode(mode)
    store = _open(config)
    vectors = _encode(config, queries) if mode != "fts" else [None] * len(queries)
    settings = config.search
    depth = rerank_depth(settings, k)
    results = [
        search_hits(store, vector, query, depth, tenant, mode, fusion=settings.hybrid_fusion,
                    weight=settings.hybrid_weight, candidates=settings.candidates,
                    rare_weight=settings.rare_term_weight, rare_term_share=settings.rare_term_share)
        for query, vector in zip(queries, vectors)
    ]
    return rerank(settings, queries, results, k)


def retrieve(
    config: KbflowConfig, queries: list[str], k: int, tenant: str | None = None
) -> list[Candidates]:
    """Both rankings of each query, `max(candidates, k)` deep (deeper for a rerank stage).

    What evaluation ranks every mode from, and fuses in memory for every weight it tries;
    with adaptive fusion configured, each carries its query's rare-term share.
    """
    store = _open(config)
    vectors = _encode(config, queries)
    settings = config.search
    depth = max(settings.candidates, rerank_depth(settings, k))
    where = _tenant_filter(tenant)
    adaptive = settings.hybrid_fusion == "adaptive"
    return [
        Candidates(vector=vector_hits(store, vector, depth, where), fts=fts_hits(store, query, depth, where),
                   rare_share=rare_terms(store, query, settings.rare_term_share, where) if adaptive else 0.0)
        for query, vector in zip(queries, vectors)
    ]


def rank(
    candidates: Candidates, mode: str, k: int, fusion: str = "linear", weight: float = 0.5,
    rare_weight: float = 0.5,
) -> list[dict[str, Any]]:
    """The top k of one mode from a query's candidates: what `search_hits` returns for it."""
    _check_mode(mode)
    if mode == "vector":
        return candidates.vector[:k]
    if mode == "fts":
        return candidates.fts[:k]
    _check_fusion(fusion, weight)
    return HybridFusion(fusion, weight, rare_weight).fuse(candidates.vector, candidates.fts, candidates.rare_share)[:k]


def rerank(
    settings: SearchConfig, queries: list[str], results: list[list[dict[str, Any]]], k: int
) -> list[list[dict[str, Any]]]:
    """The cross-encoder stage when `rerank_model` is set (top `rerank_candidates` re-scored), cut to k."""
    if not settings.rerank_model:
        return [hits[:k] for hits in results]
    from kbflow.rerank import load_reranker, rerank_hits  # torch-heavy: only when configured

    reranker = load_reranker(settings.rerank_model)
    return [
        rerank_hits(reranker, query, hits, top_n=settings.rerank_candidates)[:k]
        for query, hits in zip(queries, results)
    ]


def rerank_depth(settings: SearchConfig, k: int) -> int:
    """How many hits to retrieve so that a rerank stage sees all its candidates."""
    return max(k, settings.rerank_candidates) if settings.rerank_model else k


def search_hits(
    store: Store,
    vector: np.ndarray | None,
    text: str,
    k: int,
    tenant: str | None,
    mode: str,
    *,
    fusion: str = "linear",
    weight: float = 0.5,
    candidates: int = 50,
    rare_weight: float = 0.5,
    rare_term_share: float = 0.002,
) -> list[dict[str, Any]]:
    """Top-k chunks by vector, full-text or hybrid relevance; tenant filtered first.

    Hybrid takes the top `candidates` (at least k) of the vector and of the full-text
    ranking, each tenant-filtered, and fuses them as `HybridFusion(fusion, weight, rare_weight)`
    says (adaptive: with the query's `rare_terms` share at `rare_term_share`).
    """
    _check_mode(mode)
    if mode == "hybrid":
        _check_fusion(fusion, weight)
        depth = max(k, candidates)
        where = _tenant_filter(tenant)
        vector_ranking = vector_hits(store, vector, depth, where)
        fts_ranking = fts_hits(store, text, depth, where)
        rare_share = rare_terms(store, text, rare_term_share, where) if fusion == "adaptive" else 0.0
        return HybridFusion(fusion, weight, rare_weight).fuse(vector_ranking, fts_ranking, rare_share)[:k]
    if mode == "vector":
        return vector_hits(store, vector, k, _tenant_filter(tenant))
    return fts_hits(store, text, k, _tenant_filter(tenant))


def vector_hits(
    store: Store,
    vector: np.ndarray,
    k: int,
    where: str | None = None,
    columns: Sequence[str] = SEARCH_COLUMNS,
    version: int | None = None,
) -> list[dict[str, Any]]:
    """The k nearest chunks with their cosine similarity as `score`, best first; `where` filters first.

    kbflow's one vector query (`Store.nearest_chunks`, ANN-tuned): search, eval, the hard-
    negative miner and RAFT's oracle and distractors compare the same scores.
    """
    hits = store.nearest_chunks(vector, k, where, columns, version)
    return [{**hit, "score": 1.0 - float(hit.pop("_distance"))} for hit in hits]


def fts_hits(
    store: Store, text: str, k: int, where: str | None = None, columns: Sequence[str] = SEARCH_COLUMNS
) -> list[dict[str, Any]]:
    """The k best full-text matches with their BM25 `score`, best first; `where` filters first."""
    return [{**hit, "score": float(hit.pop("_score"))} for hit in store.matching_chunks(text, k, where, columns)]


def rare_terms(store: Store, text: str, rare_term_share: float, where: str | None = None) -> float:
    """The share of the query's indexed terms that at most `rare_term_share` of the chunks hold.

    Each distinct word of the query is looked up alone in the full-text index (so it is
    stemmed and stop-worded as the index does), at most a rare term's count + 1 deep: a term
    no chunk holds (a stop word, a typo) does not count; a query with no indexed term is 0.
    The chunk count is the filtered one (a tenant's view), at least one chunk is rare.

    Costs one full-text lookup per distinct word (milliseconds each).
    """
    words = list(dict.fromkeys(TERM.findall(text.lower())))
    if not words:
        return 0.0
    total = store.count(CHUNKS, where)
    rare_limit = max(1, int(rare_term_share * total))
    counts = [len(store.matching_chunks(word, rare_limit + 1, where, columns=("chunk_id",))) for word in words]
    indexed = [count for count in counts if count > 0]
    return sum(count <= rare_limit for count in indexed) / len(indexed) if indexed else 0.0


def fuse_hits(
    vector_ranking: list[dict[str, Any]], fts_ranking: list[dict[str, Any]], fusion: str = "linear", weight: float = 0.5
) -> list[dict[str, Any]]:
    """One ranking from the vector and the full-text ranking of a query; "score" is the fused score.

    linear: weight * minmax(cosine) + (1 - weight) * minmax(BM25), a hit missing from a
    ranking scoring 0 there; rrf: weight / (60 + vector rank) + (1 - weight) / (60 + fts rank).
    Ties go to the ranking with the larger weight, so weight 1 gives exactly the vector
    ranking and weight 0 the full-text one: a tuned weight is never worse than either.

    >>> a, b = {"chunk_id": "a", "score": 0.9}, {"chunk_id": "b", "score": 7.0}
    >>> [hit["chunk_id"] for hit in fuse_hits([a], [b], "rrf", weight=0.7)]
    ['a', 'b']
    """
    _check_fusion(fusion, weight)
    if fusion == "adaptive":
        raise InvalidInput("adaptive fusion sets a weight per query: use HybridFusion(\"adaptive\", ...).fuse")
    vector_rank = {hit["chunk_id"]: rank for rank, hit in enumerate(vector_ranking, start=1)}
    fts_rank = {hit["chunk_id"]: rank for rank, hit in enumerate(fts_ranking, start=1)}
    if fusion == "linear":
        vector_part, fts_part = _min_max(vector_ranking), _min_max(fts_ranking)
    else:
        vector_part = {chunk_id: 1.0 / (RRF_K + rank) for chunk_id, rank in vector_rank.items()}
        fts_part = {chunk_id: 1.0 / (RRF_K + rank) for chunk_id, rank in fts_rank.items()}
    hits: dict[str, dict[str, Any]] = {}
    for hit in [*vector_ranking, *fts_ranking]:
        hits.setdefault(hit["chunk_id"], hit)
    fused = {c: weight * vector_part.get(c, 0.0) + (1.0 - weight) * fts_part.get(c, 0.0) for c in hits}
    first, second = (vector_rank, fts_rank) if weight >= 0.5 else (fts_rank, vector_rank)
    missing = len(hits) + 1
    order = sorted(hits, key=lambda c: (-fused[c], first.get(c, missing), second.get(c, missing)))
    return [{**hits[chunk_id], "score": fused[chunk_id]} for chunk_id in order]


def _min_max(hits: list[dict[str, Any]]) -> dict[str, float]:
    """Scores scaled to [0, 1] within one ranking (all 1 when they are equal)."""
    if not hits:
        return {}
    scores = [float(hit["score"]) for hit in hits]
    low, high = min(scores), max(scores)
    span = high - low
    return {hit["chunk_id"]: (score - low) / span if span else 1.0 for hit, score in zip(hits, scores)}


def _tenant_filter(tenant: str | None) -> str | None:
    return None if tenant is None else f"tenant = {sql_string(tenant)}"


def _check_fusion(fusion: str, weight: float) -> None:
    if fusion not in FUSIONS:
        raise InvalidInput(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if not 0.0 <= weight <= 1.0:
        raise InvalidInput(f"hybrid weight must be between 0 and 1, not {weight}")


def _check_mode(mode: str) -> None:
    if mode not in SEARCH_MODES:
        raise InvalidInput(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")


def _open(config: KbflowConfig) -> Store:
    store = Store.existing(config.store)
    store.table(CHUNKS)  # a clear error before loading a model for an empty store
    store.check_model(config.embedding.model)
    return store


def _encode(config: KbflowConfig, queries: list[str]) -> list[np.ndarray]:
    if not queries:
        return []
    return list(load_embedder(config.embedding).encode(queries))
