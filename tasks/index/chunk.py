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
accident, and crowds its page's other chunks out of the top hits. A window of joined
sections sits under their common heading path, never under one section's heading
while it opens with another's text. Every heading path starts with the document's
title ("git-add(1) > OPTIONS", not a bare "OPTIONS"), so a chunk says whose section it is.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow import progress
from kbflow.models import Tokenizer
from kbflow.schemas import CHUNKED
from kbflow.tasks.formats.headings import SEPARATOR, strip_numbering

MAX_HEADING_CHARS = 200
MIN_SECTION_TOKENS = 128  # measured on the PostgreSQL manual and the Python docs: bench/README.md


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_chunk_id(doc_id: str, ordinal: int, text_hash: str) -> str:
    """Same document, position and text: same id, so unchanged chunks keep theirs."""
    return hashlib.sha256(f"{doc_id}\0{ordinal}\0{text_hash}".encode()).hexdigest()[:32]


TOKENIZE_CHARS = 100_000  # a long body is tokenized this much at a time (cut at a line or a space)


class _Offsets:
    """Token offsets of a body, tokenized block by block as the windows move on and forgotten
    behind them, so memory stays bounded whatever the body's size (a 30 MB log held ~6 GB of
    offsets at once). Blocks are cut at whitespace, where the tokenizer splits anyway, so the
    offsets, and so the windows, are those of the whole body tokenized at once."""

    def __init__(self, body: str, tokenizer: Tokenizer, on_block: Callable[[int], None] | None = None) -> None:
        self.body, self.tokenizer, self.on_block = body, tokenizer, on_block
        self.base, self.spans, self.tokenized = 0, [], 0  # spans[0] is token `base`; body[:tokenized] is read

    def _load(self, index: int) -> None:
        while self.base + len(self.spans) <= index and self.tokenized < len(self.body):
            cut = len(self.body)
            if cut - self.tokenized > TOKENIZE_CHARS:
                limit = self.tokenized + TOKENIZE_CHARS
                cut = max(self.body.rfind("\n", self.tokenized, limit), self.body.rfind(" ", limit - 1000, limit))
                cut = cut + 1 if cut > self.tokenized else limit  # one 100,000-character word: cut anyway
            shift = self.tokenized
            self.spans += [(start + shift, end + shift) for start, end in self.tokenizer.offsets(self.body[shift:cut])]
            self.tokenized = cut
            if self.on_block is not None:
                self.on_block(cut)

    def __getitem__(self, index: int) -> tuple[int, int]:
        self._load(index)
        return self.spans[index - self.base]

    def has(self, index: int) -> bool:
        """Whether the body has a token `index`."""
        self._load(index)
        return index < self.base + len(self.spans)

    def forget_before(self, index: int) -> None:
        if index - self.base > TOKENIZE_CHARS // 10:  # now and then, not per window
            del self.spans[: index - self.base]
            self.base = index


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
    return [(text, n_tokens) for _, text, n_tokens in section_windows(body, [(0, heading)], tokenizer, max_tokens, overlap)]


def section_windows(
    body: str, parts: list[tuple[int, str]], tokenizer: Tokenizer, max_tokens: int, overlap: int,
    on_block: Callable[[int], None] | None = None,
) -> Iterator[tuple[str, str, int]]:
    """(heading, chunk text, token count) of each window of a body made of `parts` (start offset, heading path).

    A window's heading is the common path of the parts it holds text of, so a window of
    joined sections never sits under the heading of a section it holds nothing of. Windows
    are made as the body is tokenized (`on_block(characters read)` after each block).
    """
    starts = [start for start, _ in parts]
    # The widest heading a window can get: the common path of several parts is never longer.
    budget = max_tokens - max(tokenizer.count([_prefix(h) for _, h in parts]))
    offsets = _Offsets(body, tokenizer, on_block)
    start = 0
    while offsets.has(start):
        end = start + budget if offsets.has(start + budget - 1) else _last_token(offsets, start) + 1
        if offsets.has(end):
            candidates = range(end, start + max(1, budget // 2), -1)
            end = max(candidates, key=lambda e: (_break_score(body, offsets, e), e), default=end)
        while True:
            first, last = offsets[start][0], offsets[end - 1][1]
            held = parts[max(0, bisect_right(starts, first) - 1) : bisect_left(starts, last)] or parts[-1:]
            heading = common_path([h for _, h in held])[:MAX_HEADING_CHARS]
            text = _prefix(heading) + body[first:last]
            n_tokens = tokenizer.count([text])[0]
            # Re-tokenizing a cut-out window can differ at its edges; shrink until it fits.
            if n_tokens <= max_tokens or end - start <= 1:
                break
            end -= max(1, n_tokens - max_tokens)
        yield heading, text, n_tokens
        if not offsets.has(end):
            break
        start = _next_start(body, offsets, start, end, overlap)
        offsets.forget_before(start - 1)


def _last_token(offsets: _Offsets, start: int) -> int:
    """The index of the body's last token (the body has token `start`)."""
    last = start
    while offsets.has(last + 1):
        last += 1
    return last


def _prefix(heading: str) -> str:
    heading = heading[:MAX_HEADING_CHARS]
    return f"{heading}\n" if heading else ""


def common_path(headings: list[str]) -> str:
    """The heading path all of `headings` sit under: "A > B > C" and "A > B > D" → "A > B"."""
    paths = [heading.split(SEPARATOR) for heading in headings]
    common = []
    for segments in zip(*paths):
        if any(segment != segments[0] for segment in segments):
            break
        common.append(segments[0])
    return SEPARATOR.join(common)


def document_sections(document: dict, tokenizer: Tokenizer, min_tokens: int) -> list[tuple[str, str, list[tuple[int, str]]]]:
    """(heading path, body, parts) of a document's sections, small ones carried into the next (see the module doc).

    A body that joins several sections holds each one's heading line (below their common path)
    and `parts` says where each starts; the heading is their common path.
    """
    text, title = document["text"], (document.get("title") or "").strip()
    sections = document["sections"] or [{"heading": "", "start": 0}]
    ends = [section["start"] for section in sections[1:]] + [len(text)]
    groups: list[list[tuple[str, str]]] = []
    pending: list[tuple[str, str]] = []  # small sections waiting for a section to join
    for section, end in zip(sections, ends):
        heading, body = _rooted(section["heading"], title), text[section["start"] : end].strip()
        if not body:
            continue
        pending.append((heading, body))
        heading, body, _ = _joined(pending)
        if not _has_tokens(tokenizer, f"{heading}\n{body}", min_tokens):
            continue  # too small: part of what follows
        groups.append(pending)
        pending = []
    if pending and groups:
        groups[-1] += pending  # a small last section joins the one before
    elif pending:
        groups.append(pending)  # the whole document is small: one chunk
    return [_joined(group) for group in groups]


def _has_tokens(tokenizer: Tokenizer, text: str, n: int) -> bool:
    """Whether `text` has at least `n` tokens, from its first TOKENIZE_CHARS when that says so:
    a 30 MB body is never tokenized whole just to learn it is not small."""
    if len(text) > TOKENIZE_CHARS and tokenizer.count([text[: text.rfind(" ", 0, TOKENIZE_CHARS) + 1 or TOKENIZE_CHARS]])[0] >= n:
        return True
    return tokenizer.count([text])[0] >= n


def _joined(group: list[tuple[str, str]]) -> tuple[str, str, list[tuple[int, str]]]:
    """One body for consecutive sections: each under its heading line (its path below the common one)."""
    if len(group) == 1:
        return group[0][0], group[0][1], [(0, group[0][0])]
    common = common_path([heading for heading, _ in group])
    # A part starts after its heading line: a window that starts on that line holds it under the
    # common path ("git-restore(1)" + "EXAMPLES\n…"), not as "git-restore(1) > EXAMPLES\nEXAMPLES\n…".
    texts, parts, length = [], [(0, common)], 0
    for heading, body in group:
        below = heading[len(common):].removeprefix(SEPARATOR)
        texts.append(f"{below}\n{body}" if below else body)
        parts.append((length + len(below) + 1 if below else length, heading))
        length += len(texts[-1]) + 2
    return common, "\n\n".join(texts), parts


def _rooted(heading: str, title: str) -> str:
    """A heading path that starts with the document's title ("git-add(1) > OPTIONS"): a bare
    section heading ("OPTIONS", "CONFIGURATION") says nothing of whose section it is."""
    if not title:
        return heading
    if not heading:
        return title
    if any(_same_name(segment, title) for segment in heading.split(SEPARATOR)[:2]):
        return heading  # already under the title ("DROP ROLE > Description", "Backup and Restore > 26.3. …")
    return f"{title}{SEPARATOR}{heading}"


def _same_name(segment: str, title: str) -> bool:
    """"gitweb.conf(5) Manual Page" names the page titled "gitweb.conf(5)"; numbering and case aside."""
    segment, title = (" ".join(strip_numbering(s).casefold().split()) for s in (segment, title))
    shorter, longer = sorted((segment, title), key=len)
    return bool(shorter) and (longer == shorter or longer.startswith(shorter + " "))


def chunk_documents(
    documents: pa.Table, tokenizer: Tokenizer, max_tokens: int, overlap: int, min_section_tokens: int = MIN_SECTION_TOKENS
) -> pa.Table:
    """`CHUNKED` rows for every section of every document, numbered per document.

    A section under `min_section_tokens` (never more than half of `max_tokens`, so
    that sections still start chunks) is carried into the next one.
    """
    rows = []
    min_section_tokens = min(min_section_tokens, max_tokens // 2)
    total = pc.sum(pc.utf8_length(documents.column("text"))).as_py() or 0 if documents.num_rows else 0
    done, every = 0, max(TOKENIZE_CHARS, total // progress.STEPS)
    progress.report("chunk (characters)", 0, total)  # a large document moves the bar, not only a batch

    def read(characters: int) -> None:
        if (done + characters) // every > done // every:
            progress.report("chunk (characters)", min(done + characters, total), total)

    for document in documents.to_pylist():
        ordinal = 0
        for _, body, parts in document_sections(document, tokenizer, min_section_tokens):
            for heading, chunk_text, n_tokens in section_windows(body, parts, tokenizer, max_tokens, overlap, read):
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
            done += len(body)
    progress.report("chunk (characters)", total, total)
    return pa.Table.from_pylist(rows, schema=CHUNKED)


@task(name="chunk", cache_policy=NO_CACHE)
def chunk(
    documents: pa.Table, tokenizer: Tokenizer, max_tokens: int, overlap: int, min_section_tokens: int = MIN_SECTION_TOKENS
) -> pa.Table:
    """Chunk documents to fit the model's max sequence length."""
    return chunk_documents(documents, tokenizer, max_tokens, overlap, min_section_tokens)
