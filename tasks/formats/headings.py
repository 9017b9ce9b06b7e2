"""Heading vocabulary shared by every stage that reads a heading path.

A heading path is the document's headings from the top, joined by `SEPARATOR`
("Backup and Restore > 26.3. Continuous Archiving"). Chunking uses these words to
tell a topic from mere structure; dataset questions use them to phrase a heading.
"""

from __future__ import annotations

import re

SEPARATOR = " > "
# "26.3. ", "F.2.1. ", "Chapter 26. ", "Appendix F. ", "Part III. ", "1) ", "§2 "
NUMBERING = re.compile(
    r"^(?:(?i:part|chapter|appendix|section)\s+[\dA-Z]+[.:]?\s*|(?:\d+|[A-Z])(?:\.\d+)*\.\s+|\d+\)\s+|§\s*\d+\s+)"
)
BOOK_DIVISION = re.compile(r"^(?:part|chapter|appendix)\s+[\dA-Z]+\b", re.IGNORECASE)
STRUCTURAL = frozenset({
    "", "part", "chapter", "appendix", "section", "contents", "table of contents", "index", "preface",
    "note", "notes", "tip", "tips", "warning", "caution", "important", "hint", "attention", "danger", "seealso",
    "see also", "synopsis", "footnotes", "bibliography", "references", "author", "authors", "files", "bugs",
    "introduction", "overview", "summary", "background", "details", "misc", "other", "faq", "example",
    "examples", "compatibility", "history", "outputs", "diagnostics", "exit status", "return value",
    "arguments", "environment", "usage", "acknowledgments", "license", "changelog", "glossary",
})
# A reference page's standard sections say what to ask about the page's subject.
REFERENCE_SECTIONS = {
    "description": "What does {subject} do?",
    "options": "What options does {subject} accept?",
    "parameters": "What parameters does {subject} take?",
    "examples": "What are examples of using {subject}?",
    "notes": "What should I watch out for when using {subject}?",
    "compatibility": "Is {subject} part of the SQL standard?",
}


def strip_numbering(segment: str) -> str:
    """A heading segment without its section number: "26.3. Continuous Archiving" → "Continuous Archiving"."""
    return NUMBERING.sub("", segment.strip(), count=1).strip()
