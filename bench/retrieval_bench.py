"""Retrieval on natural questions: naive fixed windows vs kbflow's index, side by side in one run.

    python bench/retrieval_bench.py                      # the PostgreSQL manual, bench/data/pg_questions.jsonl
    python bench/retrieval_bench.py --corpus /usr/share/doc/python3.11/html/_sources \\
        --questions bench/data/python_questions.jsonl --include 'tutorial/**' 'howto/**' 'library/**'

Both sides use the same model (the packaged all-MiniLM-L6-v2) and the same scoring
(kbflow.relevance: a page counts once, at its best rank):
1. naive: every file's text (HTML tags stripped, nothing else removed) cut into windows
   of 180 words with a stride of 150, embedded, ranked by cosine similarity: what a
   first RAG prototype does;
2. kbflow: `kbflow ingest` of the same files (a real CLI process, default config), then
   `kbflow eval --json` on the same questions, every search mode.
Vectors of the naive side and the kbflow index are kept under --work, so a re-run only
scores (kbflow's re-run is a no-change ingest). Prints a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

import kbflow

kbflow.set_process_defaults()  # offline / no-analytics defaults first
from kbflow.config import EmbeddingConfig
from kbflow.globs import matches
from kbflow.queries import read_queries
from kbflow.relevance import matched_ids, mean_metrics, query_metrics

BIN = Path(sys.executable).parent
DEFAULT_CORPUS = Path("/usr/share/doc/postgresql-doc-15/html")
WINDOW_WORDS, STRIDE_WORDS = 180, 150
METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10")


class _Text(HTMLParser):
    """All text of a page but scripts and styles: no main-content extraction, on purpose."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() not in (".html", ".htm"):
        return raw
    parser = _Text()
    parser.feed(raw)
    return " ".join(parser.parts)


def naive_windows(files: list[tuple[str, Path]]) -> tuple[list[str], list[str]]:
    """(uri, window text) of 180-word windows every 150 words, the last window reaching the end."""
    uris, texts = [], []
    for uri, path in files:
        words = page_text(path).split()
        for start in range(0, max(len(words) - WINDOW_WORDS, 0) + STRIDE_WORDS, STRIDE_WORDS):
            window = words[start:start + WINDOW_WORDS]
            if window:
                uris.append(uri)
                texts.append(" ".join(window))
    return uris, texts


def cached_vectors(embedder, texts: list[str], cache: Path) -> np.ndarray:
    key = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    path = cache / f"naive-{key}.npy"
    if path.is_file():
        return np.load(path)
    vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def score_naive(files, questions, k: int, work: Path) -> tuple[dict, dict]:
    from kbflow.models import load_embedder

    embedder = load_embedder(EmbeddingConfig())
    uris, texts = naive_windows(files)
    started = time.perf_counter()
    vectors = cached_vectors(embedder, texts, work)
    embed_s = time.perf_counter() - started
    query_vectors = np.asarray(embedder.encode([q.query for q in questions]), dtype=np.float32)
    per_query = []
    for question, scores in zip(questions, query_vectors @ vectors.T):
        top = np.argsort(-scores)[: max(k, 10) * 5]  # windows, deep enough for ten distinct pages
        hits = [{"uri": uris[i]} for i in top]
        per_query.append(query_metrics(matched_ids(hits, question.relevant), len(question.relevant), k))
    return mean_metrics(per_query), {"windows": len(texts), "embed_s": round(embed_s, 1)}


def run_kbflow(corpus: Path, include: list[str], questions_file: Path, k: int, work: Path) -> tuple[dict, dict]:
    config = work / "kbflow.toml"
    config.write_text(
        f'[store]\nuri = "store"\n\n[[sources]]\nname = "corpus"\nkind = "files"\npath = "{corpus}"\n'
        f"include = {json.dumps(include)}\n"
    )
    started = time.perf_counter()
    ingest = subprocess.run([str(BIN / "kbflow"), "ingest", "--config", str(config), "--json"],
                            capture_output=True, text=True)
    ingest_s = time.perf_counter() - started
    if ingest.returncode != 0:
        sys.exit(f"kbflow ingest failed ({ingest.returncode}): {ingest.stderr[-2000:]}")
    report = json.loads(ingest.stdout)
    evaluated = subprocess.run([str(BIN / "kbflow"), "eval", "--config", str(config), "--queries",
                                str(questions_file.resolve()), "--k", str(k), "--json"],
                               capture_output=True, text=True)
    if evaluated.returncode != 0:
        sys.exit(f"kbflow eval failed ({evaluated.returncode}): {evaluated.stderr[-2000:]}")
    scores = json.loads(evaluated.stdout)
    info = {"chunks": report["chunks"]["total"], "ingest_status": report["status"],
            "ingest_s": round(ingest_s, 1), "unresolved": scores.get("unresolved", 0)}
    return scores["modes"], info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--questions", type=Path, default=Path("bench/data/pg_questions.jsonl"))
    parser.add_argument("--include", nargs="+", default=["**/*.html"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="default: bench/results/retrieval-<corpus name>")
    parser.add_argument("--only", choices=("naive", "kbflow"), help="run one side (e.g. to fill its cache)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found (apt-get install postgresql-doc-15 python3.11-doc)")
    work = (args.work or Path("bench/results") / f"retrieval-{args.corpus.parent.name}").resolve()
    work.mkdir(parents=True, exist_ok=True)

    questions = read_queries(args.questions)
    files = sorted((p.relative_to(args.corpus).as_posix(), p) for p in args.corpus.rglob("*") if p.is_file())
    files = [(uri, path) for uri, path in files if matches(uri, args.include, [])]
    print(f"{len(files)} files, {len(questions)} questions", file=sys.stderr)

    rows, info = {}, {}
    if args.only != "naive":
        modes, info = run_kbflow(args.corpus, args.include, args.questions, args.k, work)
        rows = {f"kbflow {mode}": scores for mode, scores in modes.items()}
    if args.only != "kbflow":
        rows["naive windows (vector)"], info["naive"] = score_naive(files, questions, args.k, work)
    result = {"corpus": str(args.corpus), "files": len(files), "questions": len(questions), **info, "rows": rows}
    (work / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    print("\n| search | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{scores[m]:.3f}" for m in METRICS) + " |")


if __name__ == "__main__":
    main()
