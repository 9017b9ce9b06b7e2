"""Dataset rows from the index: a pinned snapshot, its passages, hard negatives, reranker rows.

A dataset is built in stages, one module each (`kbflow.flows.build_dataset` wires them):
- tasks/datasets/kinds.py: the four kinds as data (schema, columns, suite, card text, inputs);
- this module: the index snapshot every row is built from, embedding pairs with hard
  negatives mined from it, and reranker rows derived from the cleaned pairs;
- tasks/datasets/generators.py: the queries (heading, ict, llm) the pairs start from;
- tasks/datasets/negatives.py: what a hard negative must not be (the anchor, another answer, navigation);
- tasks/datasets/labeled.py: sft and raft rows, and `labeled` pairs, from labeled question/answer records;
- tasks/datasets/hygiene.py: splits by document, empty fields, PII, length, duplicates;
- tasks/datasets/checks.py: the kind's GX suite on a profile of the final rows;
- tasks/datasets/card.py: manifest.json (lineage), the README.md card, the atomic write;
- tasks/datasets/staleness.py: rows gone stale since the build (`kbflow dataset check`).

Rows carry private working columns until they are written: the split (`_split`), the
group that decides it (`_group`, a document id) and, for raft, the text dedup compares
(`_query`). Same inputs and seed give the same rows in the same order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from kbflow.config import DatasetsConfig
from kbflow.models import Embedder
from kbflow.schemas import dataset_schema, vector_matrix
from kbflow.search import vector_hits
from kbflow.store import CHUNKS, DOCUMENTS_TABLE, RowFilter, Store
from kbflow.tasks.index.chunk import MAX_HEADING_CHARS
from kbflow.tasks.quality.content import is_navigation_only
from kbflow.tasks.datasets.pairs import GeneratedPair, Passage
from kbflow.tasks.datasets.negatives import NEGATIVE_PROBLEMS, LexicalScorer, negative_problem
from kbflow.tasks.datasets.pii import FLAG_COLUMN

# Working columns, never written: the split, the group that decides it, the text dedup compares.
SPLIT, GROUP, QUERY = "_split", "_group", "_query"
NEGATIVE_POOL = 16  # candidates searched per query beyond the negatives wanted (margin and text filters)
CHUNK_COLUMNS = ["chunk_id", "doc_id", "source", "uri", "tenant", "ordinal", "heading", "text", "run_id"]
HIT_COLUMNS = ["chunk_id", "doc_id", "tenant", "heading", "text"]


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:16]


def with_private(schema: pa.Schema, split: bool = False, query: bool = False) -> pa.Schema:
    """The kind's schema plus the build's private columns (dropped before writing)."""
    extra = [(SPLIT, pa.string())] if split else []
    extra += [(GROUP, pa.string())] + ([(QUERY, pa.string())] if query else [])
    return pa.schema([*schema, *extra])


# -- the index: one consistent snapshot ---------------------------------------------------------


@dataclass
class IndexSnapshot:
    """The chunks and documents tables at one version each: everything rows are built from."""

    store: Store  # queried at `versions["chunks_version"]`
    chunks: pa.Table  # chunk_id, doc_id, source, uri, tenant, ordinal, heading, text, run_id
    vectors: np.ndarray  # one row per chunk, same order
    documents: pa.Table  # doc_id, source, uri, content_hash, tenant, title
    versions: dict[str, Any]  # chunks_version, documents_version, model, run_ids
    visible: RowFilter | None = None  # what the build may see (kbflow.access): every search keeps to it
    _position: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._position = {chunk_id: i for i, chunk_id in enumerate(self.chunks.column("chunk_id").to_pylist())}

    def chunk(self, chunk_id: str) -> dict[str, Any]:
        return self.chunks.slice(self._position[chunk_id], 1).to_pylist()[0]

    def vector(self, chunk_id: str) -> np.ndarray:
        return self.vectors[self._position[chunk_id]]

    def content_hashes(self) -> dict[str, str]:
        return dict(zip(self.documents.column("doc_id").to_pylist(), self.documents.column("content_hash").to_pylist()))

    def search(self, vector: np.ndarray, rows: RowFilter | None, limit: int) -> list[dict[str, Any]]:
        """Nearest chunks by cosine (`score`), filtered inside LanceDB first; ties by chunk_id.

        The same vector query as `kbflow search` (`vector_hits`: ANN-tuned past
        `vector_index_min_rows`), at the snapshot's chunks version.
        """
        if self.visible is not None:
            rows = replace(rows or RowFilter(), principals=self.visible.principals)
        hits = vector_hits(self.store, vector, limit, rows, HIT_COLUMNS, self.versions["chunks_version"])
        return sorted(hits, key=lambda hit: (-round(hit["score"], 6), hit["chunk_id"]))


def read_index(store: Store, model: str, visible: RowFilter | None = None) -> IndexSnapshot:
    """The index as it is now, pinned to its current versions (a concurrent ingest changes nothing here);
    only the chunks and documents that `visible` keeps (kbflow.access: a build's principals)."""
    store.check_model(model)
    version = store.version(CHUNKS)
    everything = store.chunks([*CHUNK_COLUMNS, "vector"], visible, version=version)
    order = pc.sort_indices(everything, [("doc_id", "ascending"), ("ordinal", "ascending"), ("chunk_id", "ascending")])
    everything = everything.take(order)
    vectors = vector_matrix(everything.column("vector"))
    documents = store.documents(rows=visible).select(["doc_id", "source", "uri", "content_hash", "tenant", "title"])
    versions = {
        "chunks_version": version,
        "documents_version": store.version(DOCUMENTS_TABLE),
        "model": store.index_model(),
        "run_ids": sorted(set(everything.column("run_id").to_pylist())),  # the runs that wrote these chunks
        "last_published_run": next((run["run_id"] for run in store.published_runs()), None),
    }
    return IndexSnapshot(store, everything.select(CHUNK_COLUMNS), vectors, documents, versions, visible)


def strip_heading(text: str, heading: str | None) -> str:
    """A chunk's text without the heading line chunking put first."""
    prefix = f"{(heading or '')[:MAX_HEADING_CHARS]}\n"
    return text[len(prefix):] if heading and text.startswith(prefix) else text


def read_passages(index: IndexSnapshot, source: str | None = None) -> list[Passage]:
    """The index's chunks as passages (heading split off, the document's title), in document order;
    one source or all."""
    titles = dict(zip(index.documents.column("doc_id").to_pylist(), index.documents.column("title").to_pylist()))
    return [
        Passage(row["chunk_id"], row["doc_id"], row["source"], row["heading"] or "",
                strip_heading(row["text"], row["heading"]), titles.get(row["doc_id"]) or "")
        for row in index.chunks.to_pylist()
        if source is None or row["source"] == source
    ]


def lexical_scorer(index: IndexSnapshot) -> LexicalScorer:
    """BM25 with the term statistics of the index's chunks (headings split off, as passages are)."""
    return LexicalScorer(strip_heading(row["text"], row["heading"])
                         for row in index.chunks.select(["text", "heading"]).to_pylist())



# -- embedding pairs with hard negatives, and reranker pairs -------------------------------------


def mine_hard_negatives(
    pairs: list[GeneratedPair], index: IndexSnapshot, embedder: Embedder, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int]]:
    """Embedding-pair rows: each pair with its top `config.negatives` hard negatives from the index.

    Candidates are the query's nearest chunks of OTHER documents of the positive's tenant
    (a row never mixes tenants' text), never a document the pair names as another answer.
    Skipped, before negatives are chosen: a candidate scoring within `negative_margin`
    of the positive chunk's own score, or with the positive's text (a near-duplicate or
    another right answer), and each candidate `negative_problem` rejects (navigation, the
    anchor in it, a lexical match of the anchor as good as the positive's: counted per
    reason). A pair whose positive is navigation only is dropped (`positive_navigation`),
    and so is a pair left with fewer than `negatives` (`too_few_negatives`): every row has
    the same columns, filled with real hard negatives.
    """
    from kbflow import progress

    negatives = config.negatives
    scorer = lexical_scorer(index) if pairs and negatives else None
    dropped = dict.fromkeys(["positive_navigation", "too_few_negatives", *NEGATIVE_PROBLEMS], 0)
    kept = [pair for pair in pairs if not is_navigation_only(pair.positive)]
    dropped["positive_navigation"] = len(pairs) - len(kept)
    vectors = progress.encode(embedder, [pair.query for pair in kept], "encoding queries") if negatives else None
    rows = []
    for i, pair in enumerate(progress.counted(kept, "mining negatives", len(kept))):
        chunk = index.chunk(pair.chunk_id)
        mined: list[str] = []
        if negatives:
            floor = float(vectors[i] @ index.vector(pair.chunk_id)) - config.negative_margin
            others = RowFilter(exclude_doc_ids=[chunk["doc_id"], *pair.other_answers], tenant=chunk["tenant"])
            positive = " ".join(pair.positive.split())
            for hit in index.search(vectors[i], others, negatives + NEGATIVE_POOL):
                text = strip_heading(hit["text"], hit["heading"]).strip()
                if hit["score"] >= floor or not text or " ".join(text.split()) == positive or text in mined:
                    continue
                problem = negative_problem(pair.query, pair.positive, text, scorer, config.answer_overlap_ratio)
                if problem:
                    dropped[problem] += 1
                    continue
                mined.append(text)
                if len(mined) == negatives:
                    break
        if len(mined) < negatives:
            dropped["too_few_negatives"] += 1
            continue
        rows.append(
            {
                "anchor": pair.query,
                "positive": pair.positive,
                **{f"negative_{n}": text for n, text in enumerate(mined, start=1)},
                "query_id": short_hash(pair.generator, pair.chunk_id, pair.query),
                "positive_chunk_id": pair.chunk_id,
                "doc_id": chunk["doc_id"],
                "source": chunk["source"],
                "generator": pair.generator,
                GROUP: chunk["doc_id"],
            }
        )
    schema = with_private(dataset_schema("embedding-pairs", negatives))
    return pa.Table.from_pylist(rows, schema=schema), dropped


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
    schema = with_private(dataset_schema("reranker"), split=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    if extra:  # flag policy: a pair's flag holds for all its rows
        flags = [flag for flag in pairs.column(FLAG_COLUMN).to_pylist() for _ in range(1 + negatives)]
        table = table.append_column(FLAG_COLUMN, pa.array(flags, pa.bool_()))
    return table



# -- Prefect tasks ------------------------------------------------------------------------------


@task(name="read-index", cache_policy=NO_CACHE)
def read_index_task(store: Store, model: str, visible: RowFilter | None = None) -> IndexSnapshot:
    """Pin the index at its current versions (what `visible` keeps of it)."""
    return read_index(store, model, visible)


@task(name="mine-hard-negatives", cache_policy=NO_CACHE)
def mine_hard_negatives_task(
    pairs: list[GeneratedPair], index: IndexSnapshot, embedder: Embedder, config: DatasetsConfig
) -> tuple[pa.Table, dict[str, int]]:
    """Embedding-pair rows with hard negatives from other documents."""
    return mine_hard_negatives(pairs, index, embedder, config)
