"""Datasets: labeled fine-tuning data in Parquet, from the index and from labeled sources.

Four kinds, each a Hugging Face style folder `DIR/KIND/` (data/{split}-00000-of-00001.parquet,
README.md card, manifest.json):
- `embedding-pairs`: generated (anchor, positive) pairs plus hard negatives mined from
  the LanceDB index (other documents of the same tenant, below the positive's score by
  `negative_margin`, so near-duplicates of the positive are never used as negatives);
- `reranker`: the same pairs as (query, passage, label) rows: 1 for the positive, 0 per negative;
- `sft`: question/answer records as `messages` and `prompt`/`completion`;
- `raft`: question + the oracle chunk + distractor chunks from the index as context (Zhang
  et al. 2024, retrieval-augmented fine-tuning); the oracle is left out of a share of rows.

Hygiene runs in a fixed order, every drop counted: split by document group (a seeded hash,
so no document feeds two splits), non-empty fields, PII policy (redact by default, before
anything is written), length in model tokens, exact and near-duplicate queries within a
split, near-duplicate queries across splits (dropped from the later split). A GX suite per
kind then re-checks the result from scratch; a blocking failure writes nothing.
Same inputs and seed give the same rows in the same order.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import ConfigError, DatasetKind, DatasetsConfig, KbflowConfig, SourceConfig
from kbflow.dataset_files import SPLITS, read_split, split_file
from kbflow.errors import QualityGateFailed
from kbflow.models import Embedder, Tokenizer
from kbflow.relevance import hit_keys
from kbflow.schemas import dataset_schema, vector_matrix
from kbflow.store import CHUNKS, DOCUMENTS_TABLE, Store, sql_list, sql_string
from kbflow.tasks.chunk import MAX_HEADING_CHARS
from kbflow.tasks.dedup import cross_group_near_duplicates, drop_duplicates
from kbflow.tasks.discover import discover_records, read_records
from kbflow.tasks.generators import GeneratedPair, Passage, QueryGenerator
from kbflow.tasks.pii import FLAG_COLUMN, apply_pii_policy, count_pii
from kbflow.tasks.quality import SuiteResult, bundled_expectations_dir, load_suite, open_context, validate_frame

DATASET_KINDS = get_args(DatasetKind)
SUITES = {kind: "dataset_" + kind.replace("-", "_") for kind in DATASET_KINDS}
INDEX_KINDS = {"embedding-pairs", "reranker", "raft"}  # the kinds that read the index
# Working columns, never written: the split, the group that decides it, the text dedup compares.
SPLIT, GROUP, QUERY = "_split", "_group", "_query"
PRIVATE = (SPLIT, GROUP, QUERY)
# Headings that say nothing about their section: useless as a query on their own.
GENERIC_HEADINGS = frozenset(
    {"introduction", "overview", "summary", "contents", "table of contents", "see also", "references",
     "notes", "note", "example", "examples", "appendix", "background", "details", "misc", "other", "faq"}
)  # fmt: skip
NEGATIVE_POOL = 16  # candidates searched per query beyond the negatives wanted (margin and text filters)
STALE_EXAMPLES = 10


def check_kind(kind: str) -> str:
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; use one of {', '.join(DATASET_KINDS)}")
    return kind


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


# -- the index: one consistent snapshot ---------------------------------------------------------


@dataclass
class IndexSnapshot:
    """The chunks and documents tables at one version each: everything rows are built from."""

    table: Any  # the LanceDB chunks table checked out at `versions["chunks_version"]`
    chunks: pa.Table  # chunk_id, doc_id, source, uri, tenant, ordinal, heading, text, run_id
    vectors: np.ndarray  # one row per chunk, same order
    documents: pa.Table  # doc_id, source, uri, content_hash, tenant
    versions: dict[str, Any]  # chunks_version, documents_version, model, run_ids
    _position: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._position = {chunk_id: i for i, chunk_id in enumerate(self.chunks.column("chunk_id").to_pylist())}

    def chunk(self, chunk_id: str) -> dict[str, Any]:
        return self.chunks.slice(self._position[chunk_id], 1).to_pylist()[0]

    def vector(self, chunk_id: str) -> np.ndarray:
        return self.vectors[self._position[chunk_id]]

    def content_hashes(self) -> dict[str, str]:
        return dict(zip(self.documents.column("doc_id").to_pylist(), self.documents.column("content_hash").to_pylist()))

    def search(self, vector: np.ndarray, where: str | None, limit: int) -> list[dict[str, Any]]:
        """Nearest chunks by cosine (`score`), filtered inside LanceDB first; ties by chunk_id."""
        query = self.table.search(vector, vector_column_name="vector").distance_type("cosine")
        if where:
            query = query.where(where, prefilter=True)
        hits = query.select(["chunk_id", "doc_id", "tenant", "heading", "text", "_distance"]).limit(limit).to_arrow()
        found = [{**hit, "score": 1.0 - float(hit.pop("_distance"))} for hit in hits.to_pylist()]
        return sorted(found, key=lambda hit: (-round(hit["score"], 6), hit["chunk_id"]))


CHUNK_COLUMNS = ["chunk_id", "doc_id", "source", "uri", "tenant", "ordinal", "heading", "text", "run_id"]


def read_index(store: Store, model: str) -> IndexSnapshot:
    """The index as it is now, pinned to its current versions (a concurrent ingest changes nothing here)."""
    store.check_model(model)
    table = store.table(CHUNKS)
    table.checkout(table.version)
    everything = table.search().select([*CHUNK_COLUMNS, "vector"]).limit(None).to_arrow()
    order = pc.sort_indices(everything, [("doc_id", "ascending"), ("ordinal", "ascending"), ("chunk_id", "ascending")])
    everything = everything.take(order)
    vectors = vector_matrix(everything.column("vector"))
    documents = store.table(DOCUMENTS_TABLE).to_arrow().select(["doc_id", "source", "uri", "content_hash", "tenant"])
    versions = {
        "chunks_version": table.version,
        "documents_version": store.version(DOCUMENTS_TABLE),
        "model": store.index_model(),
        "run_ids": sorted(set(everything.column("run_id").to_pylist())),  # the runs that wrote these chunks
        "last_published_run": next((run["run_id"] for run in store.published_runs()), None),
    }
    return IndexSnapshot(table, everything.select(CHUNK_COLUMNS), vectors, documents, versions)


def strip_heading(text: str, heading: str | None) -> str:
    """A chunk's text without the heading line chunking put first."""
    prefix = f"{(heading or '')[:MAX_HEADING_CHARS]}\n"
    return text[len(prefix):] if heading and text.startswith(prefix) else text


def read_passages(index: IndexSnapshot, source: str | None = None) -> list[Passage]:
    """The index's chunks as passages (heading split off), in document order; one source or all."""
    return [
        Passage(row["chunk_id"], row["doc_id"], row["source"], row["heading"] or "", strip_heading(row["text"], row["heading"]))
        for row in index.chunks.to_pylist()
        if source is None or row["source"] == source
    ]


# -- query generators ---------------------------------------------------------------------------

# A sentence ends at . ! ? before whitespace, at a blank line, or before a line that starts
# a list item, table row, heading or code fence (hard-wrapped prose runs on over newlines).
SENTENCE = re.compile(r"\S.*?(?:[.!?](?=\s)|(?=\n\s*\n)|(?=\n\s*(?:[-*+•|#>]|\d+[.)]\s|```))|\Z)", re.S)
LIST_MARKER = re.compile(r"^(?:[-*+•>#]+|\d+[.)])\s+")
NOT_PROSE = re.compile(r"\||```|^\s*[$#]|[{}<>=]{2}")  # table rows, code, shell prompts: no query


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


class HeadingGenerator:
    """The section's heading path as the query for the section's text (its first chunk).

    Skipped: passages without a heading, heading paths of fewer than `min_query_tokens`
    words, and sections whose own heading is generic ("Introduction", "Overview", ...),
    which says nothing the section is about.
    """

    name = "heading"

    def __init__(self, min_query_tokens: int) -> None:
        self.min_query_tokens = min_query_tokens

    def generate(self, passages: list[Passage], rng: random.Random) -> list[GeneratedPair]:
        pairs, seen = [], set()
        for passage in passages:
            heading, key = passage.heading.strip(), (passage.doc_id, passage.heading)
            if not heading or key in seen or not passage.text.strip():
                continue
            seen.add(key)  # later chunks of the section would repeat the same query
            last = heading.rsplit(" > ", 1)[-1].strip().lower()
            if last in GENERIC_HEADINGS or _words(heading) < self.min_query_tokens:
                continue
            pairs.append(GeneratedPair(heading, passage.text, passage.chunk_id, self.name))
        return pairs


class IctGenerator:
    """Inverse cloze task: one sentence of the passage as the query, the rest as the positive.

    The sentence is kept in the positive for a `keep_sentence` share of pairs (Lee et al.
    2019: the model still learns word overlap, not only context). A passage needs a
    second sentence, and a query sentence of at least `min_query_tokens` words.
    """

    name = "ict"

    def __init__(self, keep_sentence: float, min_query_tokens: int) -> None:
        self.keep_sentence, self.min_query_tokens = keep_sentence, min_query_tokens

    def generate(self, passages: list[Passage], rng: random.Random) -> list[GeneratedPair]:
        pairs = []
        for passage in passages:
            text = passage.text.strip()
            spans = [m.span() for m in SENTENCE.finditer(text)]
            candidates = [
                (start, end) for start, end in spans
                if _words(text[start:end]) >= self.min_query_tokens and not NOT_PROSE.search(text[start:end])
            ]
            if len(spans) < 2 or not candidates:
                continue
            start, end = rng.choice(candidates)
            keep = rng.random() < self.keep_sentence
            query = " ".join(LIST_MARKER.sub("", text[start:end]).split())  # wrapped lines joined
            pairs.append(GeneratedPair(query, text if keep else _without(text, start, end), passage.chunk_id, self.name))
        return pairs


def _without(text: str, start: int, end: int) -> str:
    before, after = text[:start].rstrip(), text[end:].lstrip()
    gap = text[len(before):start] + text[end:len(text) - len(after)]
    return (before + ("\n" if "\n" in gap else " ") + after).strip()


def make_generators(config: DatasetsConfig) -> list[QueryGenerator]:
    """The configured generators, in config order; `llm` only with an endpoint configured."""
    generators: list[QueryGenerator] = []
    for name in dict.fromkeys(config.generators):
        if name == "heading":
            generators.append(HeadingGenerator(config.min_query_tokens))
        elif name == "ict":
            generators.append(IctGenerator(config.ict_keep_sentence, config.min_query_tokens))
        elif name == "llm":
            from kbflow.tasks.llm import LlmQueryGenerator  # a ConfigError when datasets.llm.base_url is not set

            generators.append(LlmQueryGenerator(config.llm))
    return generators


def generate_pairs(
    passages: list[Passage], generators: Sequence[QueryGenerator], seed: int
) -> tuple[list[GeneratedPair], dict[str, int]]:
    """Every generator's pairs, in generator then passage order; each generator has its own seeded rng.

    Also returns the passages a generator gave up on (`llm_skipped`: no usable answer).
    """
    pairs = [
        pair
        for generator in generators
        for pair in generator.generate(passages, random.Random(f"{seed}:{generator.name}"))
        if pair.query.strip() and pair.positive.strip()
    ]
    skipped = {f"{g.name}_skipped": g.skipped for g in generators if isinstance(getattr(g, "skipped", None), int)}
    return pairs, skipped


# -- embedding pairs with hard negatives, and reranker pairs -------------------------------------


def mine_hard_negatives(
    pairs: list[GeneratedPair], index: IndexSnapshot, embedder: Embedder, negatives: int, margin: float
) -> tuple[pa.Table, dict[str, int]]:
    """Embedding-pair rows: each pair with its top `negatives` hard negatives from the index.

    Candidates are the query's nearest chunks of OTHER documents of the positive's tenant
    (a row never mixes tenants' text). A candidate scoring within `margin` of the positive
    chunk's own score, or with the positive's text, is likely a near-duplicate or another
    right answer, and skipped. A pair left with fewer than `negatives` is dropped (counted
    as `too_few_negatives`): every row has the same columns, filled with real hard negatives.
    """
    from kbflow import progress

    vectors = embedder.encode([pair.query for pair in pairs]) if pairs and negatives else None
    rows, dropped = [], 0
    for i, pair in enumerate(pairs):
        chunk = index.chunk(pair.chunk_id)
        mined: list[str] = []
        if negatives:
            floor = float(vectors[i] @ index.vector(pair.chunk_id)) - margin
            where = f"doc_id != {sql_string(chunk['doc_id'])} AND tenant = {sql_string(chunk['tenant'])}"
            positive = " ".join(pair.positive.split())
            for hit in index.search(vectors[i], where, negatives + NEGATIVE_POOL):
                text = strip_heading(hit["text"], hit["heading"]).strip()
                if hit["score"] < floor and text and " ".join(text.split()) != positive and text not in mined:
                    mined.append(text)
                if len(mined) == negatives:
                    break
            if i % 50 == 0 or i == len(pairs) - 1:
                progress.report("mining negatives", i + 1, len(pairs))
        if len(mined) < negatives:
            dropped += 1
            continue
        rows.append(
            {
                "anchor": pair.query,
                "positive": pair.positive,
                **{f"negative_{n}": text for n, text in enumerate(mined, start=1)},
                "query_id": _short_hash(pair.generator, pair.chunk_id, pair.query),
                "positive_chunk_id": pair.chunk_id,
                "doc_id": chunk["doc_id"],
                "source": chunk["source"],
                "generator": pair.generator,
                GROUP: chunk["doc_id"],
            }
        )
    schema = _with_private(dataset_schema("embedding-pairs", negatives))
    return pa.Table.from_pylist(rows, schema=schema), {"too_few_negatives": dropped}


def reranker_rows(pairs: pa.Table, negatives: int) -> pa.Table:
    """(query, passage, label) rows from cleaned embedding pairs: 1 for the positive, 0 per negative."""
    rows = []
    for pair in pairs.to_pylist():
        common = {"query": pair["anchor"], "query_id": pair["query_id"], "doc_id": pair["doc_id"],
                  "source": pair["source"], SPLIT: pair[SPLIT], GROUP: pair[GROUP]}
        rows.append({**common, "passage": pair["positive"], "label": 1, "chunk_id": pair["positive_chunk_id"]})
        # Negatives keep no chunk id in the pairs; the row's lineage is its query's positive.
        rows += [{**common, "passage": pair[f"negative_{n}"], "label": 0, "chunk_id": None}
                 for n in range(1, negatives + 1)]
    extra = [FLAG_COLUMN] if FLAG_COLUMN in pairs.column_names else []
    schema = _with_private(dataset_schema("reranker"), split=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    if extra:  # flag policy: a pair's flag holds for all its rows
        flags = [flag for flag in pairs.column(FLAG_COLUMN).to_pylist() for _ in range(1 + negatives)]
        table = table.append_column(FLAG_COLUMN, pa.array(flags, pa.bool_()))
    return table


# -- labeled records: sft and raft --------------------------------------------------------------


@dataclass(frozen=True)
class LabeledRecord:
    """A question/answer row of a labeled records source, with its lineage."""

    id: str  # "<source>:<record id>"
    doc_id: str
    source: str
    content_hash: str
    question: str
    answer: str
    relevant: tuple[str, ...]  # uris / file names / doc ids of the documents that answer it


def labeled_sources(config: KbflowConfig, name: str | None) -> list[SourceConfig]:
    """The labeled sources to read (all, or `name`), with a clear error for an unlabeled one."""
    if name is None:
        sources = config.labeled_sources()
        if not sources:
            raise ConfigError("no labeled source: sft and raft need a records source with question_field and answer_field")
        return sources
    source = config.source(name)
    if not source.is_labeled:
        raise ConfigError(f"sources: {name!r} has no question_field/answer_field; sft and raft need labeled records")
    return [source]


def read_labeled_records(sources: list[SourceConfig]) -> tuple[list[LabeledRecord], dict[str, int]]:
    """The question/answer records of labeled sources (discovery's ids and hashes), in source/uri order."""
    records, bad = [], 0
    for source in sources:
        discovery = discover_records(source)
        bad += len(discovery.quarantined)
        by_path: dict[str, dict[str, dict]] = {}
        for item in discovery.items.to_pylist():
            if item["path"] not in by_path:
                rows, _ = read_records(Path(item["path"]), source)
                by_path[item["path"]] = {str(row.get(source.id_field)): row for row in rows}
            record_id = item["uri"].split("#", 1)[1]
            row = by_path[item["path"]][record_id]
            relevant = row.get(source.relevant_field) if source.relevant_field else None
            records.append(
                LabeledRecord(
                    id=f"{source.name}:{record_id}",
                    doc_id=item["doc_id"],
                    source=source.name,
                    content_hash=item["content_hash"],
                    question=str(row.get(source.question_field) or "").strip(),
                    answer=str(row.get(source.answer_field) or "").strip(),
                    relevant=tuple(str(r) for r in (relevant if isinstance(relevant, list) else [relevant] if relevant else [])),
                )
            )
    return sorted(records, key=lambda r: r.id), {"bad_record": bad}


def relevant_lookup(documents: pa.Table | None) -> dict[str, list[str]]:
    """Every name a labeled row may give a document by (doc_id, uri or a tail of it, `<source>/<uri>`,
    file name), to the doc ids it names: built once per dataset, read per record."""
    lookup: dict[str, list[str]] = {}
    rows = documents.select(["doc_id", "source", "uri"]).to_pylist() if documents is not None else []
    for document in rows:
        for key in hit_keys(document):  # the same matching as `kbflow eval`
            lookup.setdefault(key, []).append(document["doc_id"])
    return lookup


def resolve_relevant(relevant: Sequence[str], lookup: dict[str, list[str]]) -> list[str]:
    """Doc ids of the documents a labeled row names (see relevant_lookup)."""
    found = [doc_id for name in relevant for doc_id in sorted(lookup.get(name.strip().lstrip("./"), []))]
    return list(dict.fromkeys(found))


def _messages(system: str, user: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user},
            {"role": "assistant", "content": answer}]


def sft_rows(records: list[LabeledRecord], documents: pa.Table | None, system_prompt: str) -> pa.Table:
    """SFT rows: messages and prompt/completion. Split group: the first relevant document, else the record."""
    rows, lookup = [], relevant_lookup(documents)
    for record in records:
        relevant = resolve_relevant(record.relevant, lookup)
        rows.append(
            {
                "messages": _messages(system_prompt, record.question, record.answer),
                "prompt": record.question,
                "completion": record.answer,
                "id": record.id,
                "doc_id": record.doc_id,
                "source": record.source,
                GROUP: relevant[0] if relevant else record.doc_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=_with_private(dataset_schema("sft")))


def raft_rows(
    records: list[LabeledRecord], index: IndexSnapshot, embedder: Embedder, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int]]:
    """RAFT rows: the question with the oracle chunk and `raft_distractors` retrieved distractors.

    The oracle is the relevant documents' chunk nearest to the question (the nearest
    chunk of the whole index when the record names no relevant document that is indexed).
    Distractors are the question's nearest chunks of other documents, same tenant. A
    `raft_oracle_share` of rows hold the oracle; the others hold one more distractor
    instead, so the context length never tells whether the answer is in it. The context
    order is shuffled; both draws use an rng seeded with the seed and the record id.
    """
    vectors = embedder.encode([record.question for record in records]) if records else []
    rows, no_oracle, lookup = [], 0, relevant_lookup(index.documents)
    for record, vector in zip(records, vectors):
        relevant = resolve_relevant(record.relevant, lookup)
        where = f"doc_id IN ({sql_list(relevant)})" if relevant else None
        oracle = next(iter(index.search(vector, where, 1)), None)
        if oracle is None:
            no_oracle += 1
            continue
        excluded = relevant or [oracle["doc_id"]]
        where = f"doc_id NOT IN ({sql_list(excluded)}) AND tenant = {sql_string(oracle['tenant'])}"
        distractors = index.search(vector, where, config.raft_distractors + 1)
        rng = random.Random(f"{config.seed}:{record.id}")
        has_oracle = rng.random() < config.raft_oracle_share
        context = [oracle, *distractors[: config.raft_distractors]] if has_oracle else distractors
        rng.shuffle(context)
        user = "Context:\n" + "\n".join(f"[{n}] {hit['text']}" for n, hit in enumerate(context, start=1))
        rows.append(
            {
                "messages": _messages(config.system_prompt, f"{user}\n\nQuestion: {record.question}", record.answer),
                "id": record.id,
                "doc_id": record.doc_id,
                "source": record.source,
                "oracle_chunk_id": oracle["chunk_id"],
                "distractor_chunk_ids": [hit["chunk_id"] for hit in context if hit is not oracle],
                "has_oracle": has_oracle,
                GROUP: oracle["doc_id"],
                QUERY: record.question,
            }
        )
    return pa.Table.from_pylist(rows, schema=_with_private(dataset_schema("raft"), query=True)), {"no_oracle": no_oracle}


def _with_private(schema: pa.Schema, split: bool = False, query: bool = False) -> pa.Schema:
    """The kind's schema plus the build's private columns (dropped before writing)."""
    extra = [(SPLIT, pa.string())] if split else []
    extra += [(GROUP, pa.string())] + ([(QUERY, pa.string())] if query else [])
    return pa.schema([*schema, *extra])


# -- hygiene ------------------------------------------------------------------------------------

# Per kind: the column duplicates are judged on, and the text columns PII is looked for in.
DEDUP_COLUMN = {"embedding-pairs": "anchor", "reranker": "query", "sft": "prompt", "raft": QUERY}


def text_columns(kind: str, table: pa.Table) -> list[str]:
    """The written columns that hold text (strings a person wrote, or messages)."""
    if kind == "embedding-pairs":
        return ["anchor", "positive", *[c for c in table.column_names if c.startswith("negative_")]]
    return {"reranker": ["query", "passage"], "sft": ["messages", "prompt", "completion"], "raft": ["messages"]}[kind]


def row_fields(kind: str, table: pa.Table) -> list[list[str]]:
    """Per row, the text fields that must be non-empty and fit `max_tokens` (each on its own)."""
    if kind == "raft":  # the context is index chunks, which fit already; the question and answer
        questions = table.column(QUERY).to_pylist()
        answers = [messages[-1]["content"] for messages in table.column("messages").to_pylist()]
        return [[q or "", a or ""] for q, a in zip(questions, answers)]
    columns = [c for c in text_columns(kind, table) if c != "messages"]
    return [[value or "" for value in values] for values in zip(*(table.column(c).to_pylist() for c in columns))]


def split_of(group: str, seed: int, validation_share: float, test_share: float) -> str:
    """A group's split from a seeded hash: stable across runs, one split per group."""
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    if share < test_share:
        return "test"
    return "validation" if share < test_share + validation_share else "train"


def assign_splits(table: pa.Table, config: DatasetsConfig) -> pa.Table:
    splits = [split_of(g, config.seed, config.validation_share, config.test_share) for g in table.column(GROUP).to_pylist()]
    return table.append_column(SPLIT, pa.array(splits, pa.string()))


def _keep(table: pa.Table, mask: Sequence[bool]) -> tuple[pa.Table, int]:
    kept = table.filter(pa.array(list(mask), pa.bool_()))
    return kept, table.num_rows - kept.num_rows


def clean_rows(
    kind: str, table: pa.Table, tokenizer: Tokenizer, max_tokens: int, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Split, then filter: empty fields, PII, length, duplicates within and across splits.

    Returns the rows (with the private `_split` column), the rows dropped per step and
    the PII found per type (placeholders replaced it under the redact policy).
    """
    dropped: dict[str, int] = {}
    table = assign_splits(table, config)
    table, dropped["empty"] = _keep(table, [all(f.strip() for f in fields) for fields in row_fields(kind, table)])

    before = table.num_rows
    table, pii = apply_pii_policy(table, text_columns(kind, table), config.pii_policy)
    if QUERY in table.column_names:  # raft's question, its dedup text: cleaned the same way (not counted twice)
        table, _ = apply_pii_policy(table, [QUERY], "redact" if config.pii_policy == "flag" else config.pii_policy)
    dropped["pii"] = before - table.num_rows

    fields = row_fields(kind, table)
    counts = iter(tokenizer.count([f for row in fields for f in row]) if fields else [])
    table, dropped["too_long"] = _keep(table, [max(next(counts) for _ in row) <= max_tokens for row in fields])

    parts, exact, near = [], 0, 0
    for split in SPLITS:
        part, counts_ = drop_duplicates(table.filter(pc.field(SPLIT) == split), DEDUP_COLUMN[kind],
                                        config.near_duplicate_threshold, config.seed)
        parts.append(part)
        exact, near = exact + counts_["exact"], near + counts_["near"]
    table = pa.concat_tables(parts)
    dropped["duplicate_exact"], dropped["duplicate_near"] = exact, near

    marked = cross_group_near_duplicates(table.column(DEDUP_COLUMN[kind]).to_pylist(), table.column(SPLIT).to_pylist(),
                                         config.near_duplicate_threshold, config.seed)
    table, dropped["cross_split_duplicate"] = _keep(table, [not m for m in marked])
    return table, dropped, pii


def require_rows(kind: str, table: pa.Table, dropped: dict[str, int]) -> None:
    """A dataset with no rows is an error that says where they went, not an empty folder."""
    if table.num_rows == 0:
        steps = ", ".join(f"{step} {n}" for step, n in dropped.items() if n) or "nothing was generated"
        raise ValueError(f"no {kind} rows to write (dropped: {steps}); check the sources and [datasets] settings")


# -- checks: the kind's GX suite on a profile of the final rows ------------------------------------


def dataset_profile(kind: str, table: pa.Table, tokenizer: Tokenizer, config: DatasetsConfig) -> pd.DataFrame:
    """One row per dataset row: what the suite checks, recomputed from the rows themselves."""
    splits, groups = table.column(SPLIT).to_pylist(), table.column(GROUP).to_pylist()
    splits_of_group: dict[str, set[str]] = {}
    for group, split in zip(groups, splits):
        splits_of_group.setdefault(group, set()).add(split)
    queries = table.column(DEDUP_COLUMN[kind]).to_pylist()
    fields = row_fields(kind, table)
    counts = iter(tokenizer.count([f for row in fields for f in row]) if fields else [])
    flagged = table.column(FLAG_COLUMN).to_pylist() if FLAG_COLUMN in table.column_names else [False] * table.num_rows
    texts = _row_texts(kind, table)
    id_column = "id" if kind in ("sft", "raft") else "query_id"
    profile = {
        "row_id": table.column(id_column).to_pylist(),
        "doc_id": table.column("doc_id").to_pylist(),
        "source": table.column("source").to_pylist(),
        "split": splits,
        "group_splits": [len(splits_of_group[g]) for g in groups],
        "cross_split_duplicate": cross_group_near_duplicates(queries, splits, config.near_duplicate_threshold, config.seed),
        "min_field_chars": [min(len(f.strip()) for f in row) for row in fields],
        "max_field_tokens": [max(next(counts) for _ in row) for row in fields],
        "pii_remaining": [0 if flag else sum(count_pii(row).values()) for row, flag in zip(texts, flagged)],
    }
    if kind in ("sft", "raft"):
        profile["roles_valid"] = [
            [m["role"] for m in messages] == ["system", "user", "assistant"] and all(m["content"] for m in messages)
            for messages in table.column("messages").to_pylist()
        ]
    if kind == "reranker":
        profile["label"] = table.column("label").to_pylist()
    else:  # one row per query (pairs) or record (sft, raft)
        profile["row_key"] = [f"{s}\0{i}" for s, i in zip(profile["source"], profile["row_id"])]
    return pd.DataFrame(profile)


def _row_texts(kind: str, table: pa.Table) -> list[list[str]]:
    columns = text_columns(kind, table)
    values = [table.column(c).to_pylist() for c in columns]
    rows = []
    for row in zip(*values):
        texts = []
        for value in row:
            texts += [m["content"] for m in value] if isinstance(value, list) else [value]
        rows.append(texts)
    return rows


def suite_for(kind: str, expectations_dir: Path | None) -> dict[str, Any]:
    """The kind's suite: a user's copy in quality.expectations_dir if there is one, else the bundled one."""
    name = SUITES[kind]
    if expectations_dir is not None and (expectations_dir / f"{name}.json").is_file():
        return load_suite(name, expectations_dir)
    return load_suite(name, bundled_expectations_dir())


def check_rows(kind: str, profile: pd.DataFrame, max_tokens: int, expectations_dir: Path | None) -> dict[str, Any]:
    """Validate the profile with the kind's suite; raise QualityGateFailed on a blocking failure."""
    suite = suite_for(kind, expectations_dir)
    result: SuiteResult = validate_frame(open_context(None), suite, profile, {"max_tokens": max_tokens})
    names = {(e["type"], e["kwargs"].get("column")): e["meta"].get("check") for e in suite["expectations"]}
    summary = {
        "suite": result.name,
        "success": result.success,
        "expectations": [
            {"check": names.get((o.type, o.column)), **{k: v for k, v in o.as_dict().items() if k != "examples"},
             **({"examples": o.examples} if not o.success else {})}
            for o in result.expectations
        ],
    }
    if result.blocking_failures:
        raise QualityGateFailed(result.blocking_failures)
    return summary


# -- writing: data, card, manifest ------------------------------------------------------------


def final_splits(kind: str, table: pa.Table, negatives: int) -> dict[str, pa.Table]:
    """The written tables per split: contract columns (plus `pii_flagged` under the flag policy)."""
    schema = dataset_schema(kind, negatives)
    if FLAG_COLUMN in table.column_names:
        schema = schema.append(pa.field(FLAG_COLUMN, pa.bool_()))
    return {split: table.filter(pc.field(SPLIT) == split).select(schema.names).cast(schema) for split in SPLITS}


def config_hash(config: KbflowConfig, kind: str, source: str | None) -> str:
    """sha256 of what decides the rows: the datasets section, the model, the kind and source."""
    relevant = {
        "kind": kind,
        "source": source,
        "datasets": config.datasets.model_dump(mode="json", exclude={"out_dir"}),
        "embedding_model": config.embedding.model,
        "chunking": config.chunking.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def length_stats(kind: str, splits: dict[str, pa.Table], tokenizer: Tokenizer) -> dict[str, dict[str, dict]]:
    """Model tokens per field and split: {split: {field: {min, mean, max}}}."""
    stats: dict[str, dict[str, dict]] = {}
    for split, table in splits.items():
        if kind in ("sft", "raft"):
            messages = table.column("messages").to_pylist()
            columns = {role: [m[i]["content"] for m in messages] for i, role in ((1, "user"), (2, "assistant"))}
        else:
            names = ["anchor", "positive"] if kind == "embedding-pairs" else ["query", "passage"]
            columns = {name: table.column(name).to_pylist() for name in names}
        stats[split] = {
            name: {"min": min(counts), "mean": round(statistics.fmean(counts), 1), "max": max(counts)}
            for name, texts in columns.items()
            if texts and (counts := tokenizer.count(texts))
        }
    return stats


def describe_dataset(
    kind: str,
    name: str,
    splits: dict[str, pa.Table],
    *,
    config: KbflowConfig,
    source: str | None,
    index: dict[str, Any] | None,
    documents: dict[str, str],
    labeled_sources: list[str],
    dropped: dict[str, int],
    pii: dict[str, int],
    checks: dict[str, Any],
    tokenizer: Tokenizer,
) -> tuple[dict[str, Any], str]:
    """The manifest (lineage: index versions, run ids, config hash, seed, document hashes) and the card."""
    sources = sorted({s for table in splits.values() for s in table.column("source").to_pylist()})
    generators = list(dict.fromkeys(config.datasets.generators)) if kind in ("embedding-pairs", "reranker") else []
    manifest = {
        "kind": kind,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": config.datasets.seed,
        "config_hash": config_hash(config, kind, source),
        "index": index,
        "sources": sources,
        "labeled_sources": labeled_sources,
        "generators": generators,
        "rows": {split: table.num_rows for split, table in splits.items()},
        "dropped": dropped,
        "pii": pii,
        "pii_policy": config.datasets.pii_policy,
        "checks": {"suite": checks["suite"], "success": checks["success"]},
        "files": [split_file(split) for split in SPLITS if splits[split].num_rows],
        "documents": dict(sorted(documents.items())),
    }
    card = render_card(kind, name, manifest, length_stats(kind, splits, tokenizer), config, checks)
    return manifest, card


TRAINING = {
    "embedding-pairs": """\
```python
from datasets import load_dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.losses import MultipleNegativesRankingLoss

data = load_dataset("parquet", data_dir="{path}/data")
columns = ["anchor", "positive", {negatives}]  # the loss reads columns by position: drop lineage
train = data["train"].select_columns(columns)
model = SentenceTransformer("all-MiniLM-L6-v2")
trainer = SentenceTransformerTrainer(model=model, train_dataset=train,
                                     eval_dataset=data["validation"].select_columns(columns),
                                     loss=MultipleNegativesRankingLoss(model))
trainer.train()
```
Or `kbflow finetune --dataset {path}`.""",
    "reranker": """\
```python
from datasets import load_dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

data = load_dataset("parquet", data_dir="{path}/data")
train = data["train"].select_columns(["query", "passage", "label"])  # inputs by position, then the label
model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2", num_labels=1)
CrossEncoderTrainer(model=model, train_dataset=train, loss=BinaryCrossEntropyLoss(model)).train()
```""",
    "sft": """\
```python
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

data = load_dataset("parquet", data_dir="{path}/data")
train = data["train"].select_columns(["messages"])  # conversational; or ["prompt", "completion"]
SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=train, args=SFTConfig(output_dir="out")).train()
```""",
    "raft": """\
```python
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

data = load_dataset("parquet", data_dir="{path}/data")
train = data["train"].select_columns(["messages"])  # the user turn holds the context and the question
SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=train, args=SFTConfig(output_dir="out")).train()
```""",
}
DESCRIPTIONS = {
    "embedding-pairs": "Query–passage pairs with hard negatives for embedding fine-tuning (sentence-transformers "
                       "`anchor`/`positive`/`negative_*` format).",
    "reranker": "Query–passage pairs labeled 1 (the query's positive) or 0 (a hard negative) for cross-encoder training.",
    "sft": "Question–answer examples for supervised fine-tuning of an LLM (TRL `messages` and `prompt`/`completion`).",
    "raft": "Retrieval-augmented fine-tuning examples (RAFT, Zhang et al. 2024): the question with the oracle chunk "
            "and distractor chunks as context, the answer as target.",
}
LINEAGE = {
    "embedding-pairs": "`query_id`, `positive_chunk_id` (a chunk of the index: `kbflow trace`), `doc_id`, `source`, `generator`",
    "reranker": "`query_id` (shared with the embedding pairs), `chunk_id` (the positive's; null for negatives), `doc_id`, `source`",
    "sft": "`id` (`<source>:<record id>`), `doc_id` (the record), `source`",
    "raft": "`id`, `doc_id` (the record), `source`, `oracle_chunk_id`, `distractor_chunk_ids`, `has_oracle`",
}


def render_card(kind: str, name: str, manifest: dict, lengths: dict, config: KbflowConfig, checks: dict) -> str:
    """The dataset card (README.md): Hugging Face front matter, then what a trainer needs to know."""
    rows, index = manifest["rows"], manifest["index"] or {}
    negatives = ", ".join(f'"negative_{n}"' for n in range(1, config.datasets.negatives + 1))
    fields = sorted({f for split in lengths.values() for f in split})
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {split}\n    path: {split_file(split)}" for split in SPLITS if rows[split]],
        "---",
        "",
        f"# {name}",
        "",
        DESCRIPTIONS[kind],
        "Built by `kbflow dataset build`; rebuilt from the same index, config and seed it has the same rows.",
        "",
        "## Rows",
        "",
        "| split | rows | " + " | ".join(f"{f} tokens min / mean / max" for f in fields) + " |",
        "|---|---|" + "---|" * len(fields),
        *[
            f"| {split} | {rows[split]} | "
            + " | ".join(
                "{min} / {mean} / {max}".format(**lengths[split][f]) if f in lengths[split] else "–" for f in fields
            )
            + " |"
            for split in SPLITS
        ],
        "",
        f"Tokens are counted with the tokenizer of `{config.embedding.model}`. Splits are by document "
        "(a seeded hash of the document id), so no document feeds two splits.",
        "",
        "## Lineage",
        "",
        f"- columns: {LINEAGE[kind]}",
        f"- index: chunks table version {index.get('chunks_version')}, documents table version "
        f"{index.get('documents_version')}, model `{index.get('model')}`, written by runs "
        f"{', '.join(f'`{r}`' for r in index.get('run_ids', [])) or '–'}",
        f"- sources: {', '.join(manifest['sources']) or '–'}; generators: {', '.join(manifest['generators']) or '–'}",
        f"- config hash `{manifest['config_hash']}`, seed {manifest['seed']}; `manifest.json` has the details "
        "and each document's content hash, which `kbflow dataset check` compares with the index.",
        "",
        "## Hygiene",
        "",
        "| step | rows dropped |",
        "|---|---|",
        *[f"| {step.replace('_', ' ')} | {n} |" for step, n in manifest["dropped"].items()],
        "",
        f"PII policy `{manifest['pii_policy']}`; PII found per type: "
        + (", ".join(f"{t} {n}" for t, n in sorted(manifest["pii"].items())) or "none")
        + ". Placeholders such as `[EMAIL]` replace what was redacted.",
        "",
        f"Checks (GX suite `{checks['suite']}`, expectations/{checks['suite']}.json): "
        + ", ".join(f"{e['check'] or e['type']} {'✅' if e['success'] else '❌'}" for e in checks["expectations"]),
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config.datasets.model_dump(mode="json", exclude={"out_dir"}), indent=2, sort_keys=True),
        "```",
        "",
        "## Training",
        "",
        TRAINING[kind].replace("{path}", f"{name}").replace("{negatives}", negatives),
        "",
    ]
    return "\n".join(lines)


def write_dataset(splits: dict[str, pa.Table], target: Path, manifest: dict[str, Any], card: str) -> Path:
    """Write data/, README.md and manifest.json next to `target`, then swap the folder in.

    A crash before the swap leaves the previous dataset as it was (and a `.tmp-` folder
    the next build removes).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    checksums = {}
    for split, table in splits.items():
        if table.num_rows == 0:  # no file: datasets.load_dataset fails on a zero-row Parquet file
            continue
        path = staging / split_file(split)
        pq.write_table(table, path)
        checksums[split_file(split)] = hashlib.sha256(path.read_bytes()).hexdigest()
    (staging / "README.md").write_text(card, encoding="utf-8")
    (staging / "manifest.json").write_text(json.dumps({**manifest, "checksums": checksums}, indent=2) + "\n", encoding="utf-8")
    previous = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return target


# -- stale rows: `kbflow dataset check` ---------------------------------------------------------


def row_dependencies(kind: str, row: dict[str, Any]) -> list[str]:
    """The index chunks a row's text comes from."""
    if kind == "embedding-pairs":
        return [row["positive_chunk_id"]]
    if kind == "reranker":
        return [row["chunk_id"]] if row["chunk_id"] else []
    if kind == "raft":
        return [row["oracle_chunk_id"], *row["distractor_chunk_ids"]]
    return []


def find_stale_rows(dataset_dir: Path, config: KbflowConfig) -> dict[str, Any]:
    """Rows whose chunk or document was deleted, or whose document changed, since the build.

    Chunk ids are content-derived, so an edited passage is a deleted chunk. Documents are
    compared by the content hash the manifest recorded: index documents with the
    `documents` table, labeled records with their source as it is now.
    """
    dataset_dir = Path(dataset_dir)
    manifest_path = dataset_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{dataset_dir} is not a kbflow dataset (no manifest.json)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    kind = check_kind(manifest["kind"])
    store = Store(config.store)
    chunk_ids: set[str] = set()
    current: dict[str, str] = {}
    if store.has(CHUNKS):
        chunk_ids = set(store.table(CHUNKS).search().select(["chunk_id"]).limit(None).to_arrow().column("chunk_id").to_pylist())
    if store.has(DOCUMENTS_TABLE):
        documents = store.table(DOCUMENTS_TABLE).to_arrow()
        current.update(zip(documents.column("doc_id").to_pylist(), documents.column("content_hash").to_pylist()))
    if manifest.get("labeled_sources"):
        records, _ = read_labeled_records([config.source(name) for name in manifest["labeled_sources"]])
        current.update({record.doc_id: record.content_hash for record in records})
    recorded = manifest.get("documents", {})
    counts, examples = Counter(), []
    rows = 0
    for split in SPLITS:
        for row in read_split(dataset_dir, split).to_pylist():
            rows += 1
            doc_id = row["doc_id"]
            missing = [c for c in row_dependencies(kind, row) if c and c not in chunk_ids]
            if missing or doc_id not in current:
                reason = "deleted"
            elif recorded.get(doc_id) not in (None, current[doc_id]):
                reason = "changed"
            else:
                continue
            counts[reason] += 1
            if len(examples) < STALE_EXAMPLES:
                row_id = row.get("id") or row.get("query_id")
                examples.append({"split": split, "id": row_id, "doc_id": doc_id, "reason": reason,
                                 **({"missing_chunks": missing} if missing else {})})
    return {"stale": counts["deleted"] + counts["changed"], "rows": rows, "deleted": counts["deleted"],
            "changed": counts["changed"], "examples": examples}


# -- Prefect tasks ------------------------------------------------------------------------------


@task(name="read-index", cache_policy=NO_CACHE)
def read_index_task(store: Store, model: str) -> IndexSnapshot:
    """Pin the index at its current versions."""
    return read_index(store, model)


@task(name="generate-pairs", cache_policy=NO_CACHE)
def generate_pairs_task(
    passages: list[Passage], generators: list[QueryGenerator], seed: int
) -> tuple[list[GeneratedPair], dict[str, int]]:
    """Queries for the passages from every configured generator."""
    return generate_pairs(passages, generators, seed)


@task(name="mine-hard-negatives", cache_policy=NO_CACHE)
def mine_hard_negatives_task(
    pairs: list[GeneratedPair], index: IndexSnapshot, embedder: Embedder, negatives: int, margin: float
) -> tuple[pa.Table, dict[str, int]]:
    """Embedding-pair rows with hard negatives from other documents."""
    return mine_hard_negatives(pairs, index, embedder, negatives, margin)


@task(name="read-labeled-records", cache_policy=NO_CACHE)
def read_labeled_records_task(sources: list[SourceConfig]) -> tuple[list[LabeledRecord], dict[str, int]]:
    """Question/answer records of the labeled sources."""
    return read_labeled_records(sources)


@task(name="raft-rows", cache_policy=NO_CACHE)
def raft_rows_task(
    records: list[LabeledRecord], index: IndexSnapshot, embedder: Embedder, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int]]:
    """Question + oracle + distractors rows."""
    return raft_rows(records, index, embedder, config)


@task(name="clean-rows", cache_policy=NO_CACHE)
def clean_rows_task(
    kind: str, table: pa.Table, tokenizer: Tokenizer, max_tokens: int, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """Split by document and apply the hygiene steps."""
    return clean_rows(kind, table, tokenizer, max_tokens, config)


@task(name="check-dataset", cache_policy=NO_CACHE)
def check_dataset_task(
    kind: str, table: pa.Table, tokenizer: Tokenizer, max_tokens: int, config: KbflowConfig
) -> dict[str, Any]:
    """The kind's GX suite on the final rows; a blocking failure stops the build."""
    profile = dataset_profile(kind, table, tokenizer, config.datasets)
    return check_rows(kind, profile, max_tokens, config.quality.expectations_dir)


@task(name="write-dataset", cache_policy=NO_CACHE)
def write_dataset_task(splits: dict[str, pa.Table], target: Path, manifest: dict[str, Any], card: str) -> Path:
    """Swap the new dataset folder into place."""
    return write_dataset(splits, target, manifest, card)
