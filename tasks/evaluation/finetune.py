"""Fine-tune: train the embedding model on embedding-pairs, and score base and tuned alike.

Optionally first, domain adaptation without labels (`adapt_embedder`): TSDAE on the index's own
chunk texts (sentence-transformers' DenoisingAutoEncoderLoss: the encoder's sentence vector must
let a tied decoder rebuild a text from a copy with 60% of its words deleted; our own seeded noise,
since the library's default needs NLTK data). Then the pair training, `SentenceTransformerTrainer` with
MultipleNegativesRankingLoss: each anchor must pick its positive out of the
batch's other positives and every hard negative (`negative_1..n`, when the
dataset has them). Lineage columns (query_id, positive_chunk_id, doc_id, source,
generator) stay out of training.

Scoring (`retrieval_set`, `score_embedder`) is exact cosine search in numpy: the
test split's anchors as queries, each relevant to its positive's chunk, over the
distinct positives and hard negatives of the test split. The hard negatives were
mined from the whole index as the passages closest to each query, so every query
meets the passages most confusable with its answer. Train passages stay out: the
corpus is new to the tuned model as to the base, and scoring costs O(test split)
encodes, not O(dataset) (on this 2-core CPU, the difference between seconds and
many minutes per model). Base and tuned are scored by the same function on the
same corpus; metrics are tasks/evaluation/evaluate.py's, the same as `kbflow evaluate`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow import progress
from kbflow.config import FinetuneConfig
from kbflow.dataset_files import SPLITS, read_split, split_file
from kbflow.errors import InvalidInput, MissingFile, OutputExists
from kbflow.models import Embedder
from kbflow.relevance import RANK_CUTOFF, mean_metrics, query_metrics
from kbflow.store import CHUNKS, Store

NEGATIVE_COLUMN = re.compile(r"^negative_(\d+)$")
MODEL_CARD = "README.md"
LINEAGE_FILE = "kbflow_finetune.json"
REPORTED_METRICS = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10")  # the model card's and the CLI's table

log = logging.getLogger(__name__)


# -- the dataset ------------------------------------------------------------------------------


def read_pairs(dataset_dir: Path) -> dict[str, pa.Table]:
    """The splits of an embedding-pairs dataset folder that exist ({split: table}); train is required."""
    dataset_dir = Path(dataset_dir)
    splits = {split: read_split(dataset_dir, split) for split in SPLITS if (dataset_dir / split_file(split)).is_file()}
    if "train" not in splits:
        raise MissingFile(
            f"{dataset_dir} has no data/train-00000-of-00001.parquet; build one with "
            "`kbflow dataset build --kind embedding-pairs`"
        )
    missing = {"anchor", "positive"} - set(splits["train"].column_names)
    if missing:
        raise InvalidInput(f"{dataset_dir} is not an embedding-pairs dataset: no {', '.join(sorted(missing))} column")
    return splits


def read_manifest(dataset_dir: Path) -> dict[str, Any]:
    """The dataset's manifest.json (lineage for the model card), or {} when it has none."""
    path = Path(dataset_dir) / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def training_columns(table: pa.Table) -> list[str]:
    """anchor, positive, then the negative_i columns in order, as far as every row has them.

    MNRL needs the same number of texts in every row: a negative column with a gap
    (fewer negatives were mined for some rows) ends the list there.
    """
    negatives = sorted((int(m.group(1)), name) for name in table.column_names if (m := NEGATIVE_COLUMN.match(name)))
    columns = ["anchor", "positive"]
    for _, name in negatives:
        values = table.column(name)
        if values.null_count or any(not text for text in values.to_pylist()):
            break
        columns.append(name)
    return columns


# -- scoring ------------------------------------------------------------------------------------


@dataclass
class RetrievalSet:
    """Queries with their relevant id, and the corpus they are searched in."""

    queries: list[str]
    relevant: list[str]  # per query: the chunk id of its positive (the positive text without one)
    corpus: list[str]  # distinct passages
    corpus_ids: list[frozenset[str]]  # per passage: the ids it counts as (a text can be two chunks')


def _relevant_ids(table: pa.Table) -> list[str]:
    if "positive_chunk_id" in table.column_names:
        return table.column("positive_chunk_id").to_pylist()
    return table.column("positive").to_pylist()


def retrieval_set(
    splits: dict[str, pa.Table], query_split: str = "test", corpus_splits: Sequence[str] = ("test",),
    generators: Sequence[str] | None = None,
) -> RetrievalSet:
    """The test split's anchors as queries over the distinct positives and negatives of `corpus_splits`;
    with `generators`, only the anchors those generators made (e.g. "labeled": real questions)."""
    corpus_tables = [splits[name] for name in corpus_splits if name in splits]
    ids_of: dict[str, set[str]] = defaultdict(set)  # passage text -> ids; insertion order = corpus order
    for table in corpus_tables:
        for text, relevant in zip(table.column("positive").to_pylist(), _relevant_ids(table)):
            ids_of[text].add(relevant)
    for table in corpus_tables:
        for name in table.column_names:
            if NEGATIVE_COLUMN.match(name):
                for text in table.column(name).to_pylist():
                    if text:  # a negative is relevant to nobody, unless it is some row's positive
                        ids_of.setdefault(text, set())
    queries = splits.get(query_split)
    if queries is not None and generators is not None and "generator" in queries.column_names:
        queries = queries.filter(pa.array([g in generators for g in queries.column("generator").to_pylist()]))
    if queries is None or queries.num_rows == 0:
        raise InvalidInput(f"the dataset has no {query_split} rows to score base and tuned models on")
    return RetrievalSet(
        queries=queries.column("anchor").to_pylist(),
        relevant=_relevant_ids(queries),
        corpus=list(ids_of),
        corpus_ids=[frozenset(ids) for ids in ids_of.values()],
    )


def labeled_retrieval_set(splits: dict[str, pa.Table]) -> RetrievalSet | None:
    """The test split's real questions (labeled sources) alone, or None when it has none."""
    try:
        return retrieval_set(splits, generators=("labeled",))
    except ValueError:
        return None


def score_embedder(embedder: Embedder, retrieval: RetrievalSet, k: int = RANK_CUTOFF) -> dict[str, float]:
    """hit@1/5/10, recall@k, mrr@10, ndcg@10 of the embedder on the set: exact cosine top-k."""
    corpus = _encode(embedder, retrieval.corpus, "score: corpus")
    queries = _encode(embedder, retrieval.queries, "score: queries")
    depth = min(max(k, RANK_CUTOFF), len(retrieval.corpus))
    scores = queries @ corpus.T  # vectors are L2-normalised: dot product = cosine
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    per_query = []
    for relevant, ranked in zip(retrieval.relevant, top):
        matches = [relevant if relevant in retrieval.corpus_ids[i] else None for i in ranked]
        per_query.append(query_metrics(matches, n_relevant=1, k=k))
    return mean_metrics(per_query)


def _encode(embedder: Embedder, texts: list[str], stage: str) -> np.ndarray:
    batch = max(64, -(-len(texts) // 16))  # at most 16 progress updates
    parts = []
    for begin in range(0, len(texts), batch):
        parts.append(embedder.encode(texts[begin : begin + batch]))
        progress.report(stage, min(begin + batch, len(texts)), len(texts))
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)


# -- training -----------------------------------------------------------------------------------


@dataclass
class Trained:
    steps: int
    train_loss: float | None
    validation_loss: float | None  # after training; None without a validation split


def training_arguments(
    settings: FinetuneConfig, work_dir: Path, use_cpu: bool, epochs: int | None = None, max_steps: int | None = None
):
    """The trainer's arguments from `[finetune]` (its seed too), with per-run `epochs`/`max_steps` overrides."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    steps = max_steps if max_steps is not None else settings.max_steps
    return SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=epochs if epochs is not None else settings.epochs,
        max_steps=steps if steps is not None else -1,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of the steps
        # A repeated text in one batch would be its own in-batch negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        use_cpu=use_cpu,
        save_strategy="no",  # the caller saves the final model; no checkpoints on a small disk
        eval_strategy="no",
        report_to="none",  # no wandb, tensorboard ... however the environment is set up
        logging_steps=10,
        disable_tqdm=True,
        seed=settings.seed,  # batch order and any new weights: the same seed, the same model
    )


def train_embedder(
    model,
    train: pa.Table,
    validation: pa.Table | None,
    settings: FinetuneConfig,
    work_dir: Path,
    epochs: int | None = None,
    max_steps: int | None = None,
) -> Trained:
    """Fine-tune the SentenceTransformer `model` in place with MNRL; `work_dir` holds trainer scratch."""
    # Attention is quadratic in length: a shorter training length makes CPU steps much cheaper, and the
    # tuned model still embeds at the base's length (restored before anything is saved or scored).
    base_length = model.max_seq_length
    if settings.max_seq_length is not None:
        model.max_seq_length = settings.max_seq_length
    try:
        return _train(model, train, validation, settings, work_dir, epochs, max_steps)
    finally:
        model.max_seq_length = base_length


def _train(model, train, validation, settings, work_dir, epochs, max_steps) -> Trained:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    columns = training_columns(train)
    args = training_arguments(settings, work_dir, use_cpu=str(model.device) == "cpu", epochs=epochs,
                              max_steps=max_steps)
    train_set = Dataset.from_dict({name: train.column(name).to_pylist() for name in columns})
    eval_set = None
    if validation is not None and validation.num_rows:
        eval_columns = [name for name in training_columns(validation) if name in columns]
        eval_set = Dataset.from_dict({name: validation.column(name).to_pylist() for name in eval_columns})
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[_progress_callback()],
    )
    # With tqdm off the trainer prints its logs to stdout, where `--json` output goes: log them instead.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    validation_loss = None
    if eval_set is not None:
        validation_loss = round(float(trainer.evaluate(eval_dataset=eval_set)["eval_loss"]), 6)
    return Trained(
        steps=int(output.global_step),
        train_loss=round(float(output.training_loss), 6) if output.training_loss is not None else None,
        validation_loss=validation_loss,
    )


def _progress_callback(stage: str = "finetune"):
    """Steps to kbflow.progress (the CLI's progress bar), losses to the log; transformers is imported late."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            progress.report(stage, state.global_step, state.max_steps)

        def on_log(self, args, state, control, logs=None, **kwargs):
            log.info("finetune step %s/%s: %s", state.global_step, state.max_steps, logs)

    return ProgressCallback()


# -- domain adaptation (TSDAE) --------------------------------------------------------------------

TSDAE_DELETE = 0.6  # the TSDAE paper's best noise: delete 60% of the words


def delete_noise(text: str, rng: random.Random, ratio: float = TSDAE_DELETE) -> str:
    """The text with about `ratio` of its words deleted (at least one kept), seeded: no NLTK needed."""
    words = text.split()
    if not words:
        return text
    kept = [word for word in words if rng.random() >= ratio]
    return " ".join(kept or [rng.choice(words)])


def adapt_embedder(model, texts: Sequence[str], settings: FinetuneConfig, work_dir: Path, max_steps: int) -> Trained:
    """TSDAE: `max_steps` denoising steps on `texts` (the index's chunks), the model changed in place."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import DenoisingAutoEncoderLoss
    from transformers.trainer_callback import PrinterCallback

    rng = random.Random(settings.seed)
    texts = [text for text in texts if text.split()]
    train_set = Dataset.from_dict({"noisy": [delete_noise(t, rng) for t in texts], "text": list(texts)})
    base_length = model.max_seq_length
    if settings.max_seq_length is not None:
        model.max_seq_length = settings.max_seq_length
    try:
        args = training_arguments(settings, work_dir, use_cpu=str(model.device) == "cpu", epochs=1,
                                  max_steps=max_steps)
        args.learning_rate = settings.tsdae_learning_rate
        # The decoder is the encoder's own weights (tied) with an LM head: no second model to load.
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_set,
                                             loss=DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True),
                                             callbacks=[_progress_callback("tsdae")])
        trainer.remove_callback(PrinterCallback)
        output = trainer.train()
    finally:
        model.max_seq_length = base_length
    return Trained(steps=int(output.global_step), validation_loss=None,
                   train_loss=round(float(output.training_loss), 6) if output.training_loss is not None else None)


def index_texts(store: Store) -> list[str]:
    """The index's chunk texts: what TSDAE adapts the model to."""
    if not store.has(CHUNKS):
        raise ValueError("TSDAE adapts the model to the index's own texts: ingest first (kbflow ingest)")
    return store.chunks(["text"]).column("text").to_pylist()


def adaptation_texts(texts: Sequence[str], steps: int, batch_size: int, seed: int) -> list[str]:
    """The chunk texts TSDAE sees: a seeded sample of `steps` × `batch_size` (all when fewer)."""
    wanted = steps * batch_size
    texts = list(texts)
    return texts if len(texts) <= wanted else random.Random(seed).sample(texts, wanted)


# -- the model folder ----------------------------------------------------------------------------


def load_model(path: str, device: str):
    """A SentenceTransformer from a local folder (no hub look-ups)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True)



def staging_dir(out: Path) -> Path:
    """A fresh folder beside `out` (same file system), renamed to `out` when the model is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def check_out_dir(out: Path) -> None:
    """Refuse an existing non-empty `out`: the index may be built with the model in it.

    The index records its model by folder path; tuning into the same folder would
    change the vectors of a model name the index already uses.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExists(f"{out} exists and is not empty; choose a new --out folder for the tuned model")


def write_lineage(model_dir: Path, lineage: dict[str, Any]) -> None:
    """Add kbflow's lineage to the model card (README.md) and as kbflow_finetune.json."""
    (model_dir / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, default=str) + "\n", encoding="utf-8")
    card = model_dir / MODEL_CARD
    existing = card.read_text(encoding="utf-8") if card.is_file() else f"# {model_dir.name}\n"
    card.write_text(existing.rstrip("\n") + "\n\n" + lineage_markdown(lineage), encoding="utf-8")


def lineage_markdown(lineage: dict[str, Any]) -> str:
    """Where the tuned model comes from and how it scores: the model card section and the Prefect artifact."""
    index = lineage.get("index") or {}
    base, tuned = lineage.get("base_metrics") or {}, lineage.get("tuned_metrics") or {}
    rows = "\n".join(
        f"| {name} | {base.get(name, '')} | {tuned.get(name, '')} |"
        for name in (*REPORTED_METRICS, "n")
    )
    return f"""## kbflow lineage

Fine-tuned by `kbflow finetune` from `{lineage['base_model']}` on the embedding-pairs dataset
`{lineage['dataset']}` (MultipleNegativesRankingLoss, {lineage['steps']} steps,
{lineage['train_rows']} training rows).

- dataset config hash: `{lineage.get('config_hash')}`, created {lineage.get('dataset_created_at')}
- index the dataset was built from: chunks version {index.get('chunks_version')},
  documents version {index.get('documents_version')}, model `{index.get('model')}`

Retrieval on the dataset's test split (exact cosine search over its positives and hard negatives):

| metric | base | tuned |
|---|---|---|
{rows}
"""


def publish_artifact(lineage: dict[str, Any]) -> None:
    """The lineage and base/tuned table as a Prefect markdown artifact, key "kbflow-finetune"."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is not None:
        create_markdown_artifact(lineage_markdown(lineage), key="kbflow-finetune", description="kbflow fine-tune")


def publish_model(staged: Path, out: Path) -> None:
    """Move the complete model folder to `out` in one rename (a crash before leaves no half model)."""
    check_out_dir(out)
    if out.exists():
        out.rmdir()  # empty (checked): rename needs the name free
    os.replace(staged, out)


def discard(staged: Path) -> None:
    shutil.rmtree(staged, ignore_errors=True)


# -- Prefect tasks ---------------------------------------------------------------------------------


@task(name="score-embedder", cache_policy=NO_CACHE)
def score(embedder: Embedder, retrieval: RetrievalSet) -> dict[str, float]:
    return score_embedder(embedder, retrieval)


@task(name="adapt-embedder", cache_policy=NO_CACHE)
def adapt(model, texts: list[str], settings: FinetuneConfig, work_dir: Path, max_steps: int) -> Trained:
    """TSDAE domain adaptation on the index's own texts, before the pair training."""
    return adapt_embedder(model, texts, settings, work_dir, max_steps)


@task(name="train-embedder", cache_policy=NO_CACHE)
def train(
    model, splits: dict[str, pa.Table], settings: FinetuneConfig, work_dir: Path,
    epochs: int | None = None, max_steps: int | None = None,
) -> Trained:
    return train_embedder(model, splits["train"], splits.get("validation"), settings, work_dir, epochs, max_steps)
