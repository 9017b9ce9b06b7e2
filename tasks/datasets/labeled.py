"""Dataset rows from labeled question/answer records: `sft`, `raft`, and `labeled` embedding pairs.

A labeled source is a records source with `question_field` and `answer_field` (and
optionally `relevant_field`: the documents that answer it, by doc id, uri or file name).
Records are read with discovery's ids and content hashes, so `kbflow dataset check`
can tell when one changed. Both kinds take the same inputs (records, the index snapshot
when there is one, the embedder, the settings): the kind's record names which one builds its rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow import progress
from kbflow.config import DatasetsConfig, KbflowConfig
from kbflow.errors import ConfigError
from kbflow.sources.base import Source
from kbflow.models import Embedder
from kbflow.relevance import hit_keys
from kbflow.schemas import dataset_schema
from kbflow.store import sql_list, sql_string
from kbflow.tasks.datasets.snapshot import GROUP, QUERY, IndexSnapshot, strip_heading, with_private
from kbflow.tasks.datasets.pairs import GeneratedPair



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


def labeled_sources(config: KbflowConfig, name: str | None) -> list[Source]:
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


def read_labeled_records(sources: list[Source]) -> tuple[list[LabeledRecord], dict[str, int]]:
    """The question/answer records of labeled sources (discovery's ids and hashes), in source/uri order."""
    records, bad = [], 0
    for source in sources:
        discovery, row_of = source.labeled_rows()
        bad += len(discovery.quarantined)
        for item in discovery.items.to_pylist():
            record_id = item["uri"].split("#", 1)[1]
            row = row_of(item)
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


def content_hashes(records: list[LabeledRecord]) -> dict[str, str]:
    """Each record's content hash by doc id: what the manifest records for `kbflow dataset check`."""
    return {record.doc_id: record.content_hash for record in records}


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


def nearest_chunk(index: IndexSnapshot, vector: np.ndarray, doc_ids: list[str] | None) -> dict[str, Any] | None:
    """The chunk of `doc_ids` (of the whole index when None) nearest to a question's vector: the one
    that answers it (RAFT's oracle, a labeled pair's positive); None when those documents have no chunk."""
    where = f"doc_id IN ({sql_list(doc_ids)})" if doc_ids else None
    return next(iter(index.search(vector, where, 1)), None)


def labeled_pairs(
    records: list[LabeledRecord], index: IndexSnapshot, embedder: Embedder
) -> tuple[list[GeneratedPair], dict[str, int]]:
    """Embedding pairs from labeled records: the real question as the anchor, the chunk that answers
    it as the positive (generator `labeled`).

    The positive is the nearest chunk to the question of the record's relevant documents,
    or of the record's own document when it is indexed (a records source whose text is the
    answer). A record with neither is skipped (`labeled_no_positive`): unlike RAFT's oracle,
    the whole index's nearest chunk is not used, since training on the model's own top hit
    teaches it nothing. Its other relevant documents are never its negatives' documents.
    """
    lookup = relevant_lookup(index.documents)
    indexed = set(index.documents.column("doc_id").to_pylist())
    answerable = []
    for record in records:
        relevant = resolve_relevant(record.relevant, lookup) or ([record.doc_id] if record.doc_id in indexed else [])
        if record.question and relevant:
            answerable.append((record, relevant))
    vectors = progress.encode(embedder, [record.question for record, _ in answerable], "encoding questions")
    pairs = []
    for (record, relevant), vector in zip(progress.counted(answerable, "labeled pairs", len(answerable)), vectors):
        chunk = nearest_chunk(index, vector, relevant)
        if chunk is None:
            continue
        positive = strip_heading(chunk["text"], chunk["heading"]).strip()
        others = tuple(doc_id for doc_id in relevant if doc_id != chunk["doc_id"])
        pairs.append(GeneratedPair(record.question, positive, chunk["chunk_id"], "labeled", others))
    return pairs, {"labeled_no_positive": len(records) - len(pairs)}


def _messages(system: str, user: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user},
            {"role": "assistant", "content": answer}]


def sft_rows(
    records: list[LabeledRecord], index: IndexSnapshot | None, embedder: Embedder, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int]]:
    """SFT rows: messages and prompt/completion; none dropped here (the embedder is not needed).

    Split group: the record's first relevant document found in the index, else the record.
    """
    rows, lookup = [], relevant_lookup(index.documents if index else None)
    for record in records:
        relevant = resolve_relevant(record.relevant, lookup)
        rows.append(
            {
                "messages": _messages(config.system_prompt, record.question, record.answer),
                "prompt": record.question,
                "completion": record.answer,
                "id": record.id,
                "doc_id": record.doc_id,
                "source": record.source,
                GROUP: relevant[0] if relevant else record.doc_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=with_private(dataset_schema("sft"))), {}


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
    vectors = progress.encode(embedder, [record.question for record in records], "encoding questions")
    rows, no_oracle, lookup = [], 0, relevant_lookup(index.documents)
    for record, vector in zip(progress.counted(records, "raft rows", len(records)), vectors):
        relevant = resolve_relevant(record.relevant, lookup)
        oracle = nearest_chunk(index, vector, relevant or None)
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
    return pa.Table.from_pylist(rows, schema=with_private(dataset_schema("raft"), query=True)), {"no_oracle": no_oracle}



# -- Prefect tasks ------------------------------------------------------------------------------


@task(name="read-labeled-records", cache_policy=NO_CACHE)
def read_labeled_records_task(sources: list[Source]) -> tuple[list[LabeledRecord], dict[str, int]]:
    """Question/answer records of the labeled sources."""
    return read_labeled_records(sources)


@task(name="labeled-pairs", cache_policy=NO_CACHE)
def labeled_pairs_task(
    records: list[LabeledRecord], index: IndexSnapshot, embedder: Embedder
) -> tuple[list[GeneratedPair], dict[str, int]]:
    """Embedding pairs from the real questions of labeled sources."""
    return labeled_pairs(records, index, embedder)
