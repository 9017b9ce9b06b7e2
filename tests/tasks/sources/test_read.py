from __future__ import annotations

from kbflow.config import source_config
from kbflow.tasks.sources.discover import discover_source
from kbflow.tasks.sources.read import parse_documents

from conftest import write


def test_a_file_rewritten_between_discovery_and_reading_is_set_aside_as_changed_while_read(tmp_path):
    """Issue 26 #18: the half-written text was judged by the quality gate (`text_to_bytes 0.17 < 0.20`)."""
    write(tmp_path, {"docs/steady.md": "# Steady\n\nThis one stays as it was.\n",
                     "docs/moving.md": "# Moving\n\nThe first version of the text.\n"})
    source = source_config(name="docs", kind="files", path=tmp_path / "docs")
    items = discover_source(source, 50_000_000).items
    (tmp_path / "docs/moving.md").write_bytes(b"\x00" * 40)  # a writer caught halfway
    documents, quarantined = parse_documents(items, [source])
    assert documents.column("uri").to_pylist() == ["steady.md"]  # the control: an unchanged file parses
    (record,) = quarantined
    assert (record.uri, record.stage, record.reason) == ("moving.md", "parse", "changed_while_read")
    assert "next run" in record.detail
