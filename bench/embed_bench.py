"""Embedding throughput: kbflow's embed stage vs naive `SentenceTransformer.encode`, side by side.

    python bench/embed_bench.py [--parts abcd] [--chunks N] [--boilerplate-chunks N] [--repeats R] [--out FILE]

Baseline ("naive"): `model.encode(texts, batch_size=64, normalize_embeddings=True)`,
fp32 torch, one call over every chunk text, with the same loaded model kbflow uses.
Measured in one process, each measurement repeated R times and interleaved (the
order alternates per repeat) because the machine is shared; ratios are taken per
repeat and their median is reported, with the spread.

(a) distinct text: the first N chunks (all distinct texts) of the PostgreSQL manual
    (Debian `postgresql-doc-15`, pages in name order, chunked by kbflow);
    kbflow = `kbflow.tasks.index.embed.embed_chunks` (distinct texts once, sorted by length,
    <= 16 encode calls for progress). Target: naive time / kbflow time >= 0.95.
(b) repeated boilerplate, per source chunk: the Debian copyright files of this
    machine (/usr/share/doc/*/copyright), whole files in package-name order until
    N chunks. The PostgreSQL manual cannot serve here: kbflow's HTML parser drops
    its navigation, and its chunks are 99.8% distinct. Target: >= 1.3.
(c) ONNX Runtime backend (`embedding.backend = "onnx"`) on the texts of (a):
    speed vs naive and vs kbflow-torch, mean/min cosine to the naive fp32
    vectors, and hit@5 on an eval set built from the (a) chunks with kbflow's
    query generators (heading: a section's heading path -> that section's chunks;
    ict: a sentence -> its chunk; corpus = the (a) chunks). Target: <= 1 point hit@5 loss.
(d) torch intra-op threads: 1 vs the default, on the first 48 texts of (a).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
from ingest_bench import DEFAULT_CORPUS, timed

import kbflow  # noqa: F401  - offline / no-analytics defaults first

BOILERPLATE_CORPUS = Path("/usr/share/doc")  # */copyright: Debian's per-package licence files


def corpus_chunks(source, paths, tokenizer, max_tokens: int, overlap: int, limit: int) -> pa.Table:
    """kbflow's own discover -> parse -> chunk of `paths` (in the order given), whole files until `limit` chunks."""
    from kbflow.tasks.index.chunk import chunk_documents
    from kbflow.tasks.sources.discover import discover_source
    from kbflow.tasks.sources.read import parse_documents

    items = discover_source(source, 10**9).items
    by_uri = {uri: i for i, uri in enumerate(items.column("uri").to_pylist())}
    tables, total = [], 0
    for path in paths:
        documents, _ = parse_documents(items.slice(by_uri[path], 1), [source])
        table = chunk_documents(documents, tokenizer, max_tokens, overlap)
        tables.append(table)
        total += table.num_rows
        if total >= limit:
            break
    return pa.concat_tables(tables)


def first_distinct(table: pa.Table, n: int) -> pa.Table:
    seen, keep = set(), []
    for i, text_hash in enumerate(table.column("text_hash").to_pylist()):
        if text_hash not in seen:
            seen.add(text_hash)
            keep.append(i)
        if len(keep) == n:
            break
    return table.take(keep)


def interleaved(measurements: dict, repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds per measurement and repeat (the order reversed on every other repeat), and the last results."""
    names = list(measurements)
    seconds: dict[str, list[float]] = defaultdict(list)
    results = {}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            results[name], elapsed = timed(measurements[name])
            seconds[name].append(elapsed)
            print(f"  repeat {repeat + 1}: {name}: {elapsed:.1f} s", file=sys.stderr, flush=True)
    return seconds, results


def ratio(seconds: dict[str, list[float]], slow: str, fast: str) -> dict:
    """slow time / fast time per repeat (> 1: `fast` is faster): median and spread."""
    ratios = [s / f for s, f in zip(seconds[slow], seconds[fast])]
    return {"median": round(statistics.median(ratios), 3), "runs": [round(r, 3) for r in ratios]}


def vectors_of(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("vector").to_pylist(), dtype=np.float32)


def eval_set(table: pa.Table) -> tuple[list[str], list[list[str]]]:
    """Queries and relevant chunk ids from kbflow's own generators over the chunks.

    heading: a section's heading path -> that section's chunks; ict: one sentence of a
    chunk -> that chunk (the corpus keeps the sentence: a lexical-overlap task, easy in
    absolute terms; what is compared is the same task under each backend).
    """
    from kbflow.tasks.datasets.generators import HeadingGenerator, IctGenerator
    from kbflow.tasks.datasets.pairs import Passage

    rows = table.select(["chunk_id", "doc_id", "source", "heading", "text"]).to_pylist()
    passages = [Passage(r["chunk_id"], r["doc_id"], r["source"], r["heading"], r["text"]) for r in rows]
    section = defaultdict(list)
    for r in rows:
        section[(r["doc_id"], r["heading"])].append(r["chunk_id"])
    doc_of = {r["chunk_id"]: r["doc_id"] for r in rows}
    rng = random.Random(0)
    headings = HeadingGenerator(min_query_tokens=3).generate(passages, rng)
    sentences = IctGenerator(keep_sentence=1.0, min_query_tokens=6).generate(passages, rng)
    queries = [p.query for p in headings] + [p.query for p in sentences]
    relevant = [section[(doc_of[p.chunk_id], p.query)] for p in headings] + [[p.chunk_id] for p in sentences]
    return queries, relevant


def retrieval_metrics(query_vectors: np.ndarray, corpus: np.ndarray, ids: list[str], relevant: list[list[str]]) -> dict:
    from kbflow.relevance import mean_metrics, query_metrics

    scores = query_vectors @ corpus.T
    per_query = []
    for row, wanted in zip(scores, relevant):
        top = [ids[i] for i in np.argsort(-row)[:10]]
        per_query.append(query_metrics([i if i in wanted else None for i in top], len(wanted)))
    return mean_metrics(per_query)


def cosines(vectors: np.ndarray, reference: np.ndarray) -> dict:
    values = (vectors * reference).sum(axis=1)
    return {"mean": float(values.mean()), "min": float(values.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--boilerplate-corpus", type=Path, default=BOILERPLATE_CORPUS)
    parser.add_argument("--chunks", type=int, default=160, help="(a), (c): distinct chunks of the manual")
    parser.add_argument("--boilerplate-chunks", type=int, default=1000, help="(b): source chunks, whole files")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="abcd", help="which of (a)-(d) to run, e.g. `ac` (each run <= 15 min)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/embed.json"))
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found; run `apt-get install postgresql-doc-15` or pass --corpus")

    import torch

    from kbflow.config import ChunkingConfig, EmbeddingConfig, source_config
    from kbflow.models import load_embedder
    from kbflow.tasks.index.embed import embed_chunks

    torch_embedder, load_s = timed(lambda: load_embedder(EmbeddingConfig(device="cpu")))
    model = torch_embedder._model
    tokenizer, max_tokens = torch_embedder.tokenizer, torch_embedder.max_tokens
    overlap = ChunkingConfig().overlap_tokens
    work = Path(tempfile.mkdtemp(prefix="kbflow-embed-bench-"))

    manual = source_config(name="manual", kind="files", path=args.corpus, include=["**/*.html"], tenant="bench")
    pages = sorted(str(p.relative_to(args.corpus)) for p in args.corpus.rglob("*.html"))
    manual_chunks = corpus_chunks(manual, pages, tokenizer, max_tokens, overlap, args.chunks * 2)
    distinct = first_distinct(manual_chunks, args.chunks)

    licences = work / "copyright"
    licences.mkdir()
    for path in sorted(args.boilerplate_corpus.glob("*/copyright")):
        shutil.copy(path, licences / f"{path.parent.name}.txt")  # follows symlinks: a package's own copy
    copyright_source = source_config(name="copyright", kind="files", path=licences, include=["*.txt"], tenant="bench")
    names = sorted(p.name for p in licences.glob("*.txt"))
    boiler = corpus_chunks(copyright_source, names, tokenizer, max_tokens, overlap, args.boilerplate_chunks)
    boiler_texts = boiler.column("text").to_pylist()

    onnx_embedder, onnx_load_s = (None, 0.0) if "c" not in args.parts else timed(
        lambda: load_embedder(EmbeddingConfig(device="cpu", backend="onnx"))
    )

    def naive(texts):
        return lambda: model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

    texts = distinct.column("text").to_pylist()
    print(f"(a)+(c): {len(texts)} distinct manual chunks; (b): {len(boiler_texts)} copyright chunks, "
          f"{len(set(boiler_texts))} distinct", file=sys.stderr)
    measurements = {}
    if "a" in args.parts or "c" in args.parts:  # (c) is judged against (a)'s naive run
        measurements["a_naive"] = naive(texts)
        measurements["a_kbflow_torch"] = lambda: embed_chunks(distinct, torch_embedder, {})
    if "b" in args.parts:
        measurements["b_naive"] = naive(boiler_texts)
        measurements["b_kbflow_torch"] = lambda: embed_chunks(boiler, torch_embedder, {})
    if "c" in args.parts:
        measurements["c_kbflow_onnx"] = lambda: embed_chunks(distinct, onnx_embedder, {})
    seconds, results = interleaved(measurements, args.repeats)
    result = {"note": "shared 2-core machine, other jobs running: ratios per interleaved repeat, median",
              "parts": args.parts, "repeats": args.repeats,
              "one_off_s": {"torch_model_load": round(load_s, 1), "onnx_export_or_cache_load": round(onnx_load_s, 1)}}

    if "a" in args.parts or "c" in args.parts:
        reference = np.asarray(results["a_naive"], dtype=np.float32)
        torch_vectors = vectors_of(results["a_kbflow_torch"].chunks)
        ids = distinct.column("chunk_id").to_pylist()
        queries, relevant = eval_set(distinct)
        naive_queries = model.encode(queries, normalize_embeddings=True)
        result["a_distinct"] = {
            "chunks": len(texts), "corpus": f"{args.corpus}, first {len(texts)} chunks (page-name order)",
            "naive_chunks_per_s": round(len(texts) / statistics.median(seconds["a_naive"]), 2),
            "kbflow_chunks_per_s": round(len(texts) / statistics.median(seconds["a_kbflow_torch"]), 2),
            "kbflow_over_naive_throughput": ratio(seconds, "a_naive", "a_kbflow_torch"),
            "cosine_to_naive_fp32": cosines(torch_vectors, reference),
        }
        result["retrieval"] = {
            "eval": f"{len(queries)} queries (heading paths, ict sentences) over {len(ids)} chunks",
            "naive_fp32": retrieval_metrics(naive_queries, reference, ids, relevant),
            "kbflow_torch": retrieval_metrics(torch_embedder.encode(queries), torch_vectors, ids, relevant),
        }
    if "b" in args.parts:
        result["b_boilerplate"] = {
            "corpus": f"{args.boilerplate_corpus}/*/copyright, whole files in package-name order",
            "files": len(set(boiler.column("uri").to_pylist())), "source_chunks": len(boiler_texts),
            "distinct": results["b_kbflow_torch"].embedded,
            "naive_source_chunks_per_s": round(len(boiler_texts) / statistics.median(seconds["b_naive"]), 2),
            "kbflow_source_chunks_per_s": round(len(boiler_texts) / statistics.median(seconds["b_kbflow_torch"]), 2),
            "kbflow_over_naive_per_source_chunk": ratio(seconds, "b_naive", "b_kbflow_torch"),
        }
    if "c" in args.parts:
        onnx_vectors = vectors_of(results["c_kbflow_onnx"].chunks)
        onnx_metrics = retrieval_metrics(onnx_embedder.encode(queries), onnx_vectors, ids, relevant)
        result["retrieval"]["onnx"] = onnx_metrics
        result["c_onnx"] = {
            "onnx_chunks_per_s": round(len(texts) / statistics.median(seconds["c_kbflow_onnx"]), 2),
            "onnx_over_naive_throughput": ratio(seconds, "a_naive", "c_kbflow_onnx"),
            "onnx_over_kbflow_torch_throughput": ratio(seconds, "a_kbflow_torch", "c_kbflow_onnx"),
            "cosine_to_naive_fp32": cosines(onnx_vectors, reference),
            "hit@5_delta_points_vs_naive":
                round(100 * (onnx_metrics["hit@5"] - result["retrieval"]["naive_fp32"]["hit@5"]), 2),
        }
    if "d" in args.parts:
        default_threads = torch.get_num_threads()
        few = texts[:48]

        def with_threads(n):
            def run():
                torch.set_num_threads(n)
                try:
                    return naive(few)()
                finally:
                    torch.set_num_threads(default_threads)
            return run

        thread_runs = {"d_threads_1": with_threads(1), "d_threads_default": with_threads(default_threads)}
        thread_seconds, _ = interleaved(thread_runs, args.repeats)
        seconds.update(thread_seconds)
        result["d_threads"] = {"texts": len(few), "default_threads": default_threads,
                               "default_over_1_thread_speed": ratio(seconds, "d_threads_1", "d_threads_default")}
    result["seconds"] = {name: [round(s, 2) for s in runs] for name, runs in seconds.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
