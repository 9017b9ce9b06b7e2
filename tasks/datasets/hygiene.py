"""Dataset hygiene: split by document, then drop what must not be trained on, every drop counted.

In a fixed order: split by document group (a seeded hash, so no document feeds two
splits), non-empty fields, PII policy (redact by default, before anything is written),
length in model tokens, exact and near-duplicate queries within a split, near-duplicate
queries across splits (dropped from the later split). What each step reads (the text
columns, the checked fields, the dedup column) is the kind's record (tasks/datasets/kinds.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import DatasetsConfig
from kbflow.dataset_files import SPLITS
from kbflow.errors import InvalidInput
from kbflow.models import Tokenizer
from kbflow.tasks.datasets.kinds import dataset_kind
from kbflow.tasks.datasets.snapshot import GROUP, QUERY, SPLIT
from kbflow.tasks.datasets.dedup import cross_group_near_duplicates, drop_duplicates
from kbflow.tasks.datasets.pii import FLAG_COLUMN, apply_pii_policy


def split_of(group: str, seed: int, validation_share: float, test_share: float) -> str:
    """A group's split from a seeded hash: stable across runs, one split per group."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    if share < test_share:
        return "test"
    return "validation" if share < test_share + validation_share else "train"


def assign_splits(table: pa.Table, config: DatasetsConfig) -> pa.Table:
    splits = [split_of(g, config.seed, config.validation_share, config.test_share) for g in table.column(GROUP).to_pylist()]
    return table.append_column(SPLIT, pa.array(splits, pa.string()))


def _keep(table: pa.Table, mask: Sequence[bool]) -> tuple[pa.Table, int]:
    kept = table.filter(pa.array(list(mask), pa.bool_()))
    return kept, table.num_rows - kept.num_rows


def clean_rows(
    kind: str, table: pa.Table, tokenizer: Tokenizer, max_tokens: int, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Split, then filter: empty fields, PII, length, duplicates within and across splits.

    Returns the rows (with the private `_split` column), the rows dropped per step and
    the PII found per type (placeholders replaced it under the redact policy).
    """
    spec, dropped = dataset_kind(kind), {}
    table = assign_splits(table, config)
    table, dropped["empty"] = _keep(table, [all(f.strip() for f in fields) for fields in spec.row_fields(table)])

    before = table.num_rows
    table, pii = apply_pii_policy(table, spec.text_columns_of(table), config.pii_policy)
    if QUERY in table.column_names:  # raft's question, its dedup text: cleaned the same way (not counted twice)
        table, _ = apply_pii_policy(table, [QUERY], "redact" if config.pii_policy == "flag" else config.pii_policy)
    dropped["pii"] = before - table.num_rows

    fields = spec.row_fields(table)
    counts = iter(tokenizer.count([f for row in fields for f in row]) if fields else [])
    table, dropped["too_long"] = _keep(table, [max(next(counts) for _ in row) <= max_tokens for row in fields])

    parts, exact, near = [], 0, 0
    for split in SPLITS:
        part, counts_ = drop_duplicates(table.filter(pc.field(SPLIT) == split), spec.dedup_column,
                                        config.near_duplicate_threshold, config.seed)
        parts.append(part)
        exact, near = exact + counts_["exact"], near + counts_["near"]
    table = pa.concat_tables(parts)
    dropped["duplicate_exact"], dropped["duplicate_near"] = exact, near

    marked = cross_group_near_duplicates(table.column(spec.dedup_column).to_pylist(), table.column(SPLIT).to_pylist(),
                                         config.near_duplicate_threshold, config.seed)
    table, dropped["cross_split_duplicate"] = _keep(table, [not m for m in marked])
    return table, dropped, pii


def require_rows(kind: str, table: pa.Table, dropped: dict[str, int]) -> None:
    """A dataset with no rows is an error that says where they went, not an empty folder."""
    if table.num_rows == 0:
        steps = ", ".join(f"{step} {n}" for step, n in dropped.items() if n) or "nothing was generated"
        raise InvalidInput(f"no {kind} rows to write (dropped: {steps}); check the sources and [datasets] settings")


def final_splits(kind: str, table: pa.Table, negatives: int) -> dict[str, pa.Table]:
    """The written tables per split: contract columns (plus `pii_flagged` under the flag policy)."""
    schema = dataset_kind(kind).schema(negatives)
    if FLAG_COLUMN in table.column_names:
        schema = schema.append(pa.field(FLAG_COLUMN, pa.bool_()))
    return {split: table.filter(pc.field(SPLIT) == split).select(schema.names).cast(schema) for split in SPLITS}


@task(name="clean-rows", cache_policy=NO_CACHE)
def clean_rows_task(
    kind: str, table: pa.Table, tokenizer: Tokenizer, max_tokens: int, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Split by document and apply the hygiene steps."""
    return clean_rows(kind, table, tokenizer, max_tokens, config)
