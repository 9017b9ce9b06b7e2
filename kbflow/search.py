"""Search the index: the Python API behind `kbflow search`.

Tenant filtering happens inside LanceDB before ranking (a prefilter), so a
query for one tenant never sees another tenant's chunks, however close they are.
"""

from __future__ import annotations

from typing import Any

from kbflow.config import KbflowConfig
from kbflow.models import load_embedder
from kbflow.store import SEARCH_MODES, Store


def search(
    config: KbflowConfig,
    queries: list[str],
    k: int = 10,
    tenant: str | None = None,
    mode: str = "vector",
) -> list[list[dict[str, Any]]]:
    """Top-k hits for each query, in input order; the model is loaded once for all."""
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
    store = Store(config.store)
    store.table("chunks")  # a clear error before loading a model for an empty store
    store.check_model(config.embedding.model)
    vectors = [None] * len(queries)
    if mode != "fts":
        embedder = load_embedder(config.embedding)
        vectors = list(embedder.encode(queries)) if queries else []
    return [store.search(vector, query, k, tenant, mode) for query, vector in zip(queries, vectors)]
