"""Chunk: split parsed documents at their headings, then into token windows.

Sizes are counted with the embedding model's own tokenizer, special tokens
included, so no chunk is ever silently truncated by the model. A chunk's text
starts with its heading path, so both the vector and full-text search see the
context a passage sits in. A window prefers to end at a paragraph, line or
sentence boundary in its last half; consecutive windows overlap, and the next
window starts at a word (a sentence or line where the overlap has one), never
inside a word.

A section too small to stand alone (under `min_section_tokens`, at most half a chunk:
a "Synopsis" line, a one-line "See Also", a short option) is carried into the next
section's chunk, heading line and all, and a small last section joins the chunk
before it: a small chunk says too little to be found, matches too many queries by
accident, and crowds its page's other chunks out of the top hits. A section whose heading only
gives structure ("Description", "Examples") is placed under the document's title, so
its chunks say whose description they are.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.models import Tokenizer
from kbflow.schemas import CHUNKED
from kbflow.tasks.formats.headings import REFERENCE_SECTIONS, SEPARATOR, STRUCTURAL, strip_numbering

MAX_HEADING_CHARS = 200
MIN_SECTION_TOKENS = 128  # measured on the PostgreSQL manual and the Python docs: bench/README.md


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


def _start_score(body: str, offsets: list[tuple[int, int]], start: int) -> int:
    """How good a place to start a window at token `start` (> 0) is; -1 inside a word."""
    if offsets[start - 1][1] == offsets[start][0]:
        return -1  # a word piece ("##es"): the window would start mid-word
    return _break_score(body, offsets, start)


def _next_start(body: str, offsets: list[tuple[int, int]], start: int, end: int, overlap: int) -> int:
    """Where the window after [start, end) begins: at the best boundary within the overlap, earliest first;
    at `end` (no overlap) when the overlap is one word broken into pieces."""
    candidates = range(max(end - overlap, start + 1), end)
    best = max(candidates, key=lambda s: (_start_score(body, offsets, s), -s), default=end)
    return best if _start_score(body, offsets, best) >= 0 else end


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
        start = _next_start(body, offsets, start, end, overlap)
    return chunks


def document_sections(document: dict, tokenizer: Tokenizer, min_tokens: int) -> list[tuple[str, str]]:
    """(heading path, body) of a document's sections, small ones carried into the next (see the module doc)."""
    text, title = document["text"], (document.get("title") or "").strip()
    sections = document["sections"] or [{"heading": "", "start": 0}]
    ends = [section["start"] for section in sections[1:]] + [len(text)]
    merged: list[tuple[str, str]] = []
    carried: list[tuple[str, str]] = []  # small sections waiting for a section to join
    for section, end in zip(sections, ends):
        heading, body = _rooted(section["heading"], title), text[section["start"] : end].strip()
        if not body:
            continue
        body = "\n\n".join([*(_with_heading(h, b) for h, b in carried), body])
        if tokenizer.count([f"{heading}\n{body}"])[0] < min_tokens:
            carried = [(heading, body)]  # too small: part of what follows
            continue
        merged.append((heading, body))
        carried = []
    if carried and merged:
        heading, body = merged[-1]
        merged[-1] = (heading, f"{body}\n\n{_with_heading(*carried[0])}")
    elif carried:
        merged.append(carried[0])  # the whole document is small: one chunk
    return merged


def _with_heading(heading: str, body: str) -> str:
    """A carried section's text: its own heading line (the last part of its path), then its body."""
    last = heading.rsplit(SEPARATOR, 1)[-1]
    return f"{last}\n{body}" if last else body


def _rooted(heading: str, title: str) -> str:
    """A heading path that only gives structure ("See Also") placed under the document's title."""
    top = strip_numbering(heading.split(SEPARATOR)[0]).rstrip(":").lower()
    if title and heading and not heading.startswith(title) and (top in STRUCTURAL or top in REFERENCE_SECTIONS):
        return f"{title}{SEPARATOR}{heading}"
    return heading



def chunk_documents(
    documents: pa.Table, tokenizer: Tokenizer, max_tokens: int, overlap: int, min_section_tokens: int = MIN_SECTION_TOKENS
) -> pa.Table:
    """`CHUNKED` rows for every section of every document, numbered per document.

    A section under `min_section_tokens` (never more than half of `max_tokens`, so
    that sections still start chunks) is carried into the next one.
    """
    rows = []
    min_section_tokens = min(min_section_tokens, max_tokens // 2)
    for document in documents.to_pylist():
        ordinal = 0
        for heading, body in document_sections(document, tokenizer, min_section_tokens):
            for chunk_text, n_tokens in split_section(body, heading, tokenizer, max_tokens, overlap):
                text_hash = sha256_text(chunk_text)
                rows.append(
                    {
                        "chunk_id": make_chunk_id(document["doc_id"], ordinal, text_hash),
                        **{name: document[name] for name in ("doc_id", "source", "uri", "tenant", "metadata", "acl")},
                        "ordinal": ordinal,
                        "heading": heading,
                        "text": chunk_text,
                        "text_hash": text_hash,
                        "n_tokens": n_tokens,
                    }
                )
                ordinal += 1
    return pa.Table.from_pylist(rows, schema=CHUNKED)


@task(name="chunk", cache_policy=NO_CACHE)
def chunk(
    documents: pa.Table, tokenizer: Tokenizer, max_tokens: int, overlap: int, min_section_tokens: int = MIN_SECTION_TOKENS
) -> pa.Table:
    """Chunk documents to fit the model's max sequence length."""
    return chunk_documents(documents, tokenizer, max_tokens, overlap, min_section_tokens)
