"""Read a built embedding-pairs dataset and print what its anchors and negatives are made of.

    python bench/dataset_anchors_bench.py DATASET_DIR [--rows 30] [--seed 0]

Prints: rows, the share of anchors that are questions (ending in "?") overall and per generator,
`ict` anchors that are whole informative sentences, navigation-only positives, rows with a
navigation-only negative or with the anchor in a negative (the miner's own rules, so a dataset
built before them can be measured too), the manifest's drops, then random rows to read.
Results: bench/README.md, "Dataset anchors".
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from kbflow.tasks.quality.content import is_navigation_only
from kbflow.tasks.datasets.negatives import contains_anchor
from kbflow.tasks.datasets.questions import is_informative_sentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [row for path in sorted((args.dataset / "data").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    negatives = [column for column in rows[0] if column.startswith("negative_")]
    generators = Counter(row["generator"] for row in rows)
    questions = Counter(row["generator"] for row in rows if row["anchor"].rstrip().endswith("?"))
    print(f"rows {len(rows)}; questions {sum(questions.values())} ({sum(questions.values()) / len(rows):.1%})")
    for generator, n in sorted(generators.items()):
        print(f"  {generator}: {n} rows, {questions[generator]} questions ({questions[generator] / n:.1%})")
    ict = [row["anchor"] for row in rows if row["generator"] == "ict"]
    if ict:
        whole = sum(is_informative_sentence(anchor) for anchor in ict)
        print(f"ict anchors that are whole informative sentences: {whole} of {len(ict)} ({whole / len(ict):.1%})")
    print("navigation-only positives:", sum(is_navigation_only(row["positive"]) for row in rows))
    print("rows with a navigation-only negative:", sum(any(is_navigation_only(row[c]) for c in negatives) for row in rows))
    print("rows with the anchor in a negative:",
          sum(any(contains_anchor(row["anchor"], row[c]) for c in negatives) for row in rows))
    print("dropped:", json.loads((args.dataset / "manifest.json").read_text())["dropped"])
    for row in random.Random(args.seed).sample(rows, min(args.rows, len(rows))):
        print("-" * 100)
        print(f"[{row['generator']}] {row['anchor']}")
        print("  positive:", row["positive"][:100].replace("\n", " | "))
        for column in negatives:
            print("  negative:", row[column][:60].replace("\n", " | "))


if __name__ == "__main__":
    main()
