"""Cold ingest vs a raw `SentenceTransformer.encode` of the same chunk texts, side by side.

    python bench/ingest_bench.py [--corpus DIR] [--pages N] [--out FILE]

Default corpus: the PostgreSQL manual from Debian's `postgresql-doc-15` package
(`apt-get install postgresql-doc-15`), a real HTML manual with deep headings;
the first N pages in name order are used. Measured in one process:
1. raw: `model.encode(all chunk texts, batch_size=64, normalize_embeddings=True)`,
   the same loaded model, before and after the pipeline (the mean is used);
2. cold: the whole `ingest` flow into an empty store (discover, parse, quality
   checks, chunk, embed, publish), after the Prefect API and the model were
   started, because those are one-off per-process costs reported separately;
3. re-run: `ingest` again with no change.
Ratios, not seconds, are the result: cold / raw (target <= 1.15), re-run / cold
(target <= 3%), and the share of the cold run spent in GX validation (target <= 5%).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kbflow

kbflow.set_process_defaults()  # offline / no-analytics defaults first

DEFAULT_CORPUS = Path("/usr/share/doc/postgresql-doc-15/html")
MANUAL_SOURCE = """
[[sources]]
name = "manual"
kind = "files"
path = "docs/"
include = ["**/*.html"]
tenant = "bench"
"""
CONFIG = '[store]\nuri = ".kbflow"\n' + MANUAL_SOURCE


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def copy_pages(corpus: Path, pages: int, docs: Path) -> int:
    """Copy the first `pages` HTML pages (by name) of the corpus under docs/; how many were copied."""
    chosen = sorted(corpus.rglob("*.html"))[:pages]
    for page in chosen:
        target = docs / page.relative_to(corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, target)
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-model baseline (quality share only)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found; run `apt-get install postgresql-doc-15` or pass --corpus")

    from prefect.testing.utilities import prefect_test_harness

    from kbflow.config import load_config
    from kbflow.flows.ingest import ingest
    from kbflow.models import load_embedder
    from kbflow.store import Store

    work = Path(tempfile.mkdtemp(prefix="kbflow-bench-"))
    pages = copy_pages(args.corpus, args.pages, work / "docs")
    (work / "kbflow.toml").write_text(CONFIG)
    (work / "warmup" / "docs").mkdir(parents=True)
    (work / "warmup" / "kbflow.toml").write_text(CONFIG)
    config = load_config(work / "kbflow.toml")

    with prefect_test_harness(server_startup_timeout=120):
        _, prefect_start_s = timed(lambda: ingest(config_path=str(work / "warmup" / "kbflow.toml")))
        embedder, model_load_s = timed(lambda: load_embedder(config.embedding))
        model = embedder._model

        store = Store(config.store)
        cold_report, cold_s = timed(lambda: ingest(config_path=str(work / "kbflow.toml")))
        texts = store.table("chunks").to_arrow().column("text").to_pylist()

        def raw_encode():
            return model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

        raw_runs = [] if args.no_raw else [timed(raw_encode)[1] for _ in range(2)]
        rerun_report, rerun_s = timed(lambda: ingest(config_path=str(work / "kbflow.toml")))
        stages = json.loads(store.runs()[1]["stage_durations"])  # the cold run (runs are newest first)

    raw_s = statistics.mean(raw_runs) if raw_runs else float("nan")
    result = {
        "corpus": f"{args.corpus} ({pages} pages)",
        "documents": cold_report["documents"]["new"],
        "chunks": cold_report["chunks"]["total"],
        "distinct_texts_embedded": cold_report["chunks"]["embedded"],
        "raw_encode_s": round(raw_s, 2),
        "raw_encode_runs_s": [round(r, 2) for r in raw_runs],
        "cold_ingest_s": round(cold_s, 2),
        "cold_over_raw": round(cold_s / raw_s, 3),
        "rerun_s": round(rerun_s, 3),
        "rerun_over_cold": round(rerun_s / cold_s, 4),
        "rerun_status": rerun_report["status"],
        "stage_durations_s": stages,
        "quality_checks_share": round(stages.get("quality_checks", 0.0) / cold_s, 4),
        "one_off_prefect_start_s": round(prefect_start_s, 1),
        "one_off_model_load_s": round(model_load_s, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(
        f"\n| {result['corpus']} | {result['chunks']} | {result['raw_encode_s']} s | {result['cold_ingest_s']} s "
        f"| **{result['cold_over_raw']}** | {result['rerun_s']} s | **{result['rerun_over_cold']:.2%}** |"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
