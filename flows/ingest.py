"""The `ingest` flow: sources to a checked, searchable LanceDB index, incrementally.

    discover -> diff vs documents -> boilerplate of each source (its documents' repeated lines)
             -> per batch of documents: parse -> strip boilerplate -> DQ(documents) -> chunk
             -> DQ(chunks) -> embed (new text only) -> DQ(embeddings) -> staging
             -> DQ(run, over all batches) -> publish (one commit, streamed from the staging) -> run record

What is loaded: every document of the configured sources (or of one). How
incrementally: a document whose content hash matches the `documents` table is not
parsed, chunked or embedded again; a changed document re-embeds only chunks
whose text is new for the model; a deleted document's chunks are removed. A run
with no change writes nothing but its run record. A sql source with a cursor_field
reads only rows past the last run's cursor, plus their keys. An unchanged document is parsed
again only when the boilerplate of its source changed for one of its lines
(kbflow.tasks.index.boilerplate).

Memory is bounded: documents go through parse, chunk and embed in batches
(`[ingest]`), embedded chunks are spilled to a staging table, and the publish
streams them into one commit. With `runner = dask | ray` the batches' parse,
chunk and embed tasks run on the cluster's workers, several at a time; the
quality gates, the staging and the publish stay here.
"""

from __future__ import annotations

import pyarrow as pa
from prefect import flow

from kbflow import progress
from kbflow.config import load_config
from kbflow.lock import store_lock
from kbflow.models import load_embedder
from kbflow.runners import ConfiguredEmbedder, document_batches, in_flight, run_pipelines, task_runner
from kbflow.runs import RunRecord
from kbflow.schemas import DOCUMENTS
from kbflow.store import Store
from kbflow.tasks.index.boilerplate import find_source_boilerplate, save_line_hashes, strip_boilerplate
from kbflow.tasks.index.chunk import chunk
from kbflow.tasks.sources.discover import diff_against_documents, discover, empty_sources
from kbflow.tasks.index.embed import embed
from kbflow.tasks.sources.read import parse
from kbflow.tasks.index.publish import StagedChunks, build_document_rows, publish
from kbflow.tasks.quality.profiles import ChunkTally, run_profile
from kbflow.tasks.quality.suites import QualityGate, check_quality, check_run
from kbflow.tasks.sources.sql_cursor import save_cursors


@flow(name="ingest")
def ingest(
    config_path: str,
    source: str | None = None,
    allow_mass_delete: bool = False,
    store_uri: str | None = None,
    runner: str | None = None,
) -> dict:
    """Ingest all sources of the config at `config_path` (or only `source`); return the run report.

    Raises QualityGateFailed, with nothing published, when a blocking check fails;
    `allow_mass_delete` lets a source lose more documents than `quality.max_deleted_share`;
    `store_uri` writes to another store than the config's (reindex builds its staging store so);
    `runner` ("default", "dask[=ADDRESS]", "ray[=ADDRESS]") overrides the config's `[runner]`.
    """
    config = load_config(config_path)
    if store_uri is not None:
        config.store.uri = store_uri
    runner_config = config.runner.with_option(runner)
    sources = config.select_sources(source)
    store = Store(config.store)

    with (
        store_lock(config),
        RunRecord(store, flow="ingest", source=source, model=config.embedding.model) as run,
        QualityGate(config.quality, run, allow_mass_delete) as gate,
    ):
        store.check_model(config.embedding.model)
        known_documents = store.documents([s.name for s in sources])
        discovery = discover(sources, config.quality.max_file_bytes, known_documents, store)
        run.quarantine(discovery.quarantined)
        run.warnings.extend(empty_sources(sources, discovery))
        run.set_aside_duplicates(discovery.duplicates)
        changes = diff_against_documents(discovery, known_documents)
        store.record_change_tokens(changes.moved_tokens)  # same bytes, new ETag: no re-read next time
        run.documents.update(changes.counts)
        run.lap("discover")
        if changes.to_parse.num_rows == 0 and changes.deleted.num_rows == 0:
            run.status = "no_change"
            run.chunks["total"] = store.count("chunks")
            save_cursors(store, discovery.cursors, run.run_id)  # rows read past the cursor changed nothing
            return run.report()

        # Counted over every current document of each source before any batch (counted in "parse").
        boilerplate = find_source_boilerplate(store, discovery.items, changes, sources, config.chunking,
                                              config.ingest.batch_documents)
        to_parse = pa.concat_tables([changes.to_parse, boilerplate.rechunk])
        progress.report("documents", 0, to_parse.num_rows)  # the overall bar shows before the model loads
        embedder = load_embedder(config.embedding)
        max_tokens = min(config.chunking.max_tokens or embedder.max_tokens, embedder.max_tokens)
        # On Dask or Ray workers the model is loaded there, from the config, never shipped.
        model = embedder if runner_config.kind == "default" else ConfiguredEmbedder(config.embedding)

        def ingest_batch(items: pa.Table):
            """One batch of documents, gated after each stage; returns its `documents` rows."""
            documents, unparsed = yield parse, {"items": items, "sources": sources}
            documents = yield strip_boilerplate, {"documents": documents, "lines": boilerplate.lines}
            set_aside = run.quarantine(unparsed)
            documents, bad_documents = check_quality(gate, "documents", documents)
            set_aside |= run.quarantine(bad_documents)
            run.set_aside_whole(items, set_aside)
            run.lap("parse")

            chunks = yield chunk, {"documents": documents, "tokenizer": model.tokenizer,
                                   "max_tokens": max_tokens, "overlap": config.chunking.overlap_tokens,
                                   "min_section_tokens": config.chunking.min_section_tokens}
            chunks, bad_chunks = check_quality(gate, "chunks", chunks, {"max_tokens": max_tokens}, embedder.tokenizer)
            run.quarantine(bad_chunks)
            run.lap("chunk")

            hashes = chunks.column("text_hash").to_pylist()
            # The staging first: a text an earlier batch embedded or reused needs no scan of the store.
            cached = staged.cached_vectors(embedder.name, hashes)
            cached |= store.cached_vectors(embedder.name, [h for h in hashes if h not in cached])
            embedded = yield embed, {"chunks": chunks, "embedder": model, "cached": cached}
            chunks, bad_vectors = check_quality(gate, "embeddings", embedded.chunks, {"dim": embedder.dim})
            run.quarantine(bad_vectors)
            staged.add(chunks)
            run_chunks.add(chunks)
            run.chunks["embedded"] += embedded.embedded
            run.chunks["reused"] += embedded.reused
            run.lap("embed")
            return build_document_rows(items, documents, chunks, set_aside, known_documents, run.run_id)

        document_parts, replaced, done = [DOCUMENTS.empty_table()], [], 0
        run_chunks = ChunkTally()  # the run-level checks see every batch's chunks
        with StagedChunks(config.store, run.run_id, embedder.dim) as staged:
            batches = document_batches(to_parse, config.ingest.batch_documents, config.ingest.batch_bytes)
            with task_runner(runner_config) as workers:
                pipelines = (ingest_batch(items) for items in batches)
                for document_rows, batch_replaced in run_pipelines(workers, pipelines, in_flight(runner_config)):
                    document_parts.append(document_rows)
                    replaced += batch_replaced
                    done += document_rows.num_rows
                    progress.report("documents", done, to_parse.num_rows)

            check_run(gate, run_profile(known_documents, changes, run.quarantined, run_chunks))
            deleted = changes.deleted.column("doc_id").to_pylist()
            published = publish(store, staged, pa.concat_tables(document_parts), replaced + deleted)
            save_line_hashes(store, boilerplate)  # after the publish: a blocked run keeps the old state
            save_cursors(store, discovery.cursors, run.run_id)  # likewise: sql sources read past them next time
            run.lap("publish")

        run.status = "published"
        run.versions.update(chunks=published.chunks_version, documents=published.documents_version)
        run.chunks.update(deleted=published.chunks_deleted, total=store.count("chunks"))
        return run.report()
