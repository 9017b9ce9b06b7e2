"""What a hard negative must not be: the anchor itself, another answer, or navigation.

The miner (tasks/datasets/snapshot.py) skips such candidates before it chooses a pair's negatives
and counts them; the dataset suites re-check the final rows with the same functions
(tasks/datasets/checks.py), so a row that slips through (e.g. two texts that became equal
when PII redaction replaced what told them apart) blocks the build.

- **copy of the positive**: the candidate shares at least `COPIED_RUNS` distinct runs of
  `COPIED_RUN_WORDS` words with the positive (the same option text copied across man pages,
  a page included in another). Training would push the model away from the positive's own text.
  Compared exactly, pair by pair: the sets are small, and MinHash would only estimate them.
- **anchor in negative**: the anchor's normalized text is contained in the candidate, or
  at least `ANCHOR_PAIR_SHARE` of its word pairs are (a near-verbatim copy).
  Training would push the model away from a passage that literally holds the query.
- **answer in negative**: the candidate holds most of the anchor's rare terms (at least
  `ANSWER_MIN_COVERAGE` of the anchor's IDF weight, the index's own term statistics) and
  matches the anchor (BM25) at least `datasets.answer_overlap_ratio` times as well as the
  positive does. A dense margin (`negative_margin`) alone misses these: a passage that
  repeats the question's rare terms usually answers it too (a false negative). The
  coverage floor keeps the rule from firing when the positive itself shares few words
  with the anchor (an inverse-cloze positive, its sentence taken out): BM25 relative to
  such a positive alone would throw away most good hard negatives.
- **navigation**: `is_navigation_only` (tasks/quality/content.py).

Reasons are checked in this order: navigation, anchor, copy of the positive, answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from kbflow.tasks.quality.content import is_navigation_only
from kbflow.tasks.datasets.dedup import normalize_text, word_runs

# Share of the anchor's word pairs found in a text: a near-verbatim copy. Pairs, not dedup's
# 3-shingles: one changed word of an 11-word sentence keeps 7 of its 9 distinct pairs but only 6 of 9 triples.
ANCHOR_PAIR_SHARE = 0.75
ANSWER_MIN_COVERAGE = 0.6  # share of the anchor's IDF weight a negative must hold to be taken for an answer
BM25_K1, BM25_B = 1.2, 0.75  # the usual Okapi BM25 parameters (as Lucene's and Lance's defaults)
TERM = re.compile(r"\w+")
# A 10-word run in two texts is copied, not shared phrasing; three of them (one 12-word passage, or three
# separate runs) are a copy of a paragraph or an option's description, not a coincidence.
COPIED_RUN_WORDS, COPIED_RUNS = 10, 3
NEGATIVE_PROBLEMS = ("negative_navigation", "negative_with_anchor", "negative_copies_positive",
                     "negative_with_answer")  # negative_problem's reasons


def contains_anchor(anchor: str, text: str) -> bool:
    """Whether `text` holds the anchor verbatim or nearly (normalized containment, or shared word pairs).

    >>> contains_anchor("The server listens on port 8420.", "Setup. The server listens on PORT 8420! Done.")
    True
    >>> contains_anchor("The server listens on port 8420.", "Clients connect to port 8420 of the server.")
    False
    """
    query, passage = normalize_text(anchor), normalize_text(text)
    if not query:
        return False
    if f" {query} " in f" {passage} ":
        return True
    wanted = _word_pairs(query)
    return len(wanted & _word_pairs(passage)) / len(wanted) >= ANCHOR_PAIR_SHARE


def _word_pairs(normalized: str) -> set[str]:
    return word_runs(normalized, 2) or set(normalized.split(" "))


def copies_positive(positive: str, text: str) -> bool:
    """Whether `text` holds passages copied from the positive (`COPIED_RUNS` shared `COPIED_RUN_WORDS`-word runs).

    >>> shared = "the option names a file that holds the list of objects to pack and send"
    >>> copies_positive(f"Packing. {shared}.", f"In git-repack: {shared}!")
    True
    >>> copies_positive(f"Packing. {shared}.", "The option names a file, and the list of refs to send.")
    False
    """
    copied = word_runs(normalize_text(positive), COPIED_RUN_WORDS) & word_runs(normalize_text(text), COPIED_RUN_WORDS)
    return len(copied) >= COPIED_RUNS


def terms(text: str) -> list[str]:
    return TERM.findall(text.lower())


class LexicalScorer:
    """BM25 scores of a query against texts, with term statistics from a corpus (the index's chunks)."""

    def __init__(self, corpus: Iterable[str]) -> None:
        frequencies: Counter[str] = Counter()
        documents, length = 0, 0
        for text in corpus:
            words = terms(text)
            frequencies.update(set(words))
            documents, length = documents + 1, length + len(words)
        self.documents, self.frequencies = documents, frequencies
        self.average_length = length / documents if documents else 1.0

    def idf(self, term: str) -> float:
        df = self.frequencies.get(term, 0)
        return math.log(1 + (self.documents - df + 0.5) / (df + 0.5))

    def score(self, query: str, text: str) -> float:
        """Okapi BM25 of `query` against `text`."""
        words = terms(text)
        counts, length = Counter(words), len(words)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / (self.average_length or 1.0))
        return sum(self.idf(term) * counts[term] * (BM25_K1 + 1) / (counts[term] + norm)
                   for term in set(terms(query)) if counts[term])

    def coverage(self, query: str, text: str) -> float:
        """The share of the query's IDF weight (its distinct terms) that `text` holds."""
        wanted, present = set(terms(query)), set(terms(text))
        total = sum(self.idf(term) for term in wanted)
        return sum(self.idf(term) for term in wanted & present) / total if total else 0.0

    def ratio(self, query: str, negative: str, positive: str) -> float:
        """How well `negative` matches `query` relative to `positive` (BM25 / BM25; inf when the positive
        matches nothing and the negative does, 0 when neither does)."""
        against = self.score(query, negative)
        mine = self.score(query, positive)
        return against / mine if mine else (math.inf if against else 0.0)


def negative_problem(anchor: str, positive: str, candidate: str, scorer: LexicalScorer, max_ratio: float) -> str | None:
    """Why `candidate` cannot be a negative of (anchor, positive), or None when it can.

    Reasons, first that applies: `negative_navigation`, `negative_with_anchor`, `negative_copies_positive`,
    `negative_with_answer`.
    """
    if is_navigation_only(candidate):
        return "negative_navigation"
    if contains_anchor(anchor, candidate):
        return "negative_with_anchor"
    if copies_positive(positive, candidate):
        return "negative_copies_positive"
    if holds_answer(anchor, positive, candidate, scorer, max_ratio):
        return "negative_with_answer"
    return None


def holds_answer(anchor: str, positive: str, negative: str, scorer: LexicalScorer, max_ratio: float) -> bool:
    """Whether `negative` is likely another answer: it holds most of the anchor's rare terms and
    matches the anchor (BM25) at least `max_ratio` times as well as the positive."""
    return (scorer.coverage(anchor, negative) >= ANSWER_MIN_COVERAGE
            and scorer.ratio(anchor, negative, positive) >= max_ratio)
