"""Chunk: split parsed documents at their headings, then into token windows.

Sizes are counted with the embedding model's own tokenizer, special tokens
included, so no chunk is ever silently truncated by the model. A chunk's text
starts with its heading path, so both the vector and full-text search see the
context a passage sits in. A window prefers to end at a paragraph, line or
sentence boundary in its last half; consecutive windows overlap.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.models import Tokenizer
from kbflow.schemas import CHUNKED

MAX_HEADING_CHARS = 200


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_chunk_id(doc_id: str, ordinal: int, text_hash: str) -> str:
    """Same document, position and text: same id, so unchanged chunks keep theirs."""
    return hashlib.sha256(f"{doc_id}\0{ordinal}\0{text_hash}".encode()).hexdigest()[:32]


def _break_score(body: str, offsets: list[tuple[int, int]], end: int) -> int:
    """How good a place to end a window just before token `end` is (higher is better)."""
    gap = body[offsets[end - 1][1] : offsets[end][0]]
    if "\n\n" in gap:
        return 3
    if "\n" in gap:
        return 2
    if body[offsets[end - 1][1] - 1 : offsets[end - 1][1]] in {".", "!", "?", ";", ":"}:
        return 1
    return 0


def split_section(body: str, heading: str, tokenizer: Tokenizer, max_tokens: int, overlap: int) -> list[tuple[str, int]]:
    """Chunk texts (heading line + window) and their token counts for one section."""
    heading = heading[:MAX_HEADING_CHARS]
    prefix = f"{heading}\n" if heading else ""
    budget = max_tokens - tokenizer.count([prefix])[0]  # what the body may use after specials + heading
    offsets = tokenizer.offsets(body)
    chunks: list[tuple[str, int]] = []
    start = 0
    while start < len(offsets):
        end = min(start + budget, len(offsets))
        if end < len(offsets):
            candidates = range(end, start + max(1, budget // 2), -1)
            end = max(candidates, key=lambda e: (_break_score(body, offsets, e), e), default=end)
        while True:
            text = prefix + body[offsets[start][0] : offsets[end - 1][1]]
            n_tokens = tokenizer.count([text])[0]
            # Re-tokenizing a cut-out window can differ at its edges; shrink until it fits.
            if n_tokens <= max_tokens or end - start <= 1:
                break
            end -= max(1, n_tokens - max_tokens)
        chunks.append((text, n_tokens))
        if end >= len(offsets):
            break
        start = max(end - overlap, start + 1)
    return chunks


def chunk_documents(documents: pa.Table, tokenizer: Tokenizer, max_tokens: int, overlap: int) -> pa.Table:
    """`CHUNKED` rows for every section of every document, numbered per document."""
    rows = []
    for document in documents.to_pylist():
        text, sections = document["text"], document["sections"] or [{"heading": "", "start": 0}]
        ends = [section["start"] for section in sections[1:]] + [len(text)]
        ordinal = 0
        for section, end in zip(sections, ends):
            body = text[section["start"] : end].strip()
            if not body:
                continue
            for chunk_text, n_tokens in split_section(body, section["heading"], tokenizer, max_tokens, overlap):
                text_hash = sha256_text(chunk_text)
                rows.append(
                    {
                        "chunk_id": make_chunk_id(document["doc_id"], ordinal, text_hash),
                        **{name: document[name] for name in ("doc_id", "source", "uri", "tenant", "metadata")},
                        "ordinal": ordinal,
                        "heading": section["heading"],
                        "text": chunk_text,
                        "text_hash": text_hash,
                        "n_tokens": n_tokens,
                    }
                )
                ordinal += 1
    return pa.Table.from_pylist(rows, schema=CHUNKED)


@task(name="chunk", cache_policy=NO_CACHE)
def chunk(documents: pa.Table, tokenizer: Tokenizer, max_tokens: int, overlap: int) -> pa.Table:
    """Chunk documents to fit the model's max sequence length."""
    return chunk_documents(documents, tokenizer, max_tokens, overlap)
