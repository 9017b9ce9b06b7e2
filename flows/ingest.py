"""The `ingest` flow: sources to a checked, searchable LanceDB index, incrementally.

    discover -> diff vs manifest -> parse -> DQ(documents) -> chunk -> DQ(chunks)
             -> embed (new text only) -> DQ(embeddings) -> DQ(run) -> publish -> run record

What is loaded: every document of the configured sources (or of one). How
incrementally: a document whose content hash matches the manifest is not
parsed, chunked or embedded again; a changed document re-embeds only chunks
whose text is new for the model; a deleted document's chunks are removed. A run
with no change writes nothing but its run record.
"""

from __future__ import annotations

from prefect import flow

from kbflow.config import load_config
from kbflow.lock import store_lock
from kbflow.models import load_embedder
from kbflow.runs import RunRecord
from kbflow.store import Store
from tasks.chunk import chunk
from tasks.discover import diff_against_manifest, discover
from tasks.embed import embed
from tasks.parse import parse
from tasks.publish import build_manifest, publish
from tasks.quality import QualityGate, check_quality, check_run, run_profile


@flow(name="ingest")
def ingest(
    config_path: str, source: str | None = None, allow_mass_delete: bool = False, store_uri: str | None = None
) -> dict:
    """Ingest all sources of the config at `config_path` (or only `source`); return the run report.

    Raises QualityGateFailed, with nothing published, when a blocking check fails;
    `allow_mass_delete` lets a source lose more documents than `quality.max_deleted_share`;
    `store_uri` writes to another store than the config's (reindex builds its staging store so).
    """
    config = load_config(config_path)
    if store_uri is not None:
        config.store.uri = store_uri
    sources = config.select_sources(source)
    store = Store(config.store)

    with (
        store_lock(config),
        RunRecord(store, flow="ingest", source=source, model=config.embedding.model) as run,
        QualityGate(config.quality, run, allow_mass_delete) as gate,
    ):
        store.check_model(config.embedding.model)
        discovery = discover(sources, config.quality.max_file_bytes)
        run.quarantine(discovery.quarantined)
        manifest = store.manifest([s.name for s in sources])
        changes = diff_against_manifest(discovery, manifest)
        run.documents.update(changes.counts)
        run.lap("discover")
        if changes.to_parse.num_rows == 0 and changes.deleted.num_rows == 0:
            run.status = "no_change"
            run.chunks["total"] = store.count("chunks")
            return run.report()

        documents, unparsed = parse(changes.to_parse, sources)
        set_aside = run.quarantine(unparsed)
        documents, bad_documents = check_quality(gate, "documents", documents)
        set_aside |= run.quarantine(bad_documents)
        run.lap("parse")

        embedder = load_embedder(config.embedding)
        max_tokens = min(config.chunking.max_tokens or embedder.max_tokens, embedder.max_tokens)
        chunks = chunk(documents, embedder.tokenizer, max_tokens, config.chunking.overlap_tokens)
        chunks, bad_chunks = check_quality(gate, "chunks", chunks, {"max_tokens": max_tokens})
        run.quarantine(bad_chunks)
        run.lap("chunk")

        cached = store.cached_vectors(embedder.name, chunks.column("text_hash").to_pylist())
        embedded = embed(chunks, embedder, cached)
        chunks, bad_vectors = check_quality(gate, "embeddings", embedded.chunks, {"dim": embedder.dim})
        run.quarantine(bad_vectors)
        run.lap("embed")

        check_run(gate, run_profile(manifest, changes, run.quarantined))
        manifest_rows, replaced = build_manifest(changes.to_parse, documents, chunks, set_aside, manifest, run.run_id)
        deleted = changes.deleted.column("doc_id").to_pylist()
        published = publish(store, run.run_id, chunks, manifest_rows, replaced + deleted)
        run.lap("publish")

        run.status = "published"
        run.versions.update(chunks=published.chunks_version, documents=published.documents_version)
        run.chunks.update(
            embedded=embedded.embedded,
            reused=embedded.reused,
            deleted=published.chunks_deleted,
            total=store.count("chunks"),
        )
        return run.report()
