"""One hit per page: does collapsing results by page widen kbflow's lead over naive windows?

    python bench/page_collapse_bench.py --config WORK/kbflow.toml --questions bench/data/pg_questions.jsonl \\
        --naive-work WORK --corpus /usr/share/doc/postgresql-doc-15/html

Reuses what bench/retrieval_bench.py left in its --work folder (the kbflow index and config, the
naive windows' cached vectors) and scores both sides by the same rule, with no collapsing, at most
one hit per page and at most two, before the top 10 is cut: kbflow's vector and default hybrid
ranking (`[search]` of the config) and the naive windows' cosine ranking. Only queries are embedded.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import numpy as np
from retrieval_bench import cached_vectors, naive_windows

import kbflow

kbflow.set_process_defaults()  # offline / no-analytics defaults first
from kbflow.config import EmbeddingConfig, load_config
from kbflow.globs import matches
from kbflow.models import load_embedder
from kbflow.queries import read_queries
from kbflow.relevance import matched_ids, mean_metrics, query_metrics
from kbflow.search import rank, retrieve

DEPTH = 50  # hits ranked before collapsing: deep enough for ten distinct pages


def collapse(hits: list[dict], per_page: int | None) -> list[dict]:
    """The hits in order, at most `per_page` of each uri (None: all)."""
    if per_page is None:
        return hits
    seen: dict[str, int] = {}
    kept = []
    for hit in hits:
        seen[hit["uri"]] = seen.get(hit["uri"], 0) + 1
        if seen[hit["uri"]] <= per_page:
            kept.append(hit)
    return kept


def scores(rankings, questions) -> str:
    per_query = [query_metrics(matched_ids(hits[:10], q.relevant), len(q.relevant), 10)
                 for hits, q in zip(rankings, questions)]
    metrics = mean_metrics(per_query)
    return f"{metrics['hit@5']:.3f} / {metrics['mrr@10']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the kbflow.toml of a retrieval_bench work folder")
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--naive-work", type=Path, required=True, help="where retrieval_bench cached the naive vectors")
    parser.add_argument("--corpus", type=Path, required=True)
    args = parser.parse_args()

    config = load_config(args.config)
    questions = read_queries(args.questions)
    candidates = retrieve(config, [q.query for q in questions], DEPTH)
    include = tomllib.loads(args.config.read_text())["sources"][0]["include"]
    files = sorted((p.relative_to(args.corpus).as_posix(), p) for p in args.corpus.rglob("*") if p.is_file())
    uris, texts = naive_windows([(uri, path) for uri, path in files if matches(uri, include, [])])
    embedder = load_embedder(EmbeddingConfig())
    vectors = cached_vectors(embedder, texts, args.naive_work)
    query_vectors = np.asarray(embedder.encode([q.query for q in questions]), dtype=np.float32)
    naive = [[{"uri": uris[i]} for i in np.argsort(-row)[: DEPTH * 4]] for row in query_vectors @ vectors.T]
    search = config.search
    print("| per page | naive windows | kbflow vector | kbflow hybrid (default) |  (hit@5 / MRR@10)\n|---|---|---|---|")
    for per_page in (None, 1, 2):
        cells = [scores([collapse(hits, per_page) for hits in naive], questions)]
        for mode in ("vector", "hybrid"):
            ranked = [rank(c, mode, DEPTH, search.hybrid_fusion, search.hybrid_weight) for c in candidates]
            cells.append(scores([collapse(hits, per_page) for hits in ranked], questions))
        print(f"| {per_page or 'all'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
