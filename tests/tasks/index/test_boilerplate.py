"""Boilerplate found across a source's documents: deterministic, batch-size independent, incremental."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from kbflow.config import ChunkingConfig, StoreConfig, source_config
from kbflow.sources.base import Source
from kbflow.schemas import DOCUMENTS, LINE_HASHES
from kbflow.store import Store
from kbflow.tasks.index.boilerplate import (
    LINE_HASHES_TABLE, Boilerplate, find_boilerplate, line_hash, remove_boilerplate, save_line_hashes,
    stored_line_hashes,
)
from kbflow.tasks.index.chunk import chunk_documents
from kbflow.tasks.sources.discover import diff_against_documents, discover_source
from kbflow.tasks.sources.read import parse_documents

from fakes import WhitespaceTokenizer

FOOTER = "Edit this page on GitHub. Licensed under CC BY 4.0."
CHUNKING = ChunkingConfig(boilerplate_min_share=0.5, boilerplate_min_documents=3)


def write_source(root: Path, n: int, footer_in: int) -> Source:
    root.mkdir(exist_ok=True)
    for i in range(n):
        footer = f"\n\n{FOOTER}\n" if i < footer_in else "\n"
        (root / f"page{i:02d}.md").write_text(f"# Page {i}\n\nTopic {i} is explained here in detail.\n\n}}{footer}")
    return source_config(name="docs", kind="files", path=root)


def run(source: Source, previous: pa.Table, known: pa.Table = DOCUMENTS.empty_table(), batch: int = 200):
    """One boilerplate pass as the ingest flow does it; returns it and the chunks of what it parsed."""
    discovery = discover_source(source, 10**7)
    changes = diff_against_documents(discovery, known)
    boilerplate = find_boilerplate(discovery.items, changes, previous, [source], CHUNKING, batch)
    to_parse = pa.concat_tables([changes.to_parse, boilerplate.rechunk])
    documents, _ = parse_documents(to_parse, [source])
    documents = remove_boilerplate(documents, boilerplate.lines)
    return discovery, boilerplate, documents, chunk_documents(documents, WhitespaceTokenizer(), 64, 4)


def documents_of(discovery) -> pa.Table:
    rows = [{**row, "status": "active"} for row in discovery.items.to_pylist()]
    return pa.Table.from_pylist([{name: row.get(name) for name in DOCUMENTS.names} for row in rows], schema=DOCUMENTS)


def test_lines_repeated_across_most_documents_are_removed_and_the_share_recorded(tmp_path):
    source = write_source(tmp_path / "docs", n=6, footer_in=5)
    _, boilerplate, documents, chunks = run(source, LINE_HASHES.empty_table())
    assert boilerplate.lines["docs"] == {line_hash(FOOTER)}
    assert not any(FOOTER in text for text in documents.column("text").to_pylist())
    assert not any(FOOTER in text for text in chunks.column("text").to_pylist())
    assert all("explained here in detail" in text for text in documents.column("text").to_pylist())
    assert all("}" in text for text in documents.column("text").to_pylist())  # code-like lines never count
    shares = dict(zip(documents.column("uri").to_pylist(), documents.column("boilerplate_share").to_pylist()))
    assert shares["page05.md"] == 0 and all(0 < shares[f"page0{i}.md"] < 1 for i in range(5))


def test_a_line_in_too_few_documents_is_kept(tmp_path):
    source = write_source(tmp_path / "docs", n=6, footer_in=2)
    _, boilerplate, documents, _ = run(source, LINE_HASHES.empty_table())
    assert boilerplate.lines["docs"] == frozenset()
    assert sum(FOOTER in text for text in documents.column("text").to_pylist()) == 2


def test_the_set_and_state_do_not_depend_on_the_batch_size(tmp_path):
    source = write_source(tmp_path / "docs", n=7, footer_in=4)
    results = [run(source, LINE_HASHES.empty_table(), batch=batch) for batch in (1, 3, 100)]
    assert len({boilerplate.lines["docs"] for _, boilerplate, _, _ in results}) == 1
    assert results[0][1].lines["docs"]  # 4 of 7 documents: boilerplate
    assert all(r[1].state.equals(results[0][1].state) for r in results)
    assert all(r[3].column("chunk_id").equals(results[0][3].column("chunk_id")) for r in results)


def test_unchanged_documents_keep_chunk_ids_while_the_set_holds(tmp_path):
    source = write_source(tmp_path / "docs", n=6, footer_in=5)
    discovery, first, _, first_chunks = run(source, LINE_HASHES.empty_table())
    (tmp_path / "docs/page01.md").write_text(f"# Page 1\n\nRewritten topic.\n\n{FOOTER}\n")
    _, second, documents, chunks = run(source, first.state, documents_of(discovery))
    assert second.lines == first.lines and second.rechunk.num_rows == 0
    assert documents.column("uri").to_pylist() == ["page01.md"]  # only the edited page was parsed
    assert FOOTER not in chunks.column("text").to_pylist()[0]


def test_a_changed_set_rechunks_the_unchanged_documents_it_touches(tmp_path):
    source = write_source(tmp_path / "docs", n=6, footer_in=3)  # 3 of 6: boilerplate
    discovery, first, _, _ = run(source, LINE_HASHES.empty_table())
    assert first.lines["docs"] == {line_hash(FOOTER)}
    for i in range(6, 12):  # six new pages without the footer: 3 of 12 is no longer boilerplate
        (tmp_path / f"docs/page{i:02d}.md").write_text(f"# Page {i}\n\nAnother topic {i}.\n")
    _, second, documents, _ = run(source, first.state, documents_of(discovery))
    assert second.lines["docs"] == frozenset()
    assert sorted(second.rechunk.column("uri").to_pylist()) == ["page00.md", "page01.md", "page02.md"]
    restored = [text for uri, text in zip(documents.column("uri").to_pylist(), documents.column("text").to_pylist())
                if uri in {"page00.md", "page01.md", "page02.md"}]
    assert len(restored) == 3 and all(FOOTER in text for text in restored)


def test_stored_state_keeps_other_sources_and_only_its_newest_version(tmp_path):
    store = Store(StoreConfig(uri=str(tmp_path / "store")))

    def state(source: str, docs: int) -> pa.Table:
        return pa.Table.from_pylist([{"source": source, "doc_id": f"{source}{i}", "content_hash": "h",
                                      "line_hashes": [f"{i:016x}"]} for i in range(docs)], schema=LINE_HASHES)

    save_line_hashes(store, Boilerplate({}, state("a", 2), pa.table({}), ["a"]))
    for docs in (3, 4):
        time.sleep(1.1)  # versions older than a second are removed
        save_line_hashes(store, Boilerplate({}, state("b", docs), pa.table({}), ["b"]))
    assert stored_line_hashes(store, ["a"]).equals(state("a", 2))
    assert stored_line_hashes(store, ["b"]).equals(state("b", 4))
    assert len(store.table(LINE_HASHES_TABLE).list_versions()) == 1


def code(i: int) -> str:
    return f"sub handler{i} {{\n    my ($request{i}) = @_;\n    if ($request{i}) {{\n        return {i};\n    }}\n}}"


def write_html_pages(root: Path, footer: str) -> Source:
    """Three asciidoc-like pages, each with an indented Perl block; `footer` on every page."""
    root.mkdir()
    for i in range(3):
        (root / f"page{i}.html").write_text(
            f"<html><head><title>gitweb{i}(5)</title></head><body><div id='content'>"
            f"<h2>CONFIGURATION {i}</h2><p>Topic {i}: the configuration file is a Perl fragment.</p>"
            f"<div class='listingblock'><div class='content'><pre><code>{code(i)}</code></pre></div></div>"
            f"<p>{footer}</p></div></body></html>"
        )
    return source_config(name="docs", kind="files", path=root, include=["*.html"])


def test_code_keeps_its_indentation_with_and_without_boilerplate_removed(tmp_path):
    for footer in (FOOTER, ""):  # a footer on every page, removed as boilerplate; or none to remove
        source = write_html_pages(tmp_path / f"footer{len(footer)}", footer)
        _, boilerplate, documents, _ = run(source, LINE_HASHES.empty_table())
        assert boilerplate.lines.get("docs", frozenset()) == ({line_hash(FOOTER)} if footer else frozenset())
        for uri, text in zip(documents.column("uri").to_pylist(), documents.column("text").to_pylist()):
            assert "Perl fragment" in text and FOOTER not in text
            assert code(int(uri[4])) in text  # "    my ($request0)", "        return 0;" as written
