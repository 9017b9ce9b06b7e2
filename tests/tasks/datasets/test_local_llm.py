"""The local-llm generator's parts: the question rules, the sample, the answer cache, the round-trip check."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kbflow.config import LocalLlmConfig
from kbflow.errors import ConfigError
from kbflow.tasks.datasets.local_llm import (
    CACHE_FILE, EXAMPLES, LocalLlmGenerator, filter_round_trip, model_file, render_prompt, round_trip_consistent,
    sample_passages,
)
from kbflow.tasks.datasets.pairs import GeneratedPair, Passage
from kbflow.tasks.datasets.questions import generated_question

from fakes import HashEmbedder


def passage(n: int, text: str | None = None) -> Passage:
    return Passage(f"c{n}", f"d{n}", "docs", "", text or f"Passage number {n} explains the option {n}.")


class CountingModel:
    """Stands in for LocalModel: answers from the prompt's passage and counts what it was asked."""

    load_seconds = 0.0

    def __init__(self) -> None:
        self.asked: list[str] = []

    def prompt(self, text: str) -> str:
        return render_prompt(text)

    def ask(self, prompt: str) -> str:
        self.asked.append(prompt)
        return f"Question: How do I set option {len(self.asked)}?\nAnswer: like this."


def test_a_model_answer_becomes_a_question_only_when_a_user_could_ask_it_alone():
    assert generated_question('Question: "How do I restore a base backup?"') == "How do I restore a base backup?"
    assert generated_question("**Q1:** What does VACUUM FULL lock? It locks the table.") == "What does VACUUM FULL lock?"
    assert generated_question("\n\nHow are WAL files archived?\n") == "How are WAL files archived?"
    # what SmolLM2 wrote for a passage of the descriptor HOWTO: markdown quotes around names are dropped
    assert (generated_question("What is the purpose of the `descr.__get__` and `descr.__set__` methods?")
            == "What is the purpose of the descr.__get__ and descr.__set__ methods?")
    for bad in ("What does the passage say about backups?",  # needs the passage
                "Backups are taken nightly.",  # not a question
                "Why?",  # too short
                "How do I set {a: 1}; in the file?",  # code
                "what is the text above about?",
                ""):
        assert generated_question(bad) is None, bad


def test_a_few_shot_example_repeated_by_the_model_is_no_question(tmp_path):
    class Parrot(CountingModel):
        def ask(self, prompt: str) -> str:
            super().ask(prompt)
            return EXAMPLES[1][1]  # SmolLM2 does this on some passages of the Python docs

    generator = LocalLlmGenerator(LocalLlmConfig(cache_dir=tmp_path), None, 0, 3, model=Parrot())
    assert generator.generate([passage(0)], random.Random(0)) == [] and generator.stats["rejected_by_rules"] == 1


def test_the_sample_is_seeded_and_stable_as_passages_are_added():
    passages = [passage(n) for n in range(50)]
    first = sample_passages(passages, 10, seed=1)
    assert len(first) == 10 and sample_passages(passages, 10, seed=1) == first
    assert sample_passages(passages, 10, seed=2) != first
    grown = sample_passages(passages + [passage(n) for n in range(50, 55)], 10, seed=1)
    assert len(set(p.chunk_id for p in grown) & set(p.chunk_id for p in first)) >= 5  # most of the sample stays
    assert sample_passages(passages, None, seed=1) == passages


def test_the_cache_asks_only_for_new_or_changed_passages(tmp_path):
    settings = LocalLlmConfig(cache_dir=tmp_path)
    model = CountingModel()
    passages = [passage(n) for n in range(3)]
    first = LocalLlmGenerator(settings, None, 0, 3, model=model).generate(passages, random.Random(0))
    assert len(model.asked) == 3 and [p.query for p in first] == [f"How do I set option {n}?" for n in (1, 2, 3)]

    again = LocalLlmGenerator(settings, None, 0, 3, model=model)  # a new build: the cache file is read back
    assert again.generate(passages, random.Random(0)) == first
    assert len(model.asked) == 3 and again.stats["generated"] == 0 and again.stats["cached"] == 3

    changed = [passages[0], passage(1, "Passage one now explains something else entirely."), passages[2]]
    third = LocalLlmGenerator(settings, None, 0, 3, model=model)
    third.generate(changed, random.Random(0))
    assert len(model.asked) == 4 and third.stats["generated"] == 1 and "something else" in model.asked[-1]
    assert len((tmp_path / CACHE_FILE).read_text().splitlines()) == 4


def test_a_cache_line_cut_short_by_a_crash_is_asked_again(tmp_path):
    settings = LocalLlmConfig(cache_dir=tmp_path)
    LocalLlmGenerator(settings, None, 0, 3, model=CountingModel()).generate([passage(0), passage(1)], random.Random(0))
    lines = (tmp_path / CACHE_FILE).read_text().splitlines()
    (tmp_path / CACHE_FILE).write_text(lines[0] + "\n" + lines[1][:20])
    model = CountingModel()
    generator = LocalLlmGenerator(settings, None, 0, 3, model=model)
    assert len(generator.generate([passage(0), passage(1)], random.Random(0))) == 2
    assert len(model.asked) == 1 and generator.stats["cached"] == 1


def test_round_trip_keeps_a_question_only_when_its_passage_is_in_the_top_k():
    vectors = np.eye(4, dtype=np.float32)  # four chunks, orthogonal
    ids = ["a", "b", "c", "d"]
    pairs = [GeneratedPair("q1", "A", "a", "local-llm"), GeneratedPair("q2", "B", "b", "local-llm")]
    queries = np.array([[0.9, 0.1, 0, 0], [0.8, 0.5, 0.3, 0]], dtype=np.float32)  # q2 finds b second
    assert round_trip_consistent(pairs, queries, ids, vectors, top_k=1) == [True, False]
    assert round_trip_consistent(pairs, queries, ids, vectors, top_k=2) == [True, True]


def test_the_round_trip_filter_checks_only_local_llm_questions_with_the_embedder():
    embedder = HashEmbedder()
    texts = ["Nightly snapshots of the backup volume are kept fourteen days.",
             "Invoices and refunds are listed under billing for every seat.",
             "The websocket client resolves offline sync conflicts per device."]
    ids = ["backup", "billing", "sync"]
    vectors = embedder.encode(texts)
    pairs = [
        GeneratedPair("How long are nightly backup snapshots kept?", texts[0], "backup", "local-llm"),  # on target
        # off its passage: the question is about another one (as a small model's sometimes is)
        GeneratedPair("How does the websocket client resolve offline conflicts?", texts[1], "billing", "local-llm"),
        GeneratedPair("How does the websocket client resolve offline conflicts?", texts[1], "billing", "heading"),
    ]
    kept, removed = filter_round_trip(pairs, embedder, ids, vectors, top_k=1)
    assert [(p.chunk_id, p.generator) for p in kept] == [("backup", "local-llm"), ("billing", "heading")]
    assert removed == 1


def test_a_model_that_is_not_there_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not smollm2, gemma3-270m"):
        model_file(str(tmp_path / "nothing.gguf"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert model_file(str(tmp_path / "m.gguf")) == (tmp_path, "m.gguf")
    assert model_file(str(tmp_path)) == (tmp_path, "m.gguf")  # a folder with one .gguf
