"""Base vs fine-tuned embedding model on a real corpus, and what the fine-tune costs on this CPU.

    python bench/finetune_bench.py [--corpus DIR] [--pages N] [--max-steps N] [--negatives N] [--out FILE]

Default corpus: the PostgreSQL manual from Debian's `postgresql-doc-15` package
(`apt-get install postgresql-doc-15`), the first N pages in name order, as in
bench/ingest_bench.py. In one process, through kbflow's own flows:
1. `ingest` the pages with the packaged all-MiniLM-L6-v2;
2. `build-dataset --kind embedding-pairs` with the offline generators (heading,
   ict) and hard negatives mined from the index; splits by document;
3. `finetune` from the packaged model (MNRL, bounded steps) and score base and
   tuned the same way on the test split: each test anchor must find its positive
   among the test split's positives and hard negatives (exact cosine search).
Reported: hit@1/5/10, mrr@10, ndcg@10 for base and tuned, training minutes, rows.
Timings are noisy when the machine is shared: compare metrics, read minutes as rough.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from ingest_bench import DEFAULT_CORPUS, MANUAL_SOURCE, copy_pages, timed

import kbflow

kbflow.set_process_defaults()  # offline / no-analytics defaults first

CONFIG = """
[store]
uri = ".kbflow"

[datasets]
negatives = {negatives}
validation_share = 0.05  # validation only reports a loss here; the test split is what is scored
test_share = 0.2

[finetune]
epochs = 1
batch_size = {batch_size}
learning_rate = {learning_rate}
max_steps = {max_steps}
""" + MANUAL_SOURCE
METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--max-steps", type=int, default=10, help="training steps (bounded: CPU); 30 is one epoch of 60 pages")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--negatives", type=int, default=1, help="hard negatives per pair (each costs a passage encode per step)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/finetune.json"))
    parser.add_argument("--work", type=Path, help="keep the store and dataset here (a second run reuses the ingest)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found; run `apt-get install postgresql-doc-15` or pass --corpus")

    from prefect.testing.utilities import prefect_test_harness

    from kbflow.flows.build_dataset import build_dataset
    from kbflow.flows.finetune import finetune
    from kbflow.flows.ingest import ingest

    work = args.work or Path(tempfile.mkdtemp(prefix="kbflow-finetune-bench-"))
    shutil.rmtree(work / "docs", ignore_errors=True)
    pages = copy_pages(args.corpus, args.pages, work / "docs")
    config_path = work / "kbflow.toml"
    config_path.write_text(CONFIG.format(negatives=args.negatives, batch_size=args.batch_size,
                                         learning_rate=args.learning_rate, max_steps=args.max_steps))
    with prefect_test_harness(server_startup_timeout=120):
        ingested, ingest_s = timed(lambda: ingest(config_path=str(config_path)))
        built, build_s = timed(lambda: build_dataset(config_path=str(config_path), kind="embedding-pairs"))
        report, finetune_s = timed(lambda: finetune(config_path=str(config_path), dataset=built["dir"],
                                                    out=str(work / f"tuned-{int(time.time())}")))

    result = {
        "corpus": f"{args.corpus} ({pages} pages)",
        "chunks": ingested["chunks"]["total"],
        "dataset_rows": built["rows"],
        "settings": {"max_steps": args.max_steps, "batch_size": args.batch_size,
                     "learning_rate": args.learning_rate, "negatives": args.negatives},
        "steps": report["steps"],
        "base": report["base"],
        "tuned": report["tuned"],
        "train_loss": report["train_loss"],
        "validation_loss": report["validation_loss"],
        "finetune_train_minutes": report["minutes"],
        "finetune_flow_minutes": round(finetune_s / 60, 2),
        "ingest_s": round(ingest_s, 1),
        "build_dataset_s": round(build_s, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    base, tuned = report["base"], report["tuned"]
    cells = " | ".join(f"{base[m]:.3f} → **{tuned[m]:.3f}**" for m in METRICS)
    print(
        f"\n| {date.today()} | PostgreSQL manual, {pages} pages ({result['chunks']} chunks) "
        f"| {built['rows']['train']}/{built['rows']['validation']}/{built['rows']['test']} "
        f"| {report['steps']} × {args.batch_size}, {args.negatives} neg | {cells} "
        f"| {report['minutes']:.1f} min |"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
