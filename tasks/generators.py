"""Query generators: (query, positive passage) pairs for embedding fine-tuning.

A generator turns passages (chunks of the index, heading line removed) into
pairs. Offline generators need nothing but the text: `heading` uses a section's
heading path as the query for its passage, `ict` (inverse cloze task) uses one
sentence of the passage as the query and the rest as the positive. The `llm`
generator (tasks/llm.py) asks an OpenAI-compatible endpoint for questions.
"""

from __future__ import annotations

import random
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


@dataclass(frozen=True)
class GeneratedPair:
    query: str
    positive: str  # the passage text the query should retrieve
    chunk_id: str  # the chunk the positive comes from
    generator: str  # the generator's name: heading | ict | llm


class QueryGenerator(Protocol):
    name: str

    def generate(self, passages: list[Passage], rng: random.Random) -> list[GeneratedPair]:
        """Pairs for the passages it can make a query for (zero or more per passage)."""
