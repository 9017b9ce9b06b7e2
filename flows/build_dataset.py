"""The `build-dataset` flow: a fine-tuning dataset in Parquet from the index and labeled sources.

    embedding-pairs / reranker: index -> passages -> generate queries -> mine hard negatives
    sft:                        labeled records -> messages, prompt/completion
    raft:                       labeled records + index -> oracle + distractors as context
    then: split by document -> hygiene (empty, PII, length, duplicates) -> GX suite -> write

What is loaded: the chunks and documents tables at their current versions (recorded in
the manifest) and the labeled records as they are now. Not incremental: a build writes
the whole dataset again (into a temporary folder, swapped in at the end), and the same
index, config and seed give the same rows; `kbflow dataset check` finds the rows that
went stale since.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from kbflow import progress
from kbflow.config import DatasetKind, load_config
from kbflow.models import load_embedder
from kbflow.store import Store
from kbflow.tasks.datasets import (
    INDEX_KINDS,
    check_dataset_task,
    check_kind,
    clean_rows_task,
    describe_dataset,
    final_splits,
    generate_pairs_task,
    labeled_sources,
    make_generators,
    mine_hard_negatives_task,
    raft_rows_task,
    read_index_task,
    read_labeled_records_task,
    read_passages,
    require_rows,
    reranker_rows,
    sft_rows,
    write_dataset_task,
)


@flow(name="build-dataset")
def build_dataset(config_path: str, kind: DatasetKind, source: str | None = None, out_dir: str | None = None) -> dict:
    """Build the `kind` dataset into `out_dir/KIND` (default datasets.out_dir); return its report.

    Raises QualityGateFailed, writing nothing, when a blocking check of the kind's suite fails.
    """
    config = load_config(config_path)
    check_kind(kind)
    settings = config.datasets
    if kind in ("embedding-pairs", "reranker"):
        config.select_sources(source)  # positives come from indexed sources only
    generators = make_generators(settings) if kind in ("embedding-pairs", "reranker") else []
    sources = labeled_sources(config, source) if kind in ("sft", "raft") else []
    store = Store(config.store)
    stage = f"dataset {kind}"  # one bar over the build's stages; negatives mining has its own
    progress.report(stage, 0, 4)
    embedder = load_embedder(config.embedding)
    max_tokens = min(settings.max_tokens or embedder.max_tokens, embedder.max_tokens)
    index = read_index_task(store, config.embedding.model) if kind in INDEX_KINDS or store.has("chunks") else None

    if kind in ("embedding-pairs", "reranker"):
        pairs, skipped = generate_pairs_task(read_passages(index, source), generators, settings.seed)
        rows, dropped = mine_hard_negatives_task(pairs, index, embedder, settings.negatives, settings.negative_margin)
        dropped = skipped | dropped
        documents = index.content_hashes()
    else:
        records, dropped = read_labeled_records_task(sources)
        if kind == "sft":
            rows = sft_rows(records, index.documents if index else None, settings.system_prompt)
        else:
            rows, no_oracle = raft_rows_task(records, index, embedder, settings)
            dropped |= no_oracle
        documents = {record.doc_id: record.content_hash for record in records}
    progress.report(stage, 1, 4)

    rows, cleaned, pii = clean_rows_task("embedding-pairs" if kind == "reranker" else kind, rows,
                                         embedder.tokenizer, max_tokens, settings)
    dropped |= cleaned
    require_rows(kind, rows, dropped)
    if kind == "reranker":
        rows = reranker_rows(rows, settings.negatives)
    checks = check_dataset_task(kind, rows, embedder.tokenizer, max_tokens, config)
    progress.report(stage, 2, 4)

    splits = final_splits(kind, rows, settings.negatives)
    used = {doc_id for table in splits.values() for doc_id in table.column("doc_id").to_pylist()}
    manifest, card = describe_dataset(
        kind, kind, splits, config=config, source=source, index=index.versions if index else None,
        documents={doc_id: h for doc_id, h in documents.items() if doc_id in used},
        labeled_sources=[s.name for s in sources], dropped=dropped, pii=pii, checks=checks,
        tokenizer=embedder.tokenizer,
    )
    target = Path(out_dir) if out_dir else config.datasets.out_dir
    progress.report(stage, 3, 4)
    written = write_dataset_task(splits, target / kind, manifest, card)
    progress.report(stage, 4, 4)
    return {"kind": kind, "dir": str(written), "rows": manifest["rows"], "dropped": dropped, "pii": pii, "checks": checks}
