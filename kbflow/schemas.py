"""Arrow schemas of everything kbflow passes between stages and stores.

Stage data (`DISCOVERED`, `PARSED`, `CHUNKED`) flows between tasks; the
`documents`, `chunks`, `runs` and `quarantine` schemas are the LanceDB tables
README.md documents ("The store"); their names and columns are part of the contract.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# An ACL: the principals that may see a document and its chunks (kbflow.access).
ACL = pa.list_(pa.string())

# What discovery saw at a source, before anything is parsed.
DISCOVERED = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("tenant", pa.string()),
        ("uri", pa.string()),  # path relative to the source root; "<file>#<id>" for records
        ("path", pa.string()),  # absolute local path of the file that holds it; a sql row: its key as JSON
        ("format", pa.string()),  # file suffix without the dot: md, pdf, jsonl ...; "sql" for a sql row
        ("content_hash", pa.string()),  # sha256 of the bytes (of the record, for records)
        ("size", pa.int64()),
        ("mtime", pa.float64()),
        # object storage: what the listing says about the object's version (ETag, version id, or
        # size+mtime), compared with the stored one before any body is read; null for local files
        ("change_token", pa.string()),
        # who may see it (kbflow.access): principal strings; null: no ACL (visible to nobody when enforced)
        ("acl", ACL),
    ]
)

# One heading-delimited part of a parsed document, as an offset into its text.
SECTION = pa.struct([("heading", pa.string()), ("start", pa.int64())])

# A parsed document: clean text and its heading structure.
PARSED = pa.schema(
    [
        *[DISCOVERED.field(name) for name in ("doc_id", "source", "tenant", "uri", "format", "content_hash", "size")],
        ("title", pa.string()),
        ("text", pa.large_string()),
        ("sections", pa.list_(SECTION)),
        ("metadata", pa.string()),  # JSON object: record metadata columns
        ("boilerplate_share", pa.float64()),  # share of the parsed text's characters removed as boilerplate
        ("acl", ACL),
    ]
)

# A chunk before it is embedded.
CHUNKED = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("uri", pa.string()),
        ("tenant", pa.string()),
        ("ordinal", pa.int32()),
        ("heading", pa.string()),
        ("text", pa.string()),  # what the model embeds: heading line + section text
        ("text_hash", pa.string()),  # sha256 of text: the embedding cache key with the model
        ("n_tokens", pa.int32()),  # model tokens incl. special tokens
        ("metadata", pa.string()),
        ("acl", ACL),
    ]
)


def vector_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list vector column as an (rows, dim) matrix (the inverse of kbflow.tasks.index.embed.vector_column)."""
    return pc.list_flatten(column).to_numpy().reshape(-1, column.type.list_size)


def chunks_schema(dim: int) -> pa.Schema:
    """The `chunks` table: chunked rows plus their vector, model and writing run; the ACL last.

    `acl` comes last so that a table written before it existed, which gains it as its last
    column, keeps the same column order as the rows a run stages.
    """
    chunked = CHUNKED.remove(CHUNKED.get_field_index("acl"))
    return chunked.append(pa.field("vector", pa.list_(pa.float32(), dim))).append(
        pa.field("model", pa.string())
    ).append(pa.field("run_id", pa.string())).append(pa.field("acl", ACL))


# The `documents` table: one row per document kbflow knows, with the hash it last saw.
DOCUMENTS = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("tenant", pa.string()),
        ("uri", pa.string()),
        ("format", pa.string()),
        ("content_hash", pa.string()),
        ("size", pa.int64()),
        ("title", pa.string()),
        ("status", pa.string()),  # "active" or "quarantined" (last good chunks are kept)
        ("n_chunks", pa.int32()),
        ("first_run_id", pa.string()),
        ("last_run_id", pa.string()),
        ("change_token", pa.string()),  # object storage: the listing's token when content_hash was taken
        ("acl", ACL),  # who may see it (kbflow.access); null: no ACL
    ]
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("flow", pa.string()),
        ("source", pa.string()),  # null: all sources
        ("status", pa.string()),  # published | no_change | blocked | refused | failed
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("duration_s", pa.float64()),
        ("stage_durations", pa.string()),  # JSON {stage: seconds}
        ("documents", pa.string()),  # JSON {new, changed, unchanged, deleted, quarantined}
        ("chunks", pa.string()),  # JSON {embedded, reused, deleted, total}
        ("dq_success", pa.bool_()),  # null: no check ran (no_change, refused, rollback)
        ("dq_failures", pa.string()),  # JSON list of failed blocking expectations
        ("quality_results", pa.string()),  # path of the run's quality summary (kbflow quality)
        ("error", pa.string()),
        ("chunks_version", pa.int64()),
        ("documents_version", pa.int64()),
        ("model", pa.string()),
        ("kbflow_version", pa.string()),
        ("prefect_flow_run_id", pa.string()),
        ("parent_run_id", pa.string()),  # rollback: the run whose published state was restored
        ("warnings", pa.string()),  # JSON list, e.g. a source that yielded no documents
        ("promotion", pa.string()),  # JSON: reindex's queries MRR@10 before/after and its decision
    ]
)

QUARANTINE = pa.schema(
    [
        ("run_id", pa.string()),
        ("source", pa.string()),
        ("uri", pa.string()),
        ("doc_id", pa.string()),
        ("chunk_id", pa.string()),
        ("stage", pa.string()),  # discover | parse | quality:documents | quality:chunks | ...
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("content_hash", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)

# -- fine-tuning datasets (kbflow dataset build): the columns of each kind's Parquet files ----

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def embedding_pairs_schema(negatives: int) -> pa.Schema:
    """sentence-transformers (anchor, positive, negative_1..n) plus lineage columns."""
    return pa.schema(
        [
            ("anchor", pa.string()),
            ("positive", pa.string()),
            *[(f"negative_{i}", pa.string()) for i in range(1, negatives + 1)],
            ("query_id", pa.string()),
            ("positive_chunk_id", pa.string()),
            ("doc_id", pa.string()),
            ("source", pa.string()),
            ("generator", pa.string()),  # heading | ict | llm
        ]
    )


RERANKER_PAIRS = pa.schema(
    [
        ("query", pa.string()),
        ("passage", pa.string()),
        ("label", pa.int8()),  # 1: the query's positive, 0: a mined hard negative
        ("query_id", pa.string()),
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
    ]
)

SFT_EXAMPLES = pa.schema(
    [
        ("messages", MESSAGES),  # system / user / assistant (TRL conversational)
        ("prompt", pa.string()),  # TRL prompt-completion
        ("completion", pa.string()),
        ("id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
    ]
)

RAFT_EXAMPLES = pa.schema(
    [
        ("messages", MESSAGES),  # user = numbered context passages + the question
        ("id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("oracle_chunk_id", pa.string()),  # the chunk that answers; null when none was found
        ("distractor_chunk_ids", pa.list_(pa.string())),
        ("has_oracle", pa.bool_()),  # whether the oracle is in the context
    ]
)

DATASET_SCHEMAS = {
    "embedding-pairs": embedding_pairs_schema(3),  # the default datasets.negatives; see embedding_pairs_schema
    "reranker": RERANKER_PAIRS,
    "sft": SFT_EXAMPLES,
    "raft": RAFT_EXAMPLES,
}


def dataset_schema(kind: str, negatives: int = 3) -> pa.Schema:
    """The schema of a dataset kind; embedding-pairs has one column per configured negative."""
    return embedding_pairs_schema(negatives) if kind == "embedding-pairs" else DATASET_SCHEMAS[kind]

# Boilerplate state (kbflow.tasks.index.boilerplate): the line hashes of every current
# document of a source, as of the last publish. The boilerplate set is computed from it.
LINE_HASHES = pa.schema(
    [
        ("source", pa.string()),
        ("doc_id", pa.string()),
        ("content_hash", pa.string()),
        ("line_hashes", pa.list_(pa.string())),  # distinct hashes of the document's normalized lines
    ]
)

# Incremental state of sql sources with a cursor_field (kbflow.tasks.sources.sql_cursor): the cursor
# value up to which the last successful run read each source.
SOURCE_CURSORS = pa.schema(
    [
        ("source", pa.string()),
        ("cursor", pa.string()),  # JSON {"type": "datetime" | "date" | "decimal" | "json", "value": ...}
        ("run_id", pa.string()),  # the run that read up to it
    ]
)
