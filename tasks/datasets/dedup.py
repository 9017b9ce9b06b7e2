"""Dedup: exact and near-duplicate rows, within a dataset and across its splits.

Texts are compared after `normalize_text` (NFKC, lowercase, punctuation removed,
whitespace collapsed). Exact duplicates share the hash of that text. Near
duplicates are found with MinHash (128 permutations, word 3-shingles; texts of
fewer than three words use their words) and MinHashLSH from datasketch. The LSH
bands are tuned to catch ≥ 99 % of pairs AT the threshold; every candidate pair
is then confirmed with the exact Jaccard similarity of the two shingle sets, so
the result does not depend on MinHash estimation noise. With the same seed the
result is the same on every run; the first occurrence of a text is the one kept.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
SHINGLE_WORDS = 3
LSH_RECALL_AT_THRESHOLD = 0.99
SPLIT_ORDER = ("train", "validation", "test")

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: the text duplicates are judged on.

    >>> normalize_text("  Reset  the PASSWORD, then log in!")
    'reset the password then log in'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    # Punctuation becomes a space, so "end.Start" stays two words; symbols and letters stay.
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _SPACE.sub(" ", text).strip()


def word_runs(normalized: str, length: int) -> set[str]:
    """The distinct runs of `length` consecutive words of a normalized text (none when it is shorter)."""
    words = normalized.split(" ") if normalized else []
    return {" ".join(words[i : i + length]) for i in range(len(words) - length + 1)}


def _shingles(normalized: str) -> set[str]:
    words = normalized.split(" ") if normalized else []
    return set(words) if len(words) < SHINGLE_WORDS else word_runs(normalized, SHINGLE_WORDS)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with the most rows per band that still finds a pair at `threshold` 99 % of the time.

    datasketch's own choice balances misses against false candidates, and misses
    about half the pairs sitting right at the threshold; false candidates cost
    only an exact Jaccard check here, so recall comes first.
    """
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= LSH_RECALL_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


class _NearIndex:
    """The texts kept so far, searchable for near duplicates of a new text."""

    def __init__(self, threshold: float, seed: int) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold, self.seed = threshold, seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, params=_lsh_params(threshold, NUM_PERM))
        self.shingles: dict[int, set[str]] = {}

    def minhash(self, shingles: set[str]) -> MinHash:
        minhash = MinHash(num_perm=NUM_PERM, seed=self.seed)
        minhash.update_batch([s.encode("utf-8") for s in sorted(shingles)])
        return minhash

    def find(self, shingles: set[str], minhash: MinHash) -> bool:
        """Whether a kept text is at least `threshold` similar (exact Jaccard of shingles)."""
        return any(_jaccard(shingles, self.shingles[key]) >= self.threshold for key in self.lsh.query(minhash))

    def add(self, key: int, shingles: set[str], minhash: MinHash) -> None:
        self.lsh.insert(key, minhash)
        self.shingles[key] = shingles


def _text_hash(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _column_texts(table: pa.Table, column: str) -> list[str]:
    """The column as one text per row: strings as they are, `messages` as their contents joined."""
    values = table.column(column).to_pylist()
    if pa.types.is_list(table.schema.field(column).type) or pa.types.is_large_list(table.schema.field(column).type):
        return ["\n".join(m.get("content") or "" for m in (v or []) if m) for v in values]
    return [v or "" for v in values]


def duplicate_mask(texts: Iterable[str], threshold: float, seed: int) -> tuple[list[bool], dict[str, int]]:
    """Per text, whether it repeats an earlier one (exactly or nearly); counts {"exact", "near"}."""
    seen: set[str] = set()
    near = _NearIndex(threshold, seed)
    mask: list[bool] = []
    counts = {"exact": 0, "near": 0}
    for key, text in enumerate(texts):
        normalized = normalize_text(text)
        digest = _text_hash(normalized)
        if digest in seen:
            counts["exact"] += 1
            mask.append(True)
            continue
        seen.add(digest)
        shingles = _shingles(normalized)
        if not shingles:  # empty text: only exact duplicates
            mask.append(False)
            continue
        minhash = near.minhash(shingles)
        if near.find(shingles, minhash):
            counts["near"] += 1
            mask.append(True)
            continue
        near.add(key, shingles, minhash)
        mask.append(False)
    return mask, counts


def drop_duplicates(table: pa.Table, column: str, threshold: float, seed: int) -> tuple[pa.Table, dict[str, int]]:
    """The table without rows whose `column` repeats an earlier row's, exactly or nearly.

    The first occurrence is kept. Returns the table and {"exact": n, "near": n} dropped.
    `column` is a string column or a `messages` column (its contents joined).
    """
    mask, counts = duplicate_mask(_column_texts(table, column), threshold, seed)
    return table.filter(pc.invert(pa.array(mask, type=pa.bool_()))), counts


def _group_order(groups: Sequence[str]) -> list[str]:
    known = [g for g in SPLIT_ORDER if g in set(groups)]
    return known + [g for g in dict.fromkeys(groups) if g not in SPLIT_ORDER]


def cross_group_near_duplicates(texts: Sequence[str], groups: Sequence[str], threshold: float, seed: int) -> list[bool]:
    """True for a row whose text (near-)duplicates a row of an EARLIER group.

    Groups are taken in the order train, validation, test (any other group after
    those, in order of appearance). Duplicates inside one group are not marked:
    that is `drop_duplicates`' job. A marked row is meant to be dropped, so it is
    not itself a reference for later groups.
    """
    if len(texts) != len(groups):
        raise ValueError(f"{len(texts)} texts but {len(groups)} groups")
    near = _NearIndex(threshold, seed)
    seen: set[str] = set()
    marked = [False] * len(texts)
    for group in _group_order(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        prepared = []
        for i in rows:
            normalized = normalize_text(texts[i] or "")
            shingles = _shingles(normalized)
            minhash = near.minhash(shingles) if shingles else None
            digest = _text_hash(normalized)
            marked[i] = digest in seen or (minhash is not None and near.find(shingles, minhash))
            prepared.append((i, digest, shingles, minhash))
        # Only after the whole group was checked: rows of one group never mark each other.
        for i, digest, shingles, minhash in prepared:
            if not marked[i]:
                seen.add(digest)
                if minhash is not None:
                    near.add(i, shingles, minhash)
    return marked
