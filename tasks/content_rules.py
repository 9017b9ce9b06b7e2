"""Rules that read a chunk's content: plain functions, shared by the quality gates and the datasets.

A chunk made only of site navigation ("Prev Up Home Next", a breadcrumb, a table of
contents, a list of links) or only of a heading line says nothing a user asks about:
it must not be a dataset's positive or negative, and it should not be indexed.
"""

from __future__ import annotations

import re

# Words that navigation bars, breadcrumbs and pagers are made of.
NAVIGATION_WORDS = frozenset({
    "prev", "previous", "next", "up", "home", "top", "back", "to", "contents", "table", "of", "index", "toc",
    "skip", "content", "main", "menu", "search", "edit", "this", "page", "on", "github", "go", "navigation",
    "breadcrumb", "section", "chapter", "part", "appendix", "»", "«", "|", "›", "‹", "→", "←", "↑",
})  # fmt: skip
PAGER_WORDS = frozenset({"prev", "previous", "next", "up", "home"})
# "26.3. Continuous Archiving", "Chapter 26. Backup and Restore", "Part III. …", "F.2.1. …": a title or TOC entry.
NUMBERED_TITLE = re.compile(
    r"^(?:(?:part|chapter|appendix|section)\s+[\dIVXLCA-Z]+\.?|(?:\d+|[A-Z])(?:\.\d+)*\.)\s+\S", re.IGNORECASE
)
LINK_ONLY = re.compile(r"^(?:\[[^\]]*\]\([^)]*\)[\s|·•,]*)+$")  # markdown links and separators only
BULLET = re.compile(r"^(?:[-*+•>]+|\d+[.)])\s+")
SENTENCE_END = re.compile(r"[.!?:;]['\")]?$")
MAX_HEADING_WORDS = 12


def _is_navigation_line(line: str) -> bool:
    words = re.findall(r"[^\s]+", line.lower())
    if all(word.strip(".,:()[]") in NAVIGATION_WORDS or not re.search(r"\w", word) for word in words):
        return True
    if LINK_ONLY.match(line):
        return True
    return bool(NUMBERED_TITLE.match(line)) and not SENTENCE_END.search(line)  # a title, not a numbered step


def is_navigation_only(text: str) -> bool:
    """Whether a chunk is only navigation (pager, breadcrumb, table of contents, links) or one heading line.

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

    Empty text is not navigation (emptiness is its own check). A single line counts as a
    heading when it is short (at most 12 words) and does not end like a sentence; so do the
    lines around a pager (the previous and next pages' titles, a "See Also" list).
    """
    lines = [BULLET.sub("", line.strip()).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return False
    if len(lines) == 1 and _is_title(lines[0]):
        return True
    # Around a pager ("Prev", "Up", "Next", "Home" on lines of their own), short lines are its link texts.
    pager = sum(line.lower() in PAGER_WORDS for line in lines) >= 2
    return all(_is_navigation_line(line) or pager and _is_title(line) for line in lines)


def _is_title(line: str) -> bool:
    """A short line that does not end like a sentence: a heading, or a link's text."""
    return len(line.split()) <= MAX_HEADING_WORDS and not SENTENCE_END.search(line)
