"""Dataset kinds as data: one record per kind says everything the build looks up about it.

Where rows come from (generated query/passage pairs from the index, or labeled
question/answer records), the written schema, which columns hold text (PII is looked
for there), which fields must be non-empty and fit the model, the column duplicates are
judged on, the row id, the index chunks a row depends on (`kbflow dataset check`), the
GX suite, and the dataset card's text. Adding a kind is adding a record here, its schema
in kbflow/schemas.py and its suite in expectations/.

Field names: a column name; `negative_*` is every `negative_N` column the table has;
`messages.<role>` is the content of that role's message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import DatasetKind, DatasetsConfig
from kbflow.errors import InvalidInput
from kbflow.models import Embedder
from kbflow.schemas import dataset_schema
from kbflow.tasks.datasets.snapshot import QUERY, IndexSnapshot, reranker_rows
from kbflow.tasks.datasets.labeled import LabeledRecord, raft_rows, sft_rows

DATASET_KINDS: tuple[str, ...] = get_args(DatasetKind)
# Rows from labeled records: (records, the index snapshot or None, embedder, settings) -> (rows, dropped per reason)
LabeledRows = Callable[
    [list[LabeledRecord], IndexSnapshot | None, Embedder, DatasetsConfig], tuple[pa.Table, dict[str, int]]
]


@dataclass(frozen=True)
class DatasetKindSpec:
    """What the build, its hygiene, checks, card and stale check need to know about one kind."""

    name: DatasetKind
    description: str  # the card's first paragraph
    lineage: str  # the card's lineage columns
    training: str  # the card's training snippet: {path} the dataset folder, {negatives} the negative columns
    id_column: str  # a row's (query's or record's) id
    dedup_column: str  # the text duplicates are judged on, within and across splits
    text_columns: tuple[str, ...]  # written columns holding text: PII is looked for (and redacted) there
    checked_fields: tuple[str, ...]  # per row: each must be non-empty and fit max_tokens
    length_fields: tuple[str, ...]  # the card's tokens per field
    chunk_columns: tuple[str, ...]  # the index chunks a row's text comes from (ids or lists of ids)
    labeled: bool  # rows from labeled records (else: generated pairs from the index's passages)
    reads_index: bool  # needs the index (the others read it only when it exists)
    label_column: str | None = None  # several rows per query, told apart by this label
    rows_of: DatasetKind | None = None  # built and cleaned as this kind's rows, then `derive`d
    derive: Callable[[pa.Table, int], pa.Table] | None = None  # (cleaned rows, negatives) -> this kind's rows
    labeled_rows: LabeledRows | None = None  # how a labeled kind builds its rows

    @property
    def suite(self) -> str:
        """The GX suite that checks the final rows (expectations/<suite>.json)."""
        return "dataset_" + self.name.replace("-", "_")

    @property
    def base(self) -> DatasetKindSpec:
        """The kind whose rows are built and cleaned: this one, or the one it is derived from."""
        return KINDS[self.rows_of] if self.rows_of else self

    @property
    def has_messages(self) -> bool:
        return "messages" in self.text_columns

    def schema(self, negatives: int) -> pa.Schema:
        """The written columns (embedding-pairs: one per configured negative)."""
        return dataset_schema(self.name, negatives)

    def derive_rows(self, rows: pa.Table, negatives: int) -> pa.Table:
        """This kind's rows from its base kind's cleaned rows (the rows themselves when not derived)."""
        return self.derive(rows, negatives) if self.derive else rows

    def columns(self, names: tuple[str, ...], table: pa.Table) -> list[str]:
        """`names` with `negative_*` expanded to the table's negative columns, in table order."""
        found: list[str] = []
        for name in names:
            if name.endswith("*"):
                found += [c for c in table.column_names if c.startswith(name[:-1])]
            else:
                found.append(name)
        return found

    def text_columns_of(self, table: pa.Table) -> list[str]:
        """The written columns that hold text (strings a person wrote, or messages)."""
        return self.columns(self.text_columns, table)

    def row_fields(self, table: pa.Table) -> list[list[str]]:
        """Per row, the `checked_fields` values ("" for a missing one)."""
        values = [field_values(table, name) for name in self.columns(self.checked_fields, table)]
        return [[value or "" for value in row] for row in zip(*values)]

    def dependencies(self, row: dict[str, Any]) -> list[str]:
        """The index chunks a written row's text comes from."""
        found: list[str] = []
        for column in self.chunk_columns:
            value = row[column]
            found += value if isinstance(value, list) else [value] if value else []
        return found


def field_values(table: pa.Table, name: str) -> list[Any]:
    """A field's value per row: a column, or `messages.<role>` (that message's content)."""
    if name.startswith("messages."):
        role = name.split(".", 1)[1]
        return [next((m["content"] for m in messages if m["role"] == role), "")
                for messages in table.column("messages").to_pylist()]
    return table.column(name).to_pylist()


def dataset_kind(kind: str) -> DatasetKindSpec:
    """The record of a kind; a ValueError listing the kinds for an unknown one."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown dataset kind {kind!r}; use one of {', '.join(DATASET_KINDS)}")
    return KINDS[kind]


KINDS: dict[str, DatasetKindSpec] = {
    "embedding-pairs": DatasetKindSpec(
        name="embedding-pairs",
        description="Query–passage pairs with hard negatives for embedding fine-tuning (sentence-transformers "
                    "`anchor`/`positive`/`negative_*` format).",
        lineage="`query_id`, `positive_chunk_id` (a chunk of the index: `kbflow trace`), `doc_id`, `source`, "
                "`generator`",
        training="""\
```python
from datasets import load_dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.losses import MultipleNegativesRankingLoss

data = load_dataset("parquet", data_dir="{path}/data")
columns = ["anchor", "positive", {negatives}]  # the loss reads columns by position: drop lineage
train = data["train"].select_columns(columns)
model = SentenceTransformer("all-MiniLM-L6-v2")
trainer = SentenceTransformerTrainer(model=model, train_dataset=train,
                                     eval_dataset=data["validation"].select_columns(columns),
                                     loss=MultipleNegativesRankingLoss(model))
trainer.train()
```
Or `kbflow finetune --dataset {path}`.""",
        id_column="query_id",
        dedup_column="anchor",
        text_columns=("anchor", "positive", "negative_*"),
        checked_fields=("anchor", "positive", "negative_*"),
        length_fields=("anchor", "positive"),
        chunk_columns=("positive_chunk_id",),
        labeled=False,
        reads_index=True,
    ),
    "reranker": DatasetKindSpec(
        name="reranker",
        description="Query–passage pairs labeled 1 (the query's positive) or 0 (a hard negative) for cross-encoder "
                    "training.",
        lineage="`query_id` (shared with the embedding pairs), `chunk_id` (the positive's; null for negatives), "
                "`doc_id`, `source`",
        training="""\
```python
from datasets import load_dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

data = load_dataset("parquet", data_dir="{path}/data")
train = data["train"].select_columns(["query", "passage", "label"])  # inputs by position, then the label
model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2", num_labels=1)
CrossEncoderTrainer(model=model, train_dataset=train, loss=BinaryCrossEntropyLoss(model)).train()
```""",
        id_column="query_id",
        dedup_column="query",
        text_columns=("query", "passage"),
        checked_fields=("query", "passage"),
        length_fields=("query", "passage"),
        chunk_columns=("chunk_id",),
        labeled=False,
        reads_index=True,
        label_column="label",
        rows_of="embedding-pairs",
        derive=reranker_rows,
    ),
    "sft": DatasetKindSpec(
        name="sft",
        description="Question–answer examples for supervised fine-tuning of an LLM (TRL `messages` and "
                    "`prompt`/`completion`).",
        lineage="`id` (`<source>:<record id>`), `doc_id` (the record), `source`",
        training="""\
```python
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

data = load_dataset("parquet", data_dir="{path}/data")
train = data["train"].select_columns(["messages"])  # conversational; or ["prompt", "completion"]
SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=train, args=SFTConfig(output_dir="out")).train()
```""",
        id_column="id",
        dedup_column="prompt",
        text_columns=("messages", "prompt", "completion"),
        checked_fields=("prompt", "completion"),
        length_fields=("messages.user", "messages.assistant"),
        chunk_columns=(),
        labeled=True,
        reads_index=False,
        labeled_rows=sft_rows,
    ),
    "raft": DatasetKindSpec(
        name="raft",
        description="Retrieval-augmented fine-tuning examples (RAFT, Zhang et al. 2024): the question with the "
                    "oracle chunk and distractor chunks as context, the answer as target.",
        lineage="`id`, `doc_id` (the record), `source`, `oracle_chunk_id`, `distractor_chunk_ids`, `has_oracle`",
        training="""\
```python
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

data = load_dataset("parquet", data_dir="{path}/data")
train = data["train"].select_columns(["messages"])  # the user turn holds the context and the question
SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=train, args=SFTConfig(output_dir="out")).train()
```""",
        id_column="id",
        dedup_column=QUERY,
        text_columns=("messages",),
        checked_fields=(QUERY, "messages.assistant"),
        length_fields=("messages.user", "messages.assistant"),
        chunk_columns=("oracle_chunk_id", "distractor_chunk_ids"),
        labeled=True,
        reads_index=True,
        labeled_rows=raft_rows,
    ),
}

assert tuple(KINDS) == DATASET_KINDS, "one record per DatasetKind, in its order"


@task(name="labeled-rows", cache_policy=NO_CACHE)
def labeled_rows_task(
    spec: DatasetKindSpec,
    records: list[LabeledRecord],
    index: IndexSnapshot | None,
    embedder: Embedder,
    config: DatasetsConfig,
) -> tuple[pa.Table, dict[str, int]]:
    """The kind's rows from the records (sft: messages; raft: + oracle and distractors), and the drops."""
    return spec.labeled_rows(records, index, embedder, config)
