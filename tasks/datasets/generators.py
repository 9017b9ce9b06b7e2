"""Query generators: (query, positive passage) pairs for embedding fine-tuning.

A generator turns passages (chunks of the index, heading line removed) into
pairs. Offline generators need nothing but the text: `heading` turns a section's
heading path into the question it answers (tasks/datasets/questions.py: "What is X?", "How do I
X?", "What does option -f do?"; structural headings give none), `ict` (inverse cloze
task) uses one whole informative sentence of the passage as the query and the rest as
the positive. The `labeled` generator (tasks/datasets/labeled.py) takes the real questions of
labeled sources; the `llm` generator (tasks/datasets/llm.py) asks an OpenAI-compatible endpoint,
the `local-llm` generator (tasks/datasets/local_llm.py) a small model on this machine's CPU.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow import progress
from kbflow.config import DatasetsConfig
from kbflow.tasks.datasets.llm import LlmQueryGenerator
from kbflow.tasks.datasets.local_llm import LocalLlmGenerator
from kbflow.tasks.datasets.pairs import GeneratedPair, Passage, QueryGenerator
from kbflow.tasks.datasets.questions import heading_question, is_informative_sentence


# A sentence ends at . ! ? before whitespace, at a blank line, or before a line that starts
# a list item, table row, heading or code fence (hard-wrapped prose runs on over newlines).
# "e.g." / "i.e." / "cf." / "vs." end no sentence ("If the expression is a tuple (e.g." was a query).
SENTENCE = re.compile(
    r"\S.*?(?:[.!?](?<![eE]\.g\.)(?<![iI]\.e\.)(?<!\bcf\.)(?<!\bvs\.)(?=\s)|(?=\n\s*\n)"
    r"|(?=\n\s*(?:[-*+•|#>]|\d+[.)]\s|```))|\Z)",
    re.S,
)
LIST_MARKER = re.compile(r"^(?:[-*+•>#]+|\d+[.)])\s+")


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


class HeadingGenerator:
    """The question a section's heading asks, as the query for the section's text (its first chunk).

    `heading_question` words the heading path as a question by its shape (given the
    document's title); structural headings (Part/Chapter numbers, "Note", "Synopsis", ...)
    give none and are skipped, as are questions of fewer than `min_query_tokens` words.
    """

    name = "heading"

    def __init__(self, min_query_tokens: int) -> None:
        self.min_query_tokens = min_query_tokens

    def generate(self, passages: Iterable[Passage], rng: random.Random) -> list[GeneratedPair]:
        pairs, seen = [], set()
        for passage in passages:
            heading, key = passage.heading.strip(), (passage.doc_id, passage.heading)
            if not heading or key in seen or not passage.text.strip():
                continue
            seen.add(key)  # later chunks of the section would repeat the same query
            question = heading_question(heading, passage.title)
            if question is None or _words(question) < self.min_query_tokens:
                continue
            pairs.append(GeneratedPair(question, passage.text, passage.chunk_id, self.name))
        return pairs


class IctGenerator:
    """Inverse cloze task: one sentence of the passage as the query, the rest as the positive.

    The sentence is kept in the positive for a `keep_sentence` share of pairs (Lee et al.
    2019: the model still learns word overlap, not only context). A passage needs a
    second sentence, and the query must be a whole informative sentence of prose
    (`is_informative_sentence`: never a code line, a table row or a fragment) of at least
    `min_query_tokens` words.
    """

    name = "ict"

    def __init__(self, keep_sentence: float, min_query_tokens: int) -> None:
        self.keep_sentence, self.min_query_tokens = keep_sentence, min_query_tokens

    def generate(self, passages: Iterable[Passage], rng: random.Random) -> list[GeneratedPair]:
        pairs = []
        for passage in passages:
            text = passage.text.strip()
            spans = [m.span() for m in SENTENCE.finditer(text)]
            # wrapped lines joined, a list marker dropped
            sentences = {span: " ".join(LIST_MARKER.sub("", text[span[0]:span[1]]).split()) for span in spans}
            candidates = [
                span for span, sentence in sentences.items()
                if _words(sentence) >= self.min_query_tokens and is_informative_sentence(sentence)
            ]
            if len(spans) < 2 or not candidates:
                continue
            start, end = rng.choice(candidates)
            keep = rng.random() < self.keep_sentence
            query = sentences[(start, end)]
            pairs.append(GeneratedPair(query, text if keep else _without(text, start, end), passage.chunk_id, self.name))
        return pairs


def _without(text: str, start: int, end: int) -> str:
    before, after = text[:start].rstrip(), text[end:].lstrip()
    gap = text[len(before):start] + text[end:len(text) - len(after)]
    return (before + ("\n" if "\n" in gap else " ") + after).strip()


def make_generators(config: DatasetsConfig) -> list[QueryGenerator]:
    """The configured passage generators, in config order; `llm` only with an endpoint configured.

    `labeled` reads labeled records, not passages: the flow adds its pairs (tasks/datasets/labeled.py).
    """
    generators: list[QueryGenerator] = []
    for name in dict.fromkeys(config.generators):
        if name == "heading":
            generators.append(HeadingGenerator(config.min_query_tokens))
        elif name == "ict":
            generators.append(IctGenerator(config.ict_keep_sentence, config.min_query_tokens))
        elif name == "llm":
            generators.append(LlmQueryGenerator(config.llm))
        elif name == "local-llm":
            generators.append(LocalLlmGenerator(config.local_llm, config.generator_sample, config.seed,
                                                config.min_query_tokens))
    return generators


def generation_stats(generators: Sequence[QueryGenerator], pairs: Sequence[GeneratedPair],
                     removed: dict[str, int]) -> dict[str, dict]:
    """Per generator that keeps `stats` (local-llm): its counts and speed, the questions kept after every
    filter (`accepted`) and their share of the passages asked (`accept_rate`)."""
    report = {}
    for generator in generators:
        stats = getattr(generator, "stats", None)
        if not isinstance(stats, dict) or not stats:
            continue
        accepted = sum(pair.generator == generator.name for pair in pairs)
        asked = stats.get("passages") or 0
        report[generator.name] = {**stats, "rejected_by_round_trip": removed.get(generator.name, 0),
                                  "accepted": accepted, "accept_rate": round(accepted / asked, 3) if asked else None}
    return report


def generate_pairs(
    passages: list[Passage], generators: Sequence[QueryGenerator], seed: int
) -> tuple[list[GeneratedPair], dict[str, int]]:
    """Every generator's pairs, in generator then passage order; each generator has its own seeded rng.

    Also returns the passages a generator gave up on (`llm_skipped`: no usable answer).
    """
    total = len(passages) * len(generators)  # progress: passages read, over all generators
    pairs = [
        pair
        for n, generator in enumerate(generators)
        for pair in generator.generate(progress.counted(passages, "generating queries", total, n * len(passages)),
                                       random.Random(f"{seed}:{generator.name}"))
        if pair.query.strip() and pair.positive.strip()
    ]
    skipped = {f"{g.name}_skipped": g.skipped for g in generators if isinstance(getattr(g, "skipped", None), int)}
    return pairs, skipped


@task(name="generate-pairs", cache_policy=NO_CACHE)
def generate_pairs_task(
    passages: list[Passage], generators: list[QueryGenerator], seed: int
) -> tuple[list[GeneratedPair], dict[str, int]]:
    """Queries for the passages from every configured generator."""
    return generate_pairs(passages, generators, seed)
