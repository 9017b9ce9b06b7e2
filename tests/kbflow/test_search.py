"""Hybrid fusion (linear and RRF, hand-computed; adaptive by rare terms), its endpoints, and the search path with a rerank stage."""

from __future__ import annotations

import math
import random
import sys
import types

import numpy as np
import pyarrow as pa
import pytest

from kbflow.config import DEFAULT_MODEL, KbflowConfig, StoreConfig
from kbflow.schemas import CHUNKED
from kbflow.search import Candidates, HybridFusion, fuse_hits, rank, rare_terms, retrieve, search, search_hits
from kbflow.store import Store, new_run_id
from kbflow.tasks.index.embed import vector_column

from fakes import HashEmbedder


def hits(*pairs: tuple[str, float]) -> list[dict]:
    return [{"chunk_id": chunk_id, "score": score, "uri": f"{chunk_id}.md"} for chunk_id, score in pairs]


def test_linear_fusion_is_weighted_min_max_with_missing_as_zero():
    vector = hits(("a", 0.9), ("b", 0.7), ("c", 0.5))  # min-max: a 1, b 0.5, c 0
    fts = hits(("c", 12.0), ("d", 4.0))  # min-max: c 1, d 0
    fused = fuse_hits(vector, fts, "linear", weight=0.6)
    scores = {hit["chunk_id"]: hit["score"] for hit in fused}
    assert scores == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.4, "d": 0.0})
    assert [hit["chunk_id"] for hit in fused] == ["a", "c", "b", "d"]
    assert fused[0]["uri"] == "a.md"  # the hit's fields are kept, only "score" changes


def test_rrf_fusion_is_weighted_reciprocal_rank():
    vector = hits(("a", 0.9), ("b", 0.8))
    fts = hits(("b", 3.0), ("c", 2.0))
    fused = {hit["chunk_id"]: hit["score"] for hit in fuse_hits(vector, fts, "rrf", weight=0.25)}
    assert fused["a"] == pytest.approx(0.25 / 61)
    assert fused["b"] == pytest.approx(0.25 / 62 + 0.75 / 61)
    assert fused["c"] == pytest.approx(0.75 / 62)


@pytest.mark.parametrize("fusion", ["linear", "rrf"])
def test_weight_one_is_the_vector_ranking_and_zero_the_fts_ranking(fusion):
    rng = random.Random(7)
    for _ in range(50):
        ids = [f"c{i}" for i in range(12)]
        cosines = sorted((rng.random() for _ in range(8)), reverse=True)
        bm25 = sorted((rng.choice([1.0, 2.0, 3.0]) for _ in range(8)), reverse=True)  # with ties
        vector = hits(*zip(rng.sample(ids, 8), cosines))
        fts = hits(*zip(rng.sample(ids, 8), bm25))
        candidates = Candidates(vector, fts)
        assert [h["chunk_id"] for h in rank(candidates, "hybrid", 8, fusion, 1.0)] == [h["chunk_id"] for h in vector]
        assert [h["chunk_id"] for h in rank(candidates, "hybrid", 8, fusion, 0.0)] == [h["chunk_id"] for h in fts]


def test_fusion_refuses_unknown_names_and_weights():
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse_hits([], [], "borda")
    with pytest.raises(ValueError, match="between 0 and 1"):
        fuse_hits([], [], "linear", 1.5)


# -- the store and the search API ------------------------------------------------------------

TEXTS = {
    "backup": "Nightly backups run at two and keep fourteen snapshots",
    "restore": "Restore a snapshot with lumen restore while the server is stopped",
    "ports": "The server listens on port 8420 by default",
    "billing": "Invoices are emailed on the first day of each month",
    "other-tenant": "Nightly backups of the secret tenant keep snapshots forever",
}


@pytest.fixture
def config(tmp_path) -> KbflowConfig:
    """A store whose chunks carry the hash embedder's vectors (the default model's name)."""
    embedder = HashEmbedder(name=DEFAULT_MODEL)
    rows = [{"chunk_id": name, "doc_id": name, "source": "docs", "uri": f"{name}.md",
             "tenant": "other" if name == "other-tenant" else "public", "ordinal": 0, "heading": "", "text": text,
             "text_hash": name, "n_tokens": 9, "metadata": "{}"} for name, text in TEXTS.items()]
    table = pa.Table.from_pylist(rows, schema=CHUNKED)
    run_id = new_run_id()
    table = (table.append_column("vector", vector_column(embedder.encode(list(TEXTS.values())), embedder.dim))
             .append_column("model", pa.array([DEFAULT_MODEL] * len(rows)))
             .append_column("run_id", pa.array([run_id] * len(rows))))
    config = KbflowConfig(store=StoreConfig(uri=str(tmp_path / "store")))
    from kbflow.schemas import DOCUMENTS

    documents = pa.Table.from_pylist([], schema=DOCUMENTS)
    Store(config.store).publish(run_id, table, documents, [])
    return config


def ids(found: list[dict]) -> list[str]:
    return [hit["chunk_id"] for hit in found]


def test_store_hybrid_fuses_tenant_filtered_candidates(config, hash_embedder):
    store = Store(config.store)
    query = "nightly backups snapshots"
    vector = hash_embedder.encode([query])[0]
    by_vector = search_hits(store, vector, query, 3, "public", "vector")
    by_fts = search_hits(store, vector, query, 3, "public", "fts")
    assert ids(search_hits(store, vector, query, 3, "public", "hybrid", weight=1.0)) == ids(by_vector)
    fts_first = search_hits(store, vector, query, 3, "public", "hybrid", fusion="rrf", weight=0.0)
    assert len(by_fts) == 2 and ids(fts_first)[:2] == ids(by_fts)  # then vector-only hits fill the list
    both = search_hits(store, vector, query, 10, "public", "hybrid", candidates=2)
    assert "other-tenant" not in ids(both)
    assert ids(both)[0] == "backup"
    assert both == sorted(both, key=lambda hit: -hit["score"])
    assert "other-tenant" in ids(search_hits(store, vector, query, 10, None, "hybrid", candidates=2))


def test_search_uses_the_configured_fusion(config, hash_embedder):
    query = ["restore a snapshot"]
    config.search.hybrid_weight = 1.0
    assert ids(search(config, query, k=4, mode="hybrid")[0]) == ids(search(config, query, k=4, mode="vector")[0])
    config.search.hybrid_weight, config.search.hybrid_fusion = 0.0, "rrf"
    by_fts = ids(search(config, query, k=4, mode="fts")[0])
    assert ids(search(config, query, k=4, mode="hybrid")[0])[: len(by_fts)] == by_fts


def test_rerank_stage_reorders_the_top_candidates_when_configured(config, hash_embedder, monkeypatch):
    calls = []

    def rerank_hits(reranker, query, found, top_n):
        calls.append((reranker, query, len(found), top_n))
        head = sorted(found[:top_n], key=lambda hit: hit["chunk_id"])  # a "cross-encoder" that likes the alphabet
        return [{**hit, "rerank_score": -i} for i, hit in enumerate(head)] + found[top_n:]

    fake = types.ModuleType("kbflow.rerank")
    fake.load_reranker = lambda path: f"reranker at {path}"
    fake.rerank_hits = rerank_hits
    monkeypatch.setitem(sys.modules, "kbflow.rerank", fake)
    config.search.rerank_model, config.search.rerank_candidates = "/models/cross", 4

    found = search(config, ["server snapshot backups"], k=2, mode="vector")[0]
    assert calls == [("reranker at /models/cross", "server snapshot backups", 4, 4)]  # retrieved max(k, 4)
    assert len(found) == 2
    assert ids(found) == sorted(ids(found)) and "rerank_score" in found[0]


def test_min_max_of_equal_scores_is_one():
    fused = fuse_hits(hits(("a", 0.5), ("b", 0.5)), [], "linear", 0.5)
    assert [hit["score"] for hit in fused] == [0.5, 0.5]
    assert math.isclose(fuse_hits([], hits(("c", 2.0)), "linear", 0.0)[0]["score"], 1.0)
    assert np.isfinite([hit["score"] for hit in fused]).all()


def test_the_fusion_docstring_example_holds():
    import doctest

    import kbflow.search

    results = doctest.testmod(kbflow.search)
    assert results.attempted >= 1 and results.failed == 0


# -- adaptive fusion: the weight follows the query's rare terms ---------------------------------


def test_adaptive_weight_moves_from_weight_to_rare_weight_with_the_rare_share():
    adaptive = HybridFusion("adaptive", weight=0.9, rare_weight=0.3)
    assert [adaptive.weight_for(share) for share in (0.0, 0.5, 1.0)] == pytest.approx([0.9, 0.6, 0.3])
    assert HybridFusion("linear", weight=0.9, rare_weight=0.3).weight_for(1.0) == 0.9  # fixed fusions ignore it


def test_adaptive_fusion_is_linear_fusion_at_the_query_weight():
    rng = random.Random(3)
    for _ in range(30):
        ids_ = [f"c{i}" for i in range(10)]
        vector = hits(*zip(rng.sample(ids_, 6), sorted((rng.random() for _ in range(6)), reverse=True)))
        fts = hits(*zip(rng.sample(ids_, 6), sorted((rng.uniform(1, 9) for _ in range(6)), reverse=True)))
        share = rng.choice([0.0, 0.25, 0.5, 1.0])
        candidates = Candidates(vector, fts, rare_share=share)
        expected = fuse_hits(vector, fts, "linear", 0.8 + (0.2 - 0.8) * share)
        assert rank(candidates, "hybrid", 10, "adaptive", 0.8, rare_weight=0.2) == expected
    every_term_rare = Candidates(vector, fts, rare_share=1.0)
    assert ids(rank(every_term_rare, "hybrid", 6, "adaptive", 1.0, rare_weight=0.0)) == ids(fts)
    assert ids(rank(Candidates(vector, fts), "hybrid", 6, "adaptive", 1.0, rare_weight=0.0)) == ids(vector)


def test_fuse_hits_refuses_adaptive_without_a_query_weight():
    with pytest.raises(ValueError, match="per query"):
        fuse_hits([], [], "adaptive", 0.5)


def test_rare_terms_counts_chunks_in_the_full_text_index(config):
    store = Store(config.store)
    # 5 chunks, share 0.25: a term in at most 1 chunk is rare. "lumen" and "restore" are in one
    # chunk, "server" in two, "the" is a stop word and "zzz" in none: neither of those counts.
    assert rare_terms(store, "lumen", 0.25) == 1.0
    assert rare_terms(store, "server", 0.25) == 0.0  # the positive control above is not a constant
    assert rare_terms(store, "restore the LUMEN server zzz", 0.25) == pytest.approx(2 / 3)
    assert rare_terms(store, "zzz the", 0.25) == 0.0
    assert rare_terms(store, "", 0.25) == 0.0
    # a tenant's view: "nightly" is in two chunks, one of them the public tenant's
    assert rare_terms(store, "nightly", 0.25) == 0.0
    assert rare_terms(store, "nightly", 0.25, "tenant = 'public'") == 1.0


def test_search_with_adaptive_fusion_follows_fts_for_rare_terms_and_vector_otherwise(config, hash_embedder):
    config.search.hybrid_fusion, config.search.hybrid_weight = "adaptive", 1.0
    config.search.rare_term_weight, config.search.rare_term_share = 0.0, 0.25
    rare, common = ["month"], ["server snapshot"]  # every term rare / none rare (server 2, snapshot 3 chunks)
    assert ids(search(config, rare, k=1, mode="fts")[0]) != ids(search(config, rare, k=1, mode="vector")[0])
    assert ids(search(config, rare, k=1, mode="hybrid")[0]) == ids(search(config, rare, k=1, mode="fts")[0])
    assert ids(search(config, common, k=4, mode="hybrid")[0]) == ids(search(config, common, k=4, mode="vector")[0])


def test_evaluation_ranks_adaptive_fusion_as_search_does(config, hash_embedder):
    config.search.hybrid_fusion, config.search.hybrid_weight = "adaptive", 0.9
    config.search.rare_term_weight, config.search.rare_term_share = 0.1, 0.25
    queries = ["month", "server snapshot", "restore the lumen server"]
    candidates = retrieve(config, queries, k=4)
    assert [c.rare_share for c in candidates] == pytest.approx([1.0, 0.0, 2 / 3])
    settings = config.search
    ranked = [rank(c, "hybrid", 4, settings.hybrid_fusion, settings.hybrid_weight, settings.rare_term_weight)
              for c in candidates]
    assert [ids(found) for found in ranked] == [ids(found) for found in search(config, queries, k=4)]
