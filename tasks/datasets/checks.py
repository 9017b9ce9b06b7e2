"""Dataset checks: the kind's GX suite on a profile of the final rows, recomputed from the rows.

The profile has one row per dataset row: its split and its group's splits, whether its
query is a near-duplicate of another split's, its shortest field and longest field in
tokens, PII left, and per kind the message roles or the label; for the pair kinds
(embedding-pairs, reranker) whether the anchor appears in a negative, whether a negative
is likely another answer (tasks/datasets/negatives.py), and whether the positive or a negative is
navigation only. The suite
(expectations/dataset_<kind>.json, or a user's copy in quality.expectations_dir) decides;
a blocking failure stops the build before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import DatasetsConfig, KbflowConfig
from kbflow.errors import QualityGateFailed
from kbflow.models import Tokenizer
from kbflow.tasks.datasets.kinds import dataset_kind, field_values
from kbflow.tasks.quality.content import is_navigation_only
from kbflow.tasks.datasets.snapshot import GROUP, SPLIT, IndexSnapshot, lexical_scorer
from kbflow.tasks.datasets.dedup import cross_group_near_duplicates
from kbflow.tasks.datasets.negatives import LexicalScorer, contains_anchor, holds_answer
from kbflow.tasks.datasets.pii import FLAG_COLUMN, count_pii
from kbflow.tasks.quality.suites import SuiteResult, bundled_expectations_dir, load_suite, open_context, validate_frame


def dataset_profile(
    kind: str, table: pa.Table, tokenizer: Tokenizer, config: DatasetsConfig, scorer: LexicalScorer | None = None
) -> pd.DataFrame:
    """One row per dataset row: what the suite checks, recomputed from the rows themselves.

    `scorer` (BM25 with the index's term statistics) is needed for the pair kinds.
    """
    spec = dataset_kind(kind)
    splits, groups = table.column(SPLIT).to_pylist(), table.column(GROUP).to_pylist()
    splits_of_group: dict[str, set[str]] = {}
    for group, split in zip(groups, splits):
        splits_of_group.setdefault(group, set()).add(split)
    queries = table.column(spec.dedup_column).to_pylist()
    fields = spec.row_fields(table)
    counts = iter(tokenizer.count([f for row in fields for f in row]) if fields else [])
    flagged = table.column(FLAG_COLUMN).to_pylist() if FLAG_COLUMN in table.column_names else [False] * table.num_rows
    texts = _row_texts(spec.text_columns_of(table), table)
    profile = {
        "row_id": table.column(spec.id_column).to_pylist(),
        "doc_id": table.column("doc_id").to_pylist(),
        "source": table.column("source").to_pylist(),
        "split": splits,
        "group_splits": [len(splits_of_group[g]) for g in groups],
        "cross_split_duplicate": cross_group_near_duplicates(queries, splits, config.near_duplicate_threshold, config.seed),
        "min_field_chars": [min(len(f.strip()) for f in row) for row in fields],
        "max_field_tokens": [max(next(counts) for _ in row) for row in fields],
        "pii_remaining": [0 if flag else sum(count_pii(row).values()) for row, flag in zip(texts, flagged)],
    }
    if spec.has_messages:
        profile["roles_valid"] = [
            [m["role"] for m in messages] == ["system", "user", "assistant"] and all(m["content"] for m in messages)
            for messages in table.column("messages").to_pylist()
        ]
    if spec.label_column:  # several rows per query, one per passage
        profile["label"] = field_values(table, spec.label_column)
    else:  # one row per query (pairs) or record (sft, raft)
        profile["row_key"] = [f"{s}\0{i}" for s, i in zip(profile["source"], profile["row_id"])]
    if spec.base.name == "embedding-pairs":
        profile |= negatives_profile(_pairs_of(kind, table), scorer or LexicalScorer([]), config.answer_overlap_ratio)
    return pd.DataFrame(profile)


def _pairs_of(kind: str, table: pa.Table) -> list[tuple[str, str, list[str]]]:
    """Per row, its query's (anchor, positive, negatives): a pair row's own, or (reranker) its query's rows."""
    if not dataset_kind(kind).label_column:
        negatives = [c for c in table.column_names if c.startswith("negative_")]
        rows = table.select(["anchor", "positive", *negatives]).to_pylist()
        return [(row["anchor"], row["positive"], [row[c] or "" for c in negatives]) for row in rows]
    rows = table.select(["query_id", "query", "passage", "label"]).to_pylist()
    queries: dict[str, tuple[str, list[str], list[str]]] = {}
    for row in rows:
        _, positives, negatives = queries.setdefault(row["query_id"], (row["query"], [], []))
        (positives if row["label"] == 1 else negatives).append(row["passage"])
    return [(queries[row["query_id"]][0], " ".join(queries[row["query_id"]][1]), queries[row["query_id"]][2])
            for row in rows]


def negatives_profile(
    pairs: list[tuple[str, str, list[str]]], scorer: LexicalScorer, max_ratio: float
) -> dict[str, list]:
    """Per (anchor, positive, negatives): the anchor in a negative, a negative that is likely another
    answer, navigation-only texts (the miner's own rules, on the final rows)."""
    return {
        "anchor_in_negative": [any(contains_anchor(a, n) for n in ns) for a, _, ns in pairs],
        "answer_in_negative": [any(holds_answer(a, p, n, scorer, max_ratio) for n in ns) for a, p, ns in pairs],
        "positive_is_navigation": [is_navigation_only(p) for _, p, _ in pairs],
        "negative_is_navigation": [any(is_navigation_only(n) for n in ns) for _, _, ns in pairs],
    }


def _row_texts(columns: list[str], table: pa.Table) -> list[list[str]]:
    """Per row, every text of `columns` (a messages column gives each message's content)."""
    values = [table.column(c).to_pylist() for c in columns]
    rows = []
    for row in zip(*values):
        texts = []
        for value in row:
            texts += [m["content"] for m in value] if isinstance(value, list) else [value]
        rows.append(texts)
    return rows


def suite_for(kind: str, expectations_dir: Path | None) -> dict[str, Any]:
    """The kind's suite: a user's copy in quality.expectations_dir if there is one, else the bundled one."""
    name = dataset_kind(kind).suite
    if expectations_dir is not None and (expectations_dir / f"{name}.json").is_file():
        return load_suite(name, expectations_dir)
    return load_suite(name, bundled_expectations_dir())


def check_rows(kind: str, profile: pd.DataFrame, max_tokens: int, expectations_dir: Path | None) -> dict[str, Any]:
    """Validate the profile with the kind's suite; raise QualityGateFailed on a blocking failure."""
    suite = suite_for(kind, expectations_dir)
    result: SuiteResult = validate_frame(open_context(None), suite, profile, {"max_tokens": max_tokens})
    names = {(e["type"], e["kwargs"].get("column")): e["meta"].get("check") for e in suite["expectations"]}
    summary = {
        "suite": result.name,
        "success": result.success,
        "expectations": [
            {"check": names.get((o.type, o.column)), **{k: v for k, v in o.as_dict().items() if k != "examples"},
             **({"examples": o.examples} if not o.success else {})}
            for o in result.expectations
        ],
    }
    if result.blocking_failures:
        raise QualityGateFailed(result.blocking_failures)
    return summary


@task(name="check-dataset", cache_policy=NO_CACHE)
def check_dataset_task(
    kind: str, table: pa.Table, tokenizer: Tokenizer, max_tokens: int, config: KbflowConfig,
    index: IndexSnapshot | None = None,
) -> dict[str, Any]:
    """The kind's GX suite on the final rows; a blocking failure stops the build."""
    scorer = lexical_scorer(index) if index is not None and dataset_kind(kind).base.name == "embedding-pairs" else None
    profile = dataset_profile(kind, table, tokenizer, config.datasets, scorer)
    return check_rows(kind, profile, max_tokens, config.quality.expectations_dir)
