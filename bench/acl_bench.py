"""Search latency with an ACL prefilter vs without, at 100,000 chunks (kbflow.access).

Synthetic data, said plainly: random unit vectors (384 d, the default model's size), texts of 12
random words from a 2,000-word vocabulary, ACLs of 1-3 of 50 groups (5% public). The store is
written through `Store.publish`, so it has what a real one has at this size: the IVF-PQ index
(built at `vector_index_min_rows` = 100,000), the FTS index and the LABEL_LIST index on `acl`.

Both arms run in one process on the same store, interleaved query by query (same queries, same
order), for vector and full-text search at k = 10. The reader holds 2 groups + public: it sees
~9% of the chunks. Reports p50 and mean per arm and the ratio filtered / unfiltered.

    .venv/bin/python bench/acl_bench.py [--rows 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from kbflow.config import StoreConfig
from kbflow.schemas import ACL, DOCUMENTS, chunks_schema
from kbflow.search import fts_hits, vector_hits
from kbflow.store import RowFilter, Store, new_run_id
from kbflow.tasks.index.embed import vector_column

DIM, GROUPS, WORDS = 384, [f"group:{i}" for i in range(50)], [f"w{i}" for i in range(2000)]


def build(root: Path, rows: int, seed: int = 0) -> Store:
    rng, picker = np.random.default_rng(seed), random.Random(seed)
    store = Store(StoreConfig(uri=str(root / "db")))
    schema = chunks_schema(DIM)
    run_id = new_run_id()
    step = 20_000
    parts = []
    for start in range(0, rows, step):
        ids = range(start, min(rows, start + step))
        vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        acls = [["public"] if picker.random() < 0.05 else picker.sample(GROUPS, picker.randint(1, 3)) for _ in ids]
        parts.append(pa.table({
            "chunk_id": [f"c{i}" for i in ids], "doc_id": [f"d{i // 4}" for i in ids], "source": ["s"] * len(ids),
            "uri": [f"d{i // 4}.md" for i in ids], "tenant": ["t"] * len(ids), "ordinal": [i % 4 for i in ids],
            "heading": [""] * len(ids), "text": [" ".join(picker.choices(WORDS, k=12)) for _ in ids],
            "text_hash": [f"h{i}" for i in ids], "n_tokens": [14] * len(ids), "metadata": ["{}"] * len(ids),
            "vector": vector_column(vectors, DIM), "model": ["synthetic"] * len(ids), "run_id": [run_id] * len(ids),
            "acl": pa.array(acls, ACL),
        }).select(schema.names).cast(schema))
    store.publish(run_id, pa.concat_tables(parts), DOCUMENTS.empty_table(), [])
    return store


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kbflow-acl-bench-") as tmp:
        started = time.perf_counter()
        store = build(Path(tmp), args.rows)
        indexes = sorted(index.index_type for index in store.table("chunks").list_indices())
        print(f"store: {args.rows:,} chunks in {time.perf_counter() - started:.0f} s; indexes {indexes}")
        rng, picker = np.random.default_rng(1), random.Random(1)
        reader = RowFilter(principals=[*picker.sample(GROUPS, 2), "public"])
        visible = store.count("chunks", reader)
        print(f"reader {list(reader.principals)} sees {visible:,} chunks ({visible / args.rows:.1%})")
        queries = [(rng.standard_normal(DIM).astype(np.float32), " ".join(picker.sample(WORDS, 2)))
                   for _ in range(args.queries)]
        for vector, text in queries[:10]:  # warm caches for both arms
            vector_hits(store, vector, 10), vector_hits(store, vector, 10, reader)
            fts_hits(store, text, 10), fts_hits(store, text, 10, reader)
        arms = {name: [] for name in ("vector", "vector+acl", "fts", "fts+acl")}
        short = 0
        for vector, text in queries:
            arms["vector"].append(timed(lambda: vector_hits(store, vector, 10)))
            arms["vector+acl"].append(timed(lambda: vector_hits(store, vector, 10, reader)))
            arms["fts"].append(timed(lambda: fts_hits(store, text, 10)))
            arms["fts+acl"].append(timed(lambda: fts_hits(store, text, 10, reader)))
            short += len(vector_hits(store, vector, 10, reader)) < 10
        print(f"{'arm':<12}{'p50 ms':>10}{'mean ms':>10}")
        for name, seconds in arms.items():
            print(f"{name:<12}{statistics.median(seconds) * 1e3:>10.2f}{statistics.mean(seconds) * 1e3:>10.2f}")
        for mode in ("vector", "fts"):
            p50 = statistics.median(arms[f"{mode}+acl"]) / statistics.median(arms[mode])
            mean = statistics.mean(arms[f"{mode}+acl"]) / statistics.mean(arms[mode])
            print(f"{mode}: filtered / unfiltered = {p50:.2f}x (p50), {mean:.2f}x (mean)")
        print(f"filtered vector searches with fewer than 10 hits: {short} of {len(queries)}")


if __name__ == "__main__":
    main()
