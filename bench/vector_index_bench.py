"""ANN index at scale: query latency and recall@10 of kbflow's vector index vs exact search.

    python bench/vector_index_bench.py [--rows 1000000] [--index ivf_pq,ivf_hnsw_sq] [--dir DIR] [--out FILE]

Data: `--rows` synthetic 384-d vectors (all-MiniLM-L6-v2's dimension), a Gaussian
mixture (`--clusters` centres, per-cluster spread), L2-normalised, generated in
batches of 100,000 from a fixed seed (memory stays bounded) and written to a
LanceDB table in one commit. Queries: 200 data points, perturbed and normalised.
Exact top-10 (cosine = dot product) is computed by numpy in the same pass, batch
by batch. For each index type the index is built with kbflow's own sizing
(`kbflow.store.vector_index_config`: ~sqrt(rows) partitions, dim/8 PQ sub-vectors)
and queried with kbflow's query knobs (`tune_vector_query`: nprobes, refine_factor,
ef) over a small grid. Reported: build time, p50/p95 latency of single queries
(after a warm-up, one at a time, as `kbflow search` runs them), recall@10 vs exact,
and the exact (index-bypassing) scan's latency for scale. Targets: p50 <= 20 ms and
recall@10 >= 0.95 at the default knobs. `--dir` keeps the generated table (and the
exact answers) for the next run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa

import kbflow

kbflow.set_process_defaults()  # offline / no-analytics defaults first
from kbflow.config import StoreConfig
from kbflow.vector_index import refine_factor, tune_vector_query, vector_index_config

DIM, K, QUERIES, BATCH, WARMUP = 384, 10, 200, 100_000, 10
DEFAULTS = StoreConfig()
# (nprobes, refine_factor) per index type (refine None: the type's default, 0: off); the first row is kbflow's default.
GRID = {
    "ivf_pq": [(DEFAULTS.vector_nprobes, None), (10, 30), (20, 0), (20, 10), (20, 50)],
    "ivf_hnsw_sq": [(DEFAULTS.vector_nprobes, None), (10, 0), (20, 0), (20, 30)],
}


def cluster_centres(seed: int, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 0])
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.4, 0.9, clusters).astype(np.float32)  # noise norm relative to the centre
    return centres, spread


def vector_batch(seed: int, batch: int, rows: int, centres: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Rows [batch*BATCH, ...) of the data set: the same numbers whenever they are generated."""
    rng = np.random.default_rng([seed, 1, batch])
    n = min(BATCH, rows - batch * BATCH)
    labels = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * (spread[labels] / np.sqrt(DIM))[:, None]
    vectors = centres[labels] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def generate(db, args) -> tuple[np.ndarray, np.ndarray, float]:
    """Write the table; return the queries, their exact top-K ids and the seconds it took."""
    started = time.perf_counter()
    centres, spread = cluster_centres(args.seed, args.clusters)
    rng = np.random.default_rng([args.seed, 2])
    query_ids = np.sort(rng.choice(args.rows, QUERIES, replace=False))
    queries = np.zeros((QUERIES, DIM), np.float32)
    best_ids = np.full((QUERIES, K), -1, np.int64)
    best_scores = np.full((QUERIES, K), -np.inf, np.float32)
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), DIM))])

    def batches():
        for batch in range((args.rows + BATCH - 1) // BATCH):
            vectors = vector_batch(args.seed, batch, args.rows, centres, spread)
            first = batch * BATCH
            ids = np.arange(first, first + len(vectors))
            inside = (query_ids >= first) & (query_ids < first + len(vectors))
            noise = rng.standard_normal((inside.sum(), DIM)).astype(np.float32) * (0.3 / np.sqrt(DIM))
            picked = vectors[query_ids[inside] - first] + noise
            queries[inside] = picked / np.linalg.norm(picked, axis=1, keepdims=True)
            yield pa.RecordBatch.from_arrays(
                [pa.array(ids), pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)], schema=schema
            )
            del vectors

    # Queries are only known once their batch was generated: a second pass computes the exact answers.
    db.create_table("vectors", data=batches(), schema=schema, mode="overwrite")
    for batch in range((args.rows + BATCH - 1) // BATCH):
        vectors = vector_batch(args.seed, batch, args.rows, centres, spread)
        scores = queries @ vectors.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_ids = np.concatenate([best_ids, top + batch * BATCH], axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :K]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_ids = np.take_along_axis(merged_ids, order, axis=1)
    return queries, best_ids, time.perf_counter() - started


def load_or_generate(work: Path, args) -> tuple[object, np.ndarray, np.ndarray, float | None]:
    db = lancedb.connect(work / "db")
    meta = {"rows": args.rows, "seed": args.seed, "clusters": args.clusters}
    meta_path = work / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()) == meta and "vectors" in db.list_tables().tables:
        return db.open_table("vectors"), np.load(work / "queries.npy"), np.load(work / "exact.npy"), None
    queries, exact, seconds = generate(db, args)
    np.save(work / "queries.npy", queries)
    np.save(work / "exact.npy", exact)
    meta_path.write_text(json.dumps(meta))
    return db.open_table("vectors"), queries, exact, seconds


def run_queries(
    table, queries: np.ndarray, config: StoreConfig | None, warmup: int = WARMUP
) -> tuple[list[np.ndarray], list[float]]:
    """One query at a time, after `warmup` untimed ones; config None: exact scan (index bypassed)."""
    found, latencies = [], []
    for i, query in enumerate(np.concatenate([queries[:warmup], queries])):
        started = time.perf_counter()
        search = table.search(query, vector_column_name="vector").distance_type("cosine")
        search = search.bypass_vector_index() if config is None else tune_vector_query(search, config, K)
        ids = search.select(["id", "_distance"]).limit(K).to_arrow().column("id").to_numpy()
        if i >= warmup:
            latencies.append((time.perf_counter() - started) * 1000)
            found.append(ids)
    return found, latencies


def recall(found: list[np.ndarray], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / K for f, e in zip(found, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--index", default="ivf_pq,ivf_hnsw_sq", help="comma-separated: ivf_pq, ivf_hnsw_sq")
    parser.add_argument("--dir", type=Path, help="keep the data here and reuse it (default: a temporary dir)")
    parser.add_argument("--reuse-index", action="store_true", help="query the index a --dir run left, no build")
    parser.add_argument("--exact-queries", type=int, default=5, help="queries timed without the index")
    parser.add_argument("--out", type=Path, default=Path("bench/results/vector_index.json"))
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="kbflow-vector-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"rows": args.rows, "dim": DIM, "clusters": args.clusters, "queries": QUERIES, "configs": []}
    try:
        table, queries, exact, generated = load_or_generate(work, args)
        results["generate_s"] = generated
        print(f"{args.rows:,} x {DIM} vectors in {work}" + (f", generated in {generated:.0f} s" if generated else ""),
              file=sys.stderr)
        _, exact_latency = run_queries(table, queries[: args.exact_queries], None, warmup=1)
        results["exact_p50_ms"] = float(np.percentile(exact_latency, 50))
        print(f"exact scan: p50 {results['exact_p50_ms']:.0f} ms", file=sys.stderr)
        for kind in args.index.split(","):
            config = StoreConfig(vector_index_type=kind)
            index = vector_index_config(config, args.rows, DIM)
            started = time.perf_counter()
            if not (args.reuse_index and f"vector_{kind}" in [i.name for i in table.list_indices()]):
                table.create_index("vector", config=index, name=f"vector_{kind}", replace=True)
            build_s = time.perf_counter() - started
            print(f"{kind}: built in {build_s:.0f} s ({index})", file=sys.stderr)
            for nprobes, refine in GRID[kind]:
                knobs = config.model_copy(update={"vector_nprobes": nprobes, "vector_refine_factor": refine})
                found, latency = run_queries(table, queries, knobs)
                row = {"index": kind, "build_s": round(build_s, 1), "nprobes": nprobes,
                       "refine_factor": refine_factor(knobs),
                       "p50_ms": round(float(np.percentile(latency, 50)), 2),
                       "p95_ms": round(float(np.percentile(latency, 95)), 2),
                       "recall@10": round(recall(found, exact), 4),
                       "default": (nprobes, refine) == GRID[kind][0]}
                results["configs"].append(row)
                print(json.dumps(row), file=sys.stderr)
            if args.dir is None or not args.reuse_index:
                table.drop_index(f"vector_{kind}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


def print_table(results: dict) -> None:
    print(f"\n{results['rows']:,} x {results['dim']}-d vectors, {results['queries']} queries, "
          f"exact scan p50 {results['exact_p50_ms']:.0f} ms")
    print("| index | build s | nprobes | refine | p50 ms | p95 ms | recall@10 | p50 <= 20 ms | recall >= 0.95 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results["configs"]:
        mark = " (default)" if row["default"] else ""
        print(f"| {row['index']}{mark} | {row['build_s']:.0f} | {row['nprobes']} | {row['refine_factor'] or '-'} | "
              f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['recall@10']:.3f} | "
              f"{'yes' if row['p50_ms'] <= 20 else 'no'} | {'yes' if row['recall@10'] >= 0.95 else 'no'} |")


if __name__ == "__main__":
    main()
