"""Does fine-tuning on kbflow's offline pairs help real questions? Base vs tuned on a labeled question set.

    python bench/finetune_lift_bench.py --pg-questions [--index-from DIR] [--max-steps 128] ...
    python bench/finetune_lift_bench.py --corpus DIR --questions FILE --include GLOB ... [--work DIR]

Everything goes through kbflow's own commands (real CLI processes), on the whole corpus:
1. the base index: `kbflow ingest` with the packaged all-MiniLM-L6-v2 (default config), or a copy of
   an index the retrieval benchmark already built with the same config (`--index-from`, e.g.
   bench/results/retrieval-pg-chunker: the whole manual costs ~10 minutes of embedding);
2. `kbflow dataset build --kind embedding-pairs` with the offline generators only (`heading`, `ict`:
   no LLM, no labels; the questions of `--questions` are never seen), hard negatives mined from the
   base index (`--negatives`, 1 by default: each one is another passage to encode per training pair);
3. `kbflow finetune` from the packaged model (MNRL), `--max-steps` × `--batch-size` pairs, training at
   `--max-seq-length` tokens (the saved model embeds at the base's 256);
4. the tuned index: `kbflow ingest` of the same corpus into a second store with
   `[embedding] model = <the tuned folder>` (the same chunks, re-embedded);
5. `kbflow evaluate --queries QUESTIONS --json` on both indexes: every mode, the default search config.
Each step is skipped when its output is already in --work (a re-run only re-scores); a new
setting needs a new --work. Prints a Markdown table for bench/README.md.

Stages measured alone and combined (`--variants`): `pairs` (the pair training alone), `tsdae`
(domain adaptation alone: `--tsdae-steps` TSDAE steps on the index's chunk texts, no pairs),
`tsdae+pairs` (both, in that order). `--generators heading local-llm --generator-sample N` adds
questions from the packaged SmolLM2 (round-trip checked) to the pairs. Every variant is scored by
`kbflow finetune` on the dataset's test split (generated questions on documents held out of
training); `--skip-reindex` stops there, otherwise each tuned model is ingested and evaluated on
--questions as above.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PG_CORPUS = Path("/usr/share/doc/postgresql-doc-15/html")
PG_QUESTIONS = Path("bench/data/pg_questions.jsonl")
METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10")
VARIANTS = {"pairs": (False, True), "tsdae": (True, False), "tsdae+pairs": (True, True)}  # (tsdae, pairs)

CONFIG = """[store]
uri = "{store}"
{embedding}
[datasets]
generators = {generators}
generator_sample = {generator_sample}
negatives = {negatives}
validation_share = 0.02  # validation only reports a loss; the labeled questions are the test
test_share = 0.05        # the finetune flow's own base-vs-tuned table on held-out pairs

[finetune]
epochs = {epochs}
{max_steps}batch_size = {batch_size}
learning_rate = {learning_rate}
max_seq_length = {max_seq_length}
pairs = {pairs}

[datasets.local_llm]
threads = {threads}

[[sources]]
name = "corpus"
kind = "files"
path = "{corpus}"
include = {include}
"""


def kbflow(*args: str) -> tuple[dict, float]:
    """Run `kbflow ARGS --json`; its JSON output and the seconds it took (exit on failure)."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "kbflow"), *args, "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"kbflow {' '.join(args)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout), seconds


def cached(path: Path, step) -> dict:
    """The step's recorded output when `path` holds one, else run it and record its output."""
    if path.is_file():
        return json.loads(path.read_text())
    result, seconds = step()
    result = {**result, "bench_seconds": round(seconds, 1)}
    path.write_text(json.dumps(result, indent=2))
    return result


def write_config(path: Path, store: str, args, model: Path | None = None, pairs: bool = True) -> Path:
    embedding = f'\n[embedding]\nmodel = "{model}"\n' if model else ""
    path.write_text(CONFIG.format(
        generator_sample=args.generator_sample, pairs=str(pairs).lower(), threads=args.threads,
        store=store, embedding=embedding, negatives=args.negatives, generators=json.dumps(args.generators), epochs=args.epochs,
        max_steps=f"max_steps = {args.max_steps}\n" if args.max_steps else "",
        batch_size=args.batch_size, learning_rate=args.learning_rate, max_seq_length=args.max_seq_length,
        corpus=args.corpus, include=json.dumps(args.include),
    ))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-questions", action="store_true", help="the PostgreSQL manual and its 186 questions")
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--include", nargs="+", default=["**/*.html"])
    parser.add_argument("--index-from", type=Path, help="a work folder of retrieval_bench.py to copy the base store from")
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--generators", nargs="+", default=["heading", "ict"],
                        help="heading, ict, local-llm (no labels: the questions of --questions are never seen)")
    parser.add_argument("--generator-sample", type=int, default=100, help="local-llm: passages asked")
    parser.add_argument("--threads", type=int, default=2, help="local-llm: torch threads")
    parser.add_argument("--variants", nargs="+", default=["pairs"], choices=list(VARIANTS))
    parser.add_argument("--tsdae-steps", type=int, default=100)
    parser.add_argument("--questions-in-corpus", action="store_true",
                        help="keep only the questions whose relevant documents all match --include")
    parser.add_argument("--skip-reindex", action="store_true", help="score on the dataset's test split only")
    parser.add_argument("--max-steps", type=int, default=128, help="0: every step of --epochs")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128, help="training length (128 ≈ half the step time of 256)")
    parser.add_argument("--work", type=Path, default=None, help="default: bench/results/finetune-lift-<corpus name>")
    args = parser.parse_args()
    if args.pg_questions:
        args.corpus, args.questions = args.corpus or PG_CORPUS, args.questions or PG_QUESTIONS
    if not (args.corpus and args.questions):
        parser.error("give --pg-questions, or --corpus and --questions")
    if not args.corpus.is_dir():
        sys.exit(f"corpus {args.corpus} not found (apt-get install postgresql-doc-15)")
    work = (args.work or Path("bench/results") / f"finetune-lift-{args.corpus.parent.name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    questions = str(args.questions.resolve())
    if args.questions_in_corpus:  # a corpus cut to some folders: only the questions it can answer
        kept = [line for line in args.questions.read_text().splitlines() if line.strip() and all(
            any(fnmatch.fnmatch(r.split("#")[0], g) for g in args.include) for r in json.loads(line)["relevant"])]
        (work / "questions.jsonl").write_text("\n".join(kept) + "\n")
        questions = str(work / "questions.jsonl")

    base_config = write_config(work / "kbflow.toml", "store", args)
    if not (work / "store").exists() and args.index_from:
        shutil.copytree(args.index_from / "store", work / "store", ignore=shutil.ignore_patterns("eval"))
    base_ingest = cached(work / "ingest-base.json", lambda: kbflow("ingest", "--config", str(base_config)))
    built = cached(work / "dataset.json", lambda: kbflow(
        "dataset", "build", "--kind", "embedding-pairs", "--config", str(base_config), "--out", str(work / "datasets")))
    scores = {"base": None}
    tuned_runs = {}
    for variant in args.variants:
        tsdae, pairs = VARIANTS[variant]
        config = write_config(work / f"kbflow-{variant}.toml", "store", args, pairs=pairs)
        tuned_dir = work / f"tuned-{variant}"
        tuned_runs[variant] = cached(work / f"finetune-{variant}.json", lambda config=config, tuned_dir=tuned_dir, tsdae=tsdae: kbflow(
            "finetune", "--config", str(config), "--dataset", built["dir"], "--out", str(tuned_dir),
            "--tsdae-steps", str(args.tsdae_steps if tsdae else 0)))
        if not args.skip_reindex:
            tuned_config = write_config(work / f"kbflow-tuned-{variant}.toml", f"store-{variant}", args, model=tuned_dir)
            cached(work / f"ingest-{variant}.json", lambda c=tuned_config: kbflow("ingest", "--config", str(c)))
            scores[variant] = cached(work / f"evaluate-{variant}.json", lambda c=tuned_config: kbflow(
                "evaluate", "--config", str(c), "--queries", questions))
    if not args.skip_reindex:
        scores["base"] = cached(work / "evaluate-base.json", lambda: kbflow(
            "evaluate", "--config", str(base_config), "--queries", questions))

    result = {
        "corpus": str(args.corpus), "questions": questions,
        "settings": {key: getattr(args, key) for key in ("generators", "generator_sample", "negatives", "epochs",
                                                         "max_steps", "batch_size", "learning_rate", "max_seq_length",
                                                         "tsdae_steps")},
        "chunks": base_ingest["chunks"]["total"],
        "dataset_rows": built["rows"], "dataset_dropped": built.get("dropped"), "generation": built.get("generation"),
        "dataset_minutes": round(built["bench_seconds"] / 60, 1),
        "finetune": {variant: {key: run.get(key) for key in ("steps", "tsdae", "train_rows", "minutes", "total_minutes",
                                                           "train_loss", "base", "tuned", "labeled")}
                     for variant, run in tuned_runs.items()},
        "modes": {name: score["modes"] for name, score in scores.items() if score},
    }
    (work / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({key: value for key, value in result.items() if key not in ("modes", "finetune")}, indent=2))
    print("\ndataset test split (generated questions, documents held out of training), exact cosine:")
    print("| variant | steps | minutes | hit@5 | MRR@10 | MRR@10 change |\n|---|---|---|---|---|---|")
    for variant, run in tuned_runs.items():
        base, tuned = run["base"], run["tuned"]
        print(f"| {variant} | {run['steps']} | {run['minutes']:.1f} | {base['hit@5']:.3f} -> {tuned['hit@5']:.3f} | "
              f"{base['mrr@10']:.3f} -> {tuned['mrr@10']:.3f} | {100 * (tuned['mrr@10'] - base['mrr@10']):+.1f} |")
    if result["modes"]:
        print("\n| search | model | " + " | ".join(METRICS) + " |\n|---|---|" + "---|" * len(METRICS))
        for mode in ("vector", "hybrid", "fts"):
            for name, modes in result["modes"].items():
                print(f"| {mode} | {name} | " + " | ".join(f"{modes[mode][m]:.3f}" for m in METRICS) + " |")


if __name__ == "__main__":
    main()
