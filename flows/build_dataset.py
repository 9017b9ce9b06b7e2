"""The `build-dataset` flow: a fine-tuning dataset in Parquet from the index and labeled sources.

    generated kinds (embedding-pairs, reranker): index -> passages -> queries (+ labeled questions)
                                                 -> [local-llm: round-trip check] -> hard negatives
    labeled kinds (sft, raft):                   labeled records (+ index) -> the kind's rows
    then: split by document -> hygiene (empty, PII, length, duplicates) -> [derive: reranker
          rows from the cleaned pairs] -> GX suite -> manifest + card -> write

What each kind reads, checks and writes is its record in tasks/datasets/kinds.py. What is
loaded: the chunks and documents tables at their current versions (recorded in the
manifest) and the labeled records as they are now. Not incremental: a build writes the
whole dataset again (into a temporary folder, swapped in at the end), and the same index,
config and seed give the same rows; `kbflow dataset check` finds the rows that went stale since.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from kbflow import progress
from kbflow.access import visible_rows
from kbflow.config import DatasetKind, load_config
from kbflow.resources import Resources
from kbflow.store import CHUNKS
from kbflow.tasks.datasets.card import describe_dataset, write_dataset_task
from kbflow.tasks.datasets.checks import check_dataset_task
from kbflow.tasks.datasets.kinds import dataset_kind, labeled_rows_task
from kbflow.tasks.datasets.snapshot import mine_hard_negatives_task, read_index_task, read_passages
from kbflow.tasks.datasets.generators import generate_pairs_task, generation_stats, make_generators
from kbflow.tasks.datasets.local_llm import NAME as LOCAL_LLM, filter_round_trip_task
from kbflow.tasks.datasets.hygiene import clean_rows_task, final_splits, require_rows
from kbflow.tasks.datasets.labeled import (
    content_hashes,
    labeled_pairs_task,
    labeled_sources,
    read_labeled_records_task,
)


@flow(name="build-dataset")
def build_dataset(
    config_path: str,
    kind: DatasetKind,
    source: str | None = None,
    out_dir: str | None = None,
    principals: list[str] | None = None,
) -> dict:
    """Build the `kind` dataset into `out_dir/KIND` (default datasets.out_dir); return its report.

    With `[access] mode = "enforce"` only documents visible to `principals` (and the public
    principal; kbflow.access) feed it. Raises QualityGateFailed, writing nothing, when a
    blocking check of the kind's suite fails.
    """
    config = load_config(config_path)
    visible = visible_rows(config.access, None, principals)
    spec = dataset_kind(kind)
    settings = config.datasets
    if spec.labeled:
        sources, generators = labeled_sources(config, source), []
    else:  # positives come from indexed sources only: an unknown name is an error before any work
        config.select_sources(source)
        sources, generators = [], make_generators(settings)
    resources = Resources.open(config)
    store = resources.store
    stage = f"dataset {kind}"  # one bar over the build's stages; negatives mining has its own
    progress.report(stage, 0, 4)
    embedder = resources.embedder
    max_tokens = min(settings.max_tokens or embedder.max_tokens, embedder.max_tokens)
    index = read_index_task(store, config.embedding.model, visible) if spec.reads_index or store.has(CHUNKS) else None
    generation: dict = {}

    if spec.labeled:
        records, dropped = read_labeled_records_task(sources)
        rows, not_built = labeled_rows_task(spec, records, index, embedder, settings)
        documents = content_hashes(records)
    else:
        pairs, dropped = generate_pairs_task(read_passages(index, source), generators, settings.seed)
        removed = {}
        if any(g.name == LOCAL_LLM for g in generators):  # keep a question only if its passage is found
            pairs, removed[LOCAL_LLM] = filter_round_trip_task(
                pairs, embedder, index.chunks.column("chunk_id").to_pylist(), index.vectors, settings.local_llm.top_k)
            dropped[f"{LOCAL_LLM}_round_trip"] = removed[LOCAL_LLM]
        generation = generation_stats(generators, pairs, removed)
        if "labeled" in settings.generators and config.labeled_sources():  # the real questions, when there are any
            records, bad = read_labeled_records_task(config.labeled_sources())
            asked, skipped = labeled_pairs_task(records, index, embedder)
            pairs += [pair for pair in asked if source is None or index.chunk(pair.chunk_id)["source"] == source]
            dropped |= bad | skipped
        rows, not_built = mine_hard_negatives_task(pairs, index, embedder, settings)
        documents = index.content_hashes()
    dropped |= not_built
    progress.report(stage, 1, 4)

    rows, cleaned, pii = clean_rows_task(spec.base.name, rows, embedder.tokenizer, max_tokens, settings)
    dropped |= cleaned
    require_rows(kind, rows, dropped)
    rows = spec.derive_rows(rows, settings.negatives)
    checks = check_dataset_task(kind, rows, embedder.tokenizer, max_tokens, config, index)
    progress.report(stage, 2, 4)

    splits = final_splits(kind, rows, settings.negatives)
    used = {doc_id for table in splits.values() for doc_id in table.column("doc_id").to_pylist()}
    manifest, card = describe_dataset(
        kind, kind, splits, config=config, source=source, index=index.versions if index else None,
        documents={doc_id: h for doc_id, h in documents.items() if doc_id in used},
        labeled_sources=[s.name for s in sources], dropped=dropped, pii=pii, checks=checks,
        tokenizer=embedder.tokenizer, principals=None if visible is None else list(visible.principals),
        generation=generation,
    )
    target = Path(out_dir) if out_dir else config.datasets.out_dir
    progress.report(stage, 3, 4)
    written = write_dataset_task(splits, target / kind, manifest, card)
    progress.report(stage, 4, 4)
    return {"kind": kind, "dir": str(written), "rows": manifest["rows"], "dropped": dropped, "pii": pii, "checks": checks,
            **({"generation": generation} if generation else {})}
