"""What query generators make: a passage in, (query, positive) pairs out.

The types every generator shares (heading, ict, labeled, llm), in a module of their
own so that a generator module never imports another to get them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Passage:
    """One chunk a query is generated for."""

    chunk_id: str
    doc_id: str
    source: str
    heading: str  # the heading path, "Backup and restore > Restoring"; "" when none
    text: str  # the chunk's text without its heading line
    title: str = ""  # the document's title: names the subject of "Options", "Description", ...


@dataclass(frozen=True)
class GeneratedPair:
    query: str
    positive: str  # the passage text the query should retrieve
    chunk_id: str  # the chunk the positive comes from
    generator: str  # the generator's name: heading | ict | labeled | llm
    other_answers: tuple[str, ...] = ()  # doc ids that also answer the query: never a negative's document


class QueryGenerator(Protocol):
    name: str

    def generate(self, passages: Iterable[Passage], rng: random.Random) -> list[GeneratedPair]:
        """Pairs for the passages it can make a query for (zero or more per passage); reads them once."""
