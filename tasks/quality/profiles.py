"""Profiles: the columns each quality suite checks, derived from a stage's table.

One row per document (`documents`), chunk (`chunks`, `embeddings`) or source (`run`);
`PROFILE_COLUMNS` lists each profile's columns, so a suite that names another column
is refused when it is loaded (kbflow.tasks.quality.suites.load_suite). The content measures
themselves are kbflow.tasks.quality.content's.
"""

from __future__ import annotations

import hashlib
import re
from array import array

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from kbflow.tasks.quality import content
from kbflow.tasks.sources.discover import ChangeSet

from kbflow.models import Tokenizer
from kbflow.quarantine import Quarantined

PLAIN_TEXT_FORMATS = {"txt", "md", "markdown", "rst"}  # where text/bytes means something
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _language(text: str) -> str:
    import py3langid

    return py3langid.classify(text[:2000])[0]


def documents_profile(documents: pa.Table, check_language: bool = False) -> pd.DataFrame:
    """One row per document: shape (size, encoding) and Gopher's repetition measures."""
    texts = documents.column("text").to_pylist()
    formats = documents.column("format").to_pylist()
    sizes = documents.column("size").to_pylist()
    n_chars = [len(text.strip()) for text in texts]
    profile = pd.DataFrame(
        {
            "doc_id": documents.column("doc_id").to_pylist(),
            "source": documents.column("source").to_pylist(),
            "uri": documents.column("uri").to_pylist(),
            "n_chars": n_chars,
            "text_to_bytes": [
                n / size if fmt in PLAIN_TEXT_FORMATS and size else None
                for n, fmt, size in zip(n_chars, formats, sizes)
            ],
            "control_char_ratio": [len(CONTROL_CHARS.findall(text)) / max(1, len(text)) for text in texts],
            "replacement_char_ratio": [text.count("\ufffd") / max(1, len(text)) for text in texts],
            "language": [_language(text) if check_language and text.strip() else None for text in texts],
        }
    )
    repetition = pd.DataFrame([content.repetition(text) for text in texts], columns=content.REPETITION_COLUMNS)
    return pd.concat([profile, repetition.astype("float64")], axis=1)


def chunks_profile(chunks: pa.Table, tokenizer: Tokenizer | None = None) -> pd.DataFrame:
    """One row per chunk: ids and lineage, and what its text says (tokens, letters, words, navigation).

    `unknown_token_share` needs the model's tokenizer; it is null without one.
    """
    columns = ("chunk_id", "doc_id", "source", "uri", "tenant", "n_tokens", "text_hash")
    profile = pd.DataFrame({name: chunks.column(name).to_pylist() for name in columns})
    texts = chunks.column("text").to_pylist()
    bodies = [content.chunk_body(text, heading) for text, heading in zip(texts, chunks.column("heading").to_pylist())]
    n_tokens = profile["n_tokens"].tolist()
    profile["chars_per_token"] = [round(len(text) / max(1, n), 2) for text, n in zip(texts, n_tokens)]
    unknown = tokenizer.unknown(texts) if tokenizer is not None else None
    profile["unknown_token_share"] = (
        [round(u / max(1, n), 4) for u, n in zip(unknown, n_tokens)] if unknown is not None else None
    )
    profile["alpha_char_share"] = [content.alpha_char_share(body) for body in bodies]
    profile["informative_words"] = [content.informative_words(body) for body in bodies]
    profile["navigation_share"] = [content.navigation_share(body) for body in bodies]
    profile["link_line_share"] = [content.link_line_share(body) for body in bodies]
    return profile.astype({c: "float64" for c in ("unknown_token_share", "alpha_char_share",
                                                   "navigation_share", "link_line_share")})


def embeddings_profile(chunks: pa.Table) -> pd.DataFrame:
    vectors = chunks.column("vector")
    dim = vectors.type.list_size
    matrix = np.asarray(pc.list_flatten(vectors).to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, dim)
    finite = np.isfinite(matrix).all(axis=1)
    norms = np.where(finite, np.linalg.norm(np.nan_to_num(matrix), axis=1), np.nan)
    return pd.DataFrame(
        {
            "chunk_id": chunks.column("chunk_id").to_pylist(),
            "uri": chunks.column("uri").to_pylist(),
            "dim": dim,
            "is_finite": finite,
            "norm": norms,
        }
    )


def run_profile(
    documents: pa.Table, changes: ChangeSet, quarantined: list[Quarantined], chunks: ChunkTally | None = None
) -> pd.DataFrame:
    """One row per source: its documents before and after the run, what it loses, how distinct its new chunks are.

    `documents` (its table's rows) is the state the last successful run left. Shares count like with
    like: `quarantined_share` is the source's items set aside as a whole (files,
    records; a quarantined chunk is not a document) over the items it has this run
    (its current documents plus those set aside before they were parsed), so one
    broken file in a small incremental run is not "most of the source".
    `chunks` tallies every chunk the run staged: `unique_chunk_ratio` is computed over
    the whole run, whatever its batches.
    """
    active = documents.filter(pc.field("status") == "active").column("source").to_pylist()
    new = changes.to_parse.filter(pc.field("change") == "new").column("source").to_pylist()
    deleted = changes.deleted.column("source").to_pylist()
    items_set_aside = [q for q in quarantined if q.chunk_id is None]  # whole documents or records
    unparsed = [q.source for q in items_set_aside if q.stage == "discover"]  # never reached the parser
    distinct = chunks.counts() if chunks is not None else {}
    rows = []
    sources = set(documents.column("source").to_pylist()) | set(changes.to_parse.column("source").to_pylist())
    for source in sorted(sources | set(unparsed) | set(distinct)):
        before = active.count(source)
        current = before + new.count(source) - deleted.count(source)
        items = current + unparsed.count(source)
        n_chunks, n_distinct = distinct.get(source, (0, 0))
        rows.append(
            {
                "source": source,
                "previous_documents": before,
                "current_documents": current,
                "deleted_share": deleted.count(source) / before if before else None,
                "quarantined_share": sum(q.source == source for q in items_set_aside) / items if items > 0 else None,
                "document_count_ratio": current / before if before else None,
                "unique_chunk_ratio": n_distinct / n_chunks if n_chunks else None,
            }
        )
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS["run"])


class ChunkTally:
    """The run's chunk bodies per source, for `unique_chunk_ratio` over the whole run.

    A body is a chunk's text under its heading line: every heading path starts with its
    document's title, so the same text on two pages is two chunk texts but one body.
    Keeps 8 bytes per chunk (a 64-bit digest of its body), not the texts, so a large run
    stays within its memory bound; two different bodies sharing 64 bits is negligible at
    any corpus size kbflow handles.
    """

    def __init__(self) -> None:
        self._hashes: dict[str, array] = {}

    def add(self, chunks: pa.Table) -> None:
        """Count a batch's chunks (a table with `source`, `heading` and `text`)."""
        columns = (chunks.column(name).to_pylist() for name in ("source", "heading", "text"))
        for source, heading, text in zip(*columns):
            digest = hashlib.blake2b(content.chunk_body(text, heading).encode(), digest_size=8).digest()
            self._hashes.setdefault(source, array("Q")).append(int.from_bytes(digest, "little"))

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per source: (chunks, distinct chunk texts)."""
        return {source: (len(h), len(np.unique(np.frombuffer(h, np.uint64)))) for source, h in self._hashes.items()}


# The columns each stage's profile has: a suite may name only these (checked when it is loaded).
PROFILE_COLUMNS: dict[str, tuple[str, ...]] = {
    "documents": ("doc_id", "source", "uri", "n_chars", "text_to_bytes", "control_char_ratio",
                  "replacement_char_ratio", "language", *content.REPETITION_COLUMNS),
    "chunks": ("chunk_id", "doc_id", "source", "uri", "tenant", "n_tokens", "text_hash", "chars_per_token",
               "unknown_token_share", "alpha_char_share", "informative_words", "navigation_share", "link_line_share"),
    "embeddings": ("chunk_id", "uri", "dim", "is_finite", "norm"),
    "run": ("source", "previous_documents", "current_documents", "deleted_share", "quarantined_share",
            "document_count_ratio", "unique_chunk_ratio"),
}
