"""The ingest flow reads content, not site chrome: real Prefect runs and LanceDB tables, test embedder."""

from __future__ import annotations

import lancedb
import pytest

from kbflow.config import load_config
from kbflow.flows.ingest import ingest

from conftest import DOCS_SOURCE, write, write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")

NAV = (
    '<div class="navheader"><table><tr><td><a accesskey="p" href="a.html">Prev</a></td>'
    '<td><a accesskey="u" href="up.html">Up</a></td><th>Chapter 3. Storage</th>'
    '<td><a accesskey="h" href="index.html">Home</a></td><td><a accesskey="n" href="c.html">Next</a></td></tr></table></div>'
)
FOOTER = "Edit this page on the project wiki."


def page(title: str, body: str) -> str:
    return f"<html><head><title>{title}</title></head><body>{NAV}{body}{NAV.replace('navheader', 'navfooter')}</body></html>"


def chunks_of(config_path) -> list[dict]:
    return lancedb.connect(load_config(config_path).store.uri).open_table("chunks").to_arrow().to_pylist()


def test_navigation_and_boilerplate_never_reach_the_index(tmp_path, hash_embedder):
    files = {
        "docs/nav-only.html": page("3. Storage", '<div class="toc"><dl><dt><a href="s.html">3.1. Volumes</a></dt></dl></div>'),
        "docs/volumes.html": page("3.1. Volumes", '<div class="sect1"><h2>3.1. Volumes</h2><p>Volumes hold the data files.</p>'
                                  '<div class="note"><h3 class="title">Note</h3><p>Resize volumes offline.</p></div></div>'),
    }
    files |= {f"docs/topic{i}.md": f"# Topic {i}\n\nTopic {i} covers its own subject.\n\n{FOOTER}\n" for i in range(5)}
    write(tmp_path, files)
    config = write_config(tmp_path, DOCS_SOURCE)
    report = ingest(config_path=str(config))
    assert report["status"] == "published"
    chunks = chunks_of(config)
    texts = [chunk["text"] for chunk in chunks]
    assert any("Topic 0 covers its own subject." in text for text in texts)  # the control: pages were indexed
    assert not any(word in text for text in texts for word in ("Prev", "Home", "Chapter 3"))
    assert "nav-only.html" not in {chunk["uri"] for chunk in chunks}
    assert not any(FOOTER in text for text in texts)
    volumes = [chunk for chunk in chunks if chunk["uri"] == "volumes.html"]
    assert [chunk["heading"] for chunk in volumes] == ["3.1. Volumes"]
    assert "Note: Resize volumes offline." in volumes[0]["text"]

    before = {chunk["uri"]: chunk["chunk_id"] for chunk in chunks}
    (tmp_path / "docs/topic0.md").write_text(f"# Topic 0\n\nTopic 0 was rewritten.\n\n{FOOTER}\n")
    hash_embedder.encoded.clear()
    report = ingest(config_path=str(config))
    after = {chunk["uri"]: chunk["chunk_id"] for chunk in chunks_of(config)}
    assert report["documents"]["changed"] == 1
    assert {uri for uri in after if after[uri] != before.get(uri)} == {"topic0.md"}
    assert len(hash_embedder.encoded) == 1 and FOOTER not in hash_embedder.encoded[0]
