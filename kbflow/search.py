"""Search the index: the Python API behind `kbflow search` and `kbflow eval`.

Tenant filtering happens inside LanceDB before ranking (a prefilter), so a
query for one tenant never sees another tenant's chunks, however close they are.

Hybrid search fuses the vector and the full-text ranking as `[search]` says
(`hybrid_fusion`, `hybrid_weight`, `candidates`; see `kbflow.store.fuse_hits`).
When `[search] rerank_model` names a cross-encoder, its scores reorder the top
`rerank_candidates` hits of any mode. `kbflow eval` goes through `retrieve`,
`rank` and `rerank` here, so it measures exactly what search returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kbflow.config import KbflowConfig, SearchConfig
from kbflow.models import load_embedder
from kbflow.store import FUSIONS, SEARCH_MODES, Store, fuse_hits

__all__ = ["FUSIONS", "SEARCH_MODES", "Candidates", "fuse_hits", "rank", "rerank", "rerank_depth", "retrieve", "search"]


@dataclass
class Candidates:
    """The vector and the full-text ranking of one query, deep enough to fuse and cut."""

    vector: list[dict[str, Any]]
    fts: list[dict[str, Any]]


def search(
    config: KbflowConfig,
    queries: list[str],
    k: int = 10,
    tenant: str | None = None,
    mode: str = "vector",
) -> list[list[dict[str, Any]]]:
    """Top-k hits for each query, in input order; the model is loaded once for all."""
    _check_mode(mode)
    store = _open(config)
    vectors = _encode(config, queries) if mode != "fts" else [None] * len(queries)
    settings = config.search
    depth = rerank_depth(settings, k)
    results = [
        store.search(vector, query, depth, tenant, mode, fusion=settings.hybrid_fusion,
                     weight=settings.hybrid_weight, candidates=settings.candidates)
        for query, vector in zip(queries, vectors)
    ]
    return rerank(settings, queries, results, k)


def retrieve(
    config: KbflowConfig, queries: list[str], k: int, tenant: str | None = None
) -> list[Candidates]:
    """Both rankings of each query, `max(candidates, k)` deep (deeper for a rerank stage).

    What evaluation ranks every mode from, and fuses in memory for every weight it tries.
    """
    store = _open(config)
    vectors = _encode(config, queries)
    depth = max(config.search.candidates, rerank_depth(config.search, k))
    return [
        Candidates(vector=store.search(vector, query, depth, tenant, "vector"),
                   fts=store.search(vector, query, depth, tenant, "fts"))
        for query, vector in zip(queries, vectors)
    ]


def rank(
    candidates: Candidates, mode: str, k: int, fusion: str = "linear", weight: float = 0.5
) -> list[dict[str, Any]]:
    """The top k of one mode from a query's candidates: what `Store.search` returns for it."""
    _check_mode(mode)
    if mode == "vector":
        return candidates.vector[:k]
    if mode == "fts":
        return candidates.fts[:k]
    return fuse_hits(candidates.vector, candidates.fts, fusion, weight)[:k]


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


def _check_mode(mode: str) -> None:
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")


def _open(config: KbflowConfig) -> Store:
    store = Store.existing(config.store)
    store.table("chunks")  # a clear error before loading a model for an empty store
    store.check_model(config.embedding.model)
    return store


def _encode(config: KbflowConfig, queries: list[str]) -> list[np.ndarray]:
    if not queries:
        return []
    return list(load_embedder(config.embedding).encode(queries))
