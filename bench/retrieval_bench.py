"""Retrieval on natural questions, per corpus and per half: naive windows, vector, fts and the default side by side.

    python bench/retrieval_bench.py                         # all three corpora (pg, python, git)
    python bench/retrieval_bench.py --corpora git --work /work/bench-cache

Three labeled sets (bench/data/README.md), each split once into a tuning and a test half
(bench/split_questions.py). For each corpus, with the same model (the packaged all-MiniLM-L6-v2)
and the same scoring (kbflow.relevance: a page counts once, at its best rank; document level):
1. naive: every file's text (HTML tags stripped, nothing else removed) cut into windows
   of 180 words with a stride of 150, embedded, ranked by cosine similarity: what a
   first RAG prototype does;
2. kbflow: `kbflow ingest` of the same files (a real CLI process, default config), then, in this
   process, vector, fts and the default search (`kbflow.search.search` with the config's `[search]`:
   exactly what `kbflow search` returns), plus every fusion setting of `--grid` for choosing defaults.
The index and the naive vectors are kept under --work/<corpus>, so a re-run only scores (kbflow's
re-run is a no-change ingest). Prints hit@5 and MRR@10 per half, and with --choose the
leave-one-corpus-out choice of a fusion setting on the tuning halves (see `choose_setting`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

import kbflow  # noqa: F401  - offline / no-analytics defaults first
from kbflow.config import EmbeddingConfig, load_config
from kbflow.globs import matches
from kbflow.queries import LabeledQuery, read_queries
from kbflow.relevance import matched_ids, mean_metrics, query_metrics

BIN = Path(sys.executable).parent
DATA = Path(__file__).parent / "data"
WINDOW_WORDS, STRIDE_WORDS = 180, 150
METRICS = ("hit@1", "hit@5", "mrr@10")
HALVES = ("tune", "test")
PY_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")


def python_include() -> list[str]:
    """The Python subset the python set was written on: tutorial/, howto/, the library pages the
    questions name, and every library/[a-d]* page as distractors (151 files)."""
    named = {r for q in read_queries(DATA / "python_questions.jsonl") for r in q.relevant if r.startswith("library/")}
    distractors = {p.relative_to(PY_SOURCES).as_posix() for p in PY_SOURCES.glob("library/[a-d]*.rst.txt")}
    return ["tutorial/**/*.rst.txt", "howto/**/*.rst.txt", *sorted(named | distractors)]


@dataclass
class Corpus:
    name: str
    path: Path
    include: Callable[[], list[str]]
    package: str

    def questions(self, half: str | None = None) -> list[LabeledQuery]:
        suffix = f".{half}" if half else ""
        return read_queries(DATA / f"{self.name}_questions{suffix}.jsonl")


CORPORA = {
    "pg": Corpus("pg", Path("/usr/share/doc/postgresql-doc-15/html"), lambda: ["**/*.html"], "postgresql-doc-15"),
    "python": Corpus("python", PY_SOURCES, python_include, "python3.11-doc"),
    "git": Corpus("git", Path("/usr/share/doc/git-doc"), lambda: ["**/*.html"], "git-doc"),
}


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


def naive_rankings(corpus: Corpus, questions: Sequence[LabeledQuery], k: int, work: Path) -> tuple[list, dict]:
    """Per question, the naive windows' top hits (deep enough for k distinct pages)."""
    from kbflow.models import load_embedder

    files = sorted((p.relative_to(corpus.path).as_posix(), p) for p in corpus.path.rglob("*") if p.is_file())
    files = [(uri, path) for uri, path in files if matches(uri, corpus.include(), [])]
    embedder = load_embedder(EmbeddingConfig())
    uris, texts = naive_windows(files)
    started = time.perf_counter()
    vectors = cached_vectors(embedder, texts, work)
    embed_s = time.perf_counter() - started
    query_vectors = np.asarray(embedder.encode([q.query for q in questions]), dtype=np.float32)
    rankings = []
    for scores in query_vectors @ vectors.T:
        top = np.argsort(-scores)[: max(k, 10) * 5]
        rankings.append([{"uri": uris[i]} for i in top])
    return rankings, {"files": len(files), "windows": len(texts), "naive_embed_s": round(embed_s, 1)}


def ensure_index(corpus: Corpus, work: Path, chunking: dict[str, str]) -> tuple[Path, dict]:
    """A kbflow index of the corpus under `work` (a real `kbflow ingest`; a no-change run once built)."""
    config = work / "kbflow.toml"
    chunking_toml = "".join(f"{key} = {value}\n" for key, value in chunking.items())
    config.write_text(
        f'[store]\nuri = "store"\n\n[[sources]]\nname = "corpus"\nkind = "files"\npath = "{corpus.path}"\n'
        f"include = {json.dumps(corpus.include())}\n" + (f"\n[chunking]\n{chunking_toml}" if chunking else "")
    )
    started = time.perf_counter()
    ingest = subprocess.run([str(BIN / "kbflow"), "ingest", "--config", str(config), "--json"],
                            capture_output=True, text=True)
    if ingest.returncode != 0:
        sys.exit(f"kbflow ingest failed ({ingest.returncode}): {ingest.stderr[-2000:]}")
    report = json.loads(ingest.stdout)
    return config, {"chunks": report["chunks"]["total"], "ingest_s": round(time.perf_counter() - started, 1)}


@dataclass
class Scored:
    """Per-question metrics of every search of one corpus, and which half each question is in."""

    halves: list[str]
    per_query: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def add(self, name: str, questions: Sequence[LabeledQuery], rankings: Sequence[Sequence[dict]], k: int) -> None:
        self.per_query[name] = [
            query_metrics(matched_ids(hits, q.relevant), len(q.relevant), k) for q, hits in zip(questions, rankings)
        ]

    def mean(self, name: str, half: str) -> dict[str, float]:
        return mean_metrics([m for m, h in zip(self.per_query[name], self.halves) if h == half])


def default_grid() -> list[str]:
    """Fixed linear weights, RRF, and adaptive settings (weight:rare_weight:rare_term_share)."""
    fixed = [f"linear:{w / 10:.1f}" for w in range(3, 11)] + ["rrf:0.5"]
    adaptive = [f"adaptive:{w}:{r}:{share}" for w in (0.7, 0.8, 0.9, 1.0) for r in (0.3, 0.4, 0.5, 0.6)
                for share in (0.001, 0.002, 0.005)]
    return fixed + adaptive


def kbflow_rankings(config_path: Path, questions: Sequence[LabeledQuery], k: int, grid: Sequence[str]) -> dict:
    """vector, fts, the default search, and each fusion setting of `grid`, per question.

    A grid setting is `linear:W`, `rrf:W` or `adaptive:W:RARE_W:SHARE` (kbflow.search.HybridFusion);
    all fuse the same retrieved candidates in memory, as `kbflow evaluate --tune` does.
    """
    from dataclasses import replace

    from kbflow.search import rank, rare_terms, retrieve, search
    from kbflow.store import Store

    config = load_config(config_path)
    texts = [q.query for q in questions]
    candidates = retrieve(config, texts, k)
    rankings = {
        "vector": [rank(c, "vector", k) for c in candidates],
        "fts": [rank(c, "fts", k) for c in candidates],
        "default": search(config, texts, k),
    }
    store, shares = Store.existing(config.store), {}
    for setting in grid:
        fusion, weight, *adaptive = setting.split(":")
        if fusion != "adaptive":
            rankings[setting] = [rank(c, "hybrid", k, fusion, float(weight)) for c in candidates]
            continue
        rare_weight, share = float(adaptive[0]), float(adaptive[1])
        if share not in shares:
            shares[share] = [rare_terms(store, text, share) for text in texts]
        rankings[setting] = [rank(replace(c, rare_share=r), "hybrid", k, "adaptive", float(weight), rare_weight)
                             for c, r in zip(candidates, shares[share])]
    return rankings


def choose_setting(scores: dict[str, Scored], settings: Sequence[str]) -> list[dict]:
    """Leave-one-corpus-out on the tuning halves: for each corpus, the setting with the best mean of
    hit@5 and MRR@10 averaged over the OTHER corpora, then how it does on the left-out corpus's tuning
    half against vector alone and the naive windows."""

    def objective(corpus: str, setting: str) -> float:
        m = scores[corpus].mean(setting, "tune")
        return (m["hit@5"] + m["mrr@10"]) / 2

    out = []
    for held_out in scores:
        others = [c for c in scores if c != held_out]
        best = max(settings, key=lambda s: sum(objective(c, s) for c in others) / len(others))
        chosen = scores[held_out].mean(best, "tune")
        vector = scores[held_out].mean("vector", "tune")
        naive = scores[held_out].mean("naive", "tune") if "naive" in scores[held_out].per_query else None
        wins = all(chosen[m] >= vector[m] and (naive is None or chosen[m] >= naive[m]) for m in ("hit@5", "mrr@10"))
        out.append({"held_out": held_out, "chosen_on": others, "setting": best, "tune": chosen,
                    "vector": vector, "naive": naive, "wins": wins})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("bench/results/retrieval"),
                        help="a folder per corpus under it keeps the index and the naive vectors")
    parser.add_argument("--chunking", nargs="*", default=[], metavar="KEY=VALUE",
                        help="[chunking] overrides for the kbflow index (use another --work for each)")
    parser.add_argument("--grid", nargs="*", default=default_grid(),
                        help="fusion settings scored beside the default (for --choose): linear:W, rrf:W, "
                             "adaptive:W:RARE_W:SHARE")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive windows (their embedding is slow)")
    parser.add_argument("--choose", action="store_true", help="leave-one-corpus-out choice over --grid")
    args = parser.parse_args()
    chunking = dict(item.split("=", 1) for item in args.chunking)

    all_scores, report = {}, {}
    for name in args.corpora:
        corpus = CORPORA[name]
        if not corpus.path.is_dir():
            sys.exit(f"corpus {corpus.path} not found (apt-get install {corpus.package})")
        work = (args.work / name).resolve()
        work.mkdir(parents=True, exist_ok=True)
        halves = {h: corpus.questions(h) for h in HALVES}
        questions = halves["tune"] + halves["test"]
        scored = Scored(["tune"] * len(halves["tune"]) + ["test"] * len(halves["test"]))
        config_path, info = ensure_index(corpus, work, chunking)
        for search_name, rankings in kbflow_rankings(config_path, questions, args.k, args.grid).items():
            scored.add(search_name, questions, rankings, args.k)
        if not args.no_naive:
            rankings, naive_info = naive_rankings(corpus, questions, args.k, work)
            scored.add("naive", questions, rankings, args.k)
            info.update(naive_info)
        all_scores[name] = scored
        report[name] = {"info": info, "means": {s: {h: scored.mean(s, h) for h in HALVES} for s in scored.per_query},
                        "per_query": scored.per_query, "halves": scored.halves,
                        "questions": [q.query for q in questions]}
        print(f"\n## {name}: {json.dumps(info)}")
        print("| search | " + " | ".join(f"{h} {m}" for h in HALVES for m in ("hit@5", "mrr@10")) + " |")
        print("|---|" + "---|" * 4)
        names = [s for s in ("naive", "vector", "fts", "default") if s in scored.per_query]
        for s in names + sorted(args.grid, key=lambda s: -sum(scored.mean(s, "tune")[m] for m in ("hit@5", "mrr@10")))[:10]:
            cells = [f"{scored.mean(s, h)[m]:.3f}" for h in HALVES for m in ("hit@5", "mrr@10")]
            print(f"| {s} | " + " | ".join(cells) + " |")
    if args.choose and len(all_scores) > 1:
        choice = choose_setting(all_scores, list(args.grid))
        report["choice"] = choice
        print("\n## leave-one-corpus-out on the tuning halves")
        for row in choice:
            print(f"held out {row['held_out']}: chosen on {'+'.join(row['chosen_on'])} -> {row['setting']}; "
                  f"on {row['held_out']} tune: hit@5 {row['tune']['hit@5']:.3f} mrr@10 {row['tune']['mrr@10']:.3f} "
                  f"(vector {row['vector']['hit@5']:.3f} / {row['vector']['mrr@10']:.3f}) wins={row['wins']}")
    out = args.work / f"result-{'-'.join(args.corpora)}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nper-question results: {out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
