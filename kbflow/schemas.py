"""Arrow schemas of everything kbflow passes between stages and stores.

Stage data (`DISCOVERED`, `PARSED`, `CHUNKED`) flows between tasks; the
`documents`, `chunks`, `runs` and `quarantine` schemas are the LanceDB tables
of DESIGN.md, whose names and columns are part of the contract.
"""

from __future__ import annotations

import pyarrow as pa

# What discovery saw at a source, before anything is parsed.
DISCOVERED = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("tenant", pa.string()),
        ("uri", pa.string()),  # path relative to the source root; "<file>#<id>" for records
        ("path", pa.string()),  # absolute local path of the file that holds it
        ("format", pa.string()),  # file suffix without the dot: md, pdf, jsonl ...
        ("content_hash", pa.string()),  # sha256 of the bytes (of the record, for records)
        ("size", pa.int64()),
        ("mtime", pa.float64()),
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
    ]
)


def chunks_schema(dim: int) -> pa.Schema:
    """The `chunks` table: chunked rows plus their vector, model and writing run."""
    return CHUNKED.append(pa.field("vector", pa.list_(pa.float32(), dim))).append(
        pa.field("model", pa.string())
    ).append(pa.field("run_id", pa.string()))


# The manifest: one row per document kbflow knows, with the hash it last saw.
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
    ]
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("flow", pa.string()),
        ("source", pa.string()),  # null: all sources
        ("status", pa.string()),  # published | no_change | blocked | failed
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("duration_s", pa.float64()),
        ("stage_durations", pa.string()),  # JSON {stage: seconds}
        ("documents", pa.string()),  # JSON {new, changed, unchanged, deleted, quarantined}
        ("chunks", pa.string()),  # JSON {embedded, reused, deleted, total}
        ("dq_success", pa.bool_()),
        ("dq_failures", pa.string()),  # JSON list of failed blocking expectations
        ("quality_results", pa.string()),  # path of the run's quality summary (kbflow quality)
        ("error", pa.string()),
        ("chunks_version", pa.int64()),
        ("documents_version", pa.int64()),
        ("model", pa.string()),
        ("kbflow_version", pa.string()),
        ("prefect_flow_run_id", pa.string()),
        ("parent_run_id", pa.string()),  # rollback: the run whose published state was restored
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
