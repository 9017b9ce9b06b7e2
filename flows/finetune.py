"""The `finetune` flow: embedding-pairs in, a tuned model folder and base-vs-tuned metrics out.

    read pairs -> score base -> [TSDAE on the index's chunk texts] -> train (MNRL) -> save to staging
               -> score tuned -> model card -> rename -> Prefect artifact (base vs tuned)

What is loaded: the train/validation/test splits of one embedding-pairs dataset
(`kbflow dataset build --kind embedding-pairs`) and the configured embedding
model as the base. Nothing is incremental: each run trains from the base. The
model is written to a staging folder beside `out` and renamed only when it is
complete, so a crash leaves no half model. Scores are on the dataset's test split: all its anchors
(generated questions, mostly), and apart the real questions of labeled sources among them
(`labeled`, held out by document), when there are any. The tuned model is scored from the
saved folder, so what is reported is what `[embedding] model = out` will load.
Switching the index to it is a separate, checked step: `kbflow reindex`.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow

from kbflow.config import load_config
from kbflow.models import SentenceTransformerEmbedder, resolve_device, resolve_model_path
from kbflow.store import Store
from kbflow.tasks.evaluation.finetune import (
    adapt,
    adaptation_texts,
    index_texts,
    labeled_retrieval_set,
    check_out_dir,
    discard,
    load_model,
    publish_artifact,
    publish_model,
    read_manifest,
    read_pairs,
    retrieval_set,
    score,
    staging_dir,
    train,
    write_lineage,
)


@flow(name="finetune")
def finetune(
    config_path: str, dataset: str, out: str, epochs: int | None = None, max_steps: int | None = None,
    tsdae_steps: int | None = None,
) -> dict:
    """Fine-tune the configured model on the dataset at `dataset`, save it to `out`; report base vs tuned.

    `tsdae_steps` (default `[finetune] tsdae_steps`) adapts the model to the index's chunk texts first.
    """
    started = time.perf_counter()
    config = load_config(config_path)
    embedding = config.embedding
    device = resolve_device(embedding.device)
    dataset_dir, out_dir = Path(dataset).expanduser().resolve(), Path(out).expanduser().resolve()
    check_out_dir(out_dir)
    splits = read_pairs(dataset_dir)
    retrieval = retrieval_set(splits)
    labeled = labeled_retrieval_set(splits)
    settings = config.finetune
    tsdae_steps = settings.tsdae_steps if tsdae_steps is None else tsdae_steps
    texts = index_texts(Store(config.store)) if tsdae_steps else []

    model = load_model(resolve_model_path(embedding.model), device)
    base_embedder = SentenceTransformerEmbedder(embedding.model, model, embedding.batch_size)
    base = score(base_embedder, retrieval)
    base_labeled = score(base_embedder, labeled) if labeled else None

    staged = staging_dir(out_dir)
    try:
        training_started = time.perf_counter()
        adapted = None
        if tsdae_steps:
            adapted = adapt(model, adaptation_texts(texts, tsdae_steps, settings.batch_size, settings.seed),
                            settings, staged / "trainer", tsdae_steps)
        trained = train(model, splits, settings, staged / "trainer", epochs, max_steps) if settings.pairs else None
        minutes = (time.perf_counter() - training_started) / 60
        discard(staged / "trainer")
        model.save(str(staged))
        tuned_model = load_model(str(staged), device)
        tuned_embedder = SentenceTransformerEmbedder(str(out_dir), tuned_model, embedding.batch_size)
        tuned = score(tuned_embedder, retrieval)
        tuned_labeled = score(tuned_embedder, labeled) if labeled else None
        steps = (trained.steps if trained else 0) + (adapted.steps if adapted else 0)
        manifest = read_manifest(dataset_dir)
        lineage = {
            "base_model": embedding.model, "dataset": str(dataset_dir), "config_hash": manifest.get("config_hash"),
            "dataset_created_at": manifest.get("created_at"), "index": manifest.get("index"),
            "steps": steps, "tsdae_steps": adapted.steps if adapted else 0, "train_rows": splits["train"].num_rows,
            "base_metrics": base, "tuned_metrics": tuned,
            **({"labeled": {"base": base_labeled, "tuned": tuned_labeled}} if labeled else {}),
        }
        write_lineage(staged, lineage)
        publish_model(staged, out_dir)
    except BaseException:
        discard(staged)
        raise
    publish_artifact(lineage)
    return {
        "base": base, "tuned": tuned, "model_dir": str(out_dir), "steps": steps,
        "scored_on": "the dataset's test split (generated questions"
                     + (", and the labeled questions apart)" if labeled else "; no labeled questions in it)"),
        **({"labeled": {"base": base_labeled, "tuned": tuned_labeled}} if labeled else {}),
        "tsdae": {"steps": adapted.steps, "train_loss": adapted.train_loss} if adapted else None,
        "train_rows": splits["train"].num_rows, "minutes": round(minutes, 2), "dataset": str(dataset_dir),
        "train_loss": trained.train_loss if trained else None,
        "validation_loss": trained.validation_loss if trained else None,
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
    }

