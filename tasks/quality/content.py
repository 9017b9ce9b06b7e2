"""Content statistics: the numbers the quality suites read to judge what a text says, not its shape.

The rules come from the web-scale pretraining filters the field trusts, reimplemented
small (not vendored): Gopher's repetition rules (Rae et al. 2021, table A1: duplicated
lines, top 2/3/4-gram and duplicated 5..10-gram character fractions), Gopher/C4/FineWeb
style per-text measures (share of alphabetic characters, stop-word-free informative
words, short link-like lines), plus what only a model's tokenizer can tell
(characters per token, share of unknown tokens). Thresholds are `[quality]` keys;
kbflow's defaults were tuned on technical manuals (bench/quality_bench.py), not web pages.

Every function here is pure: a text (or a chunk's body) in, a number out; `None`
where a measure does not apply (GX ignores nulls in `..._to_be_between`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

# A "word" as Gopher counts them: a run of non-space characters with surrounding punctuation removed.
_WORD = re.compile(r"\S+")
_EDGE_PUNCT = "\"'()[]{}<>.,;:!?`*_~"
_ALPHA_WORD = re.compile(r"[^\W\d_]{2,}")  # two or more letters: an alphabetic word

# Gopher's repetition rules need enough text to mean anything (datatrove's quality filter
# drops documents under 50 words before they are reached).
MIN_REPETITION_WORDS = 50
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
MIN_LINK_LIST_LINES = 3  # fewer lines say nothing about a list
# Repetition is judged on a document's first million characters: its n-gram tables grow with
# the text (a 30 MB log's took gigabytes), and a share measured on 1 MB reads the same.
REPETITION_MAX_CHARS = 1_000_000

# Site chrome words: a body made only of these is navigation, not content.
NAVIGATION_WORDS = frozenset(
    "prev previous next up home top back contents index search toc menu skip to content main "
    "navigation go edit this page on github table of chapter part section appendix breadcrumb".split()
)
PAGER_WORDS = frozenset({"prev", "previous", "next", "up", "home"})
_NAVIGATION_ONLY = frozenset("prev previous next up home top back contents index search toc menu skip".split())

# English function words (a short list: enough to tell "the of and to" from content words).
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves may must shall might one see use used using""".split()
)


def words(text: str) -> list[str]:
    """Gopher-style words: whitespace-separated, edge punctuation stripped, empty ones dropped."""
    return [w for w in (m.group().strip(_EDGE_PUNCT) for m in _WORD.finditer(text)) if w]


def body_lines(text: str) -> list[str]:
    """The non-blank lines of a text, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


# -- repetition (per document) ------------------------------------------------------------------


def duplicate_line_fractions(text: str) -> tuple[float, float] | None:
    """(share of lines that repeat an earlier line, share of characters in those lines)."""
    lines = body_lines(text)
    if not lines:
        return None
    seen: set[str] = set()
    dup_lines = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        seen.add(line)
    return dup_lines / len(lines), dup_chars / max(1, sum(len(line) for line in lines))


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def top_ngram_char_fraction(tokens: Sequence[str], n: int) -> float:
    """Characters covered by the most frequent n-gram's occurrences / all word characters (Gopher)."""
    total = sum(len(t) for t in tokens)
    counts = Counter(_ngrams(tokens, n))
    if not counts or not total:
        return 0.0
    top, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    return min(1.0, sum(len(t) for t in top) * count / total)


def duplicate_ngram_char_fraction(tokens: Sequence[str], n: int) -> float:
    """Characters of words inside any n-gram seen earlier in the text / all word characters (Gopher)."""
    total = sum(len(t) for t in tokens)
    if len(tokens) < n or not total:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(tokens)
    i = 0
    while i <= len(tokens) - n:
        gram = tuple(tokens[i : i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
            i += n  # count a repeated span once, not once per overlapping start
        else:
            seen.add(gram)
            i += 1
    return sum(len(t) for t, c in zip(tokens, covered) if c) / total


REPETITION_COLUMNS = (
    "dup_line_frac",
    "dup_line_char_frac",
    *(f"top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES),
    *(f"dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES),
)


def repetition(text: str) -> dict[str, float | None]:
    """Gopher's repetition measures of a document (`REPETITION_COLUMNS`); None for texts too short to judge.

    A document longer than `REPETITION_MAX_CHARS` is judged on its first lines up to that size.
    """
    if len(text) > REPETITION_MAX_CHARS:
        text = text[: text.rfind("\n", 0, REPETITION_MAX_CHARS) + 1 or REPETITION_MAX_CHARS]
    tokens = [w.lower() for w in words(text)]
    if len(tokens) < MIN_REPETITION_WORDS:
        return dict.fromkeys(REPETITION_COLUMNS)
    lines = duplicate_line_fractions(text) or (0.0, 0.0)
    values = [*lines]
    values += [top_ngram_char_fraction(tokens, n) for n in TOP_NGRAM_SIZES]
    values += [duplicate_ngram_char_fraction(tokens, n) for n in DUP_NGRAM_SIZES]
    return dict(zip(REPETITION_COLUMNS, (round(v, 4) for v in values)))


# -- per chunk ----------------------------------------------------------------------------------


def chunk_body(text: str, heading: str | None) -> str:
    """A chunk's text without the heading line chunking puts first."""
    if heading:
        for prefix in (heading, heading[:200]):
            if text.startswith(prefix + "\n"):
                return text[len(prefix) + 1 :]
    return text


def alpha_char_share(text: str) -> float | None:
    """Letters / non-space characters; None for a text with none."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return None
    return round(sum(c.isalpha() for c in visible) / len(visible), 4)


def informative_words(text: str) -> int:
    """Alphabetic words (two letters or more) that are not English stop words or navigation words."""
    return sum(
        1 for w in _ALPHA_WORD.findall(text) if (lw := w.lower()) not in STOP_WORDS and lw not in _NAVIGATION_ONLY
    )


def is_navigation_line(line: str) -> bool:
    """A line made only of site-chrome words: "Prev", "Up", "Home", "Next", "Table of Contents" ..."""
    tokens = [w.lower() for w in words(line)]
    return bool(tokens) and all(t in NAVIGATION_WORDS for t in tokens)


def navigation_share(body: str) -> float | None:
    """Share of a body's lines that are navigation (Prev / Up / Home / Next ...); None for an empty body.

    Counted in lines, not words: a navigation bar's other lines are page titles
    ("Chapter 26. High Availability"), which are words of content anywhere else.
    """
    lines = body_lines(body)
    if not lines:
        return None
    return round(sum(is_navigation_line(line) for line in lines) / len(lines), 4)


# A numbered title: "4.1. Lexical Structure", "F.25. pageinspect", "Chapter 8. Data Types", "Part II. The SQL Language".
_NUMBERED_TITLE = re.compile(r"^(?:(?:Chapter|Part|Appendix|Section)\s+)?[A-Z0-9]{1,4}(?:\.[0-9]+)*\.\s+\S")


_LINKS_ONLY = re.compile(r"^(?:\[[^\]]*\]\([^)]*\)[\s|·•,»›]*)+$")  # markdown links and separators only
_BULLET = re.compile(r"^(?:[-*+•>]+|\d+[.)])\s+")
_SENTENCE_END = (".", ":", ";", ",", "?", "!")
MAX_TITLE_WORDS = 12


def is_link_like(line: str) -> bool:
    """A line a link list is made of: a navigation line, links only, or a short numbered section title
    (a table of contents). Table rows and option lists are short too, but not numbered titles: content.
    """
    if is_navigation_line(line) or _LINKS_ONLY.match(line):
        return True
    return len(line) <= 80 and not line.endswith(_SENTENCE_END) and bool(_NUMBERED_TITLE.match(line))


def link_line_share(body: str) -> float | None:
    """Share of a body's lines that look like links (a table of contents, a menu); None under 3 lines."""
    lines = body_lines(body)
    if len(lines) < MIN_LINK_LIST_LINES:
        return None
    return round(sum(is_link_like(line) for line in lines) / len(lines), 4)


def _is_title(line: str) -> bool:
    """A short line that does not end like a sentence: a heading, or a link's text."""
    return len(line.split()) <= MAX_TITLE_WORDS and not line.rstrip("'\")").endswith(_SENTENCE_END)


def is_navigation_only(text: str) -> bool:
    """Whether a text is only navigation (pager, breadcrumb, table of contents, links) or one heading line:
    nothing a user asks about, so never a dataset's positive or negative.

    >>> is_navigation_only("26.3. Continuous Archiving\\n\\nPrev\\n\\nUp\\n\\nChapter 26. Backup and Restore\\n\\nHome\\n\\nNext")
    True
    >>> is_navigation_only("[Install](install.md) · [Upgrade](upgrade.md) · [FAQ](faq.md)")
    True
    >>> is_navigation_only("Backup and Restore")
    True
    >>> is_navigation_only("DROP STATISTICS\\n\\nPrev\\n\\nUp\\n\\nNext\\n\\nCREATE SERVER\\n\\nHome")
    True
    >>> is_navigation_only("Prev\\nNext\\nA base backup is taken with pg_basebackup while the server runs.")
    False

    Empty text is not navigation (emptiness is its own check). Lines of punctuation only
    (separators) are neutral; the short lines around a pager (its link texts: the previous and
    next pages' titles) count as navigation.
    """
    lines = [_BULLET.sub("", line).strip() for line in body_lines(text)]
    lines = [line for line in lines if re.search(r"\w", line)]
    if not lines:
        return False
    if len(lines) == 1 and _is_title(lines[0]):
        return True
    pager = sum(line.lower() in PAGER_WORDS for line in lines) >= 2
    return all(is_link_like(line) or pager and _is_title(line) for line in lines)
