"""Source kinds through a real ingest: a kind defined here, outside kbflow, plugged in with one
registration; a file whose name is not UTF-8; byte-identical documents (issue 26 #3, #12)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import Field

from kbflow.config import ConfigError, load_config, register_source_kind, unregister_source_kind
from kbflow.flows.ingest import ingest
from kbflow.formats import file_format
from kbflow.search import search
from kbflow.sources.base import Content, Discovery, SourceBase
from kbflow.store import Store

from conftest import DOCS_SOURCE, write, write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


class InlineSource(SourceBase):
    """A test-only kind: documents written in the config itself (`pages = {uri = "text"}`)."""

    kind: Literal["inline"]
    pages: dict[str, str] = Field(default_factory=dict)

    def discover(self, max_file_bytes: int, known_documents=None, cursor: str | None = None) -> Discovery:
        rows = [self.item(uri, uri, file_format(uri), hashlib.sha256(text.encode()).hexdigest(), len(text), 0.0)
                for uri, text in sorted(self.pages.items())]
        return self.discovered(rows, [], set())

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        for item in items:
            yield item, self.pages[item["uri"]].encode()

    def fingerprint(self) -> tuple:
        return tuple(sorted(self.pages.items()))


@pytest.fixture(autouse=True, scope="module")
def inline_kind():
    """The kind exists for this module's tests only: every other test sees kbflow's own kinds."""
    register_source_kind(InlineSource)
    yield
    unregister_source_kind("inline")

INLINE_SOURCE = """
[[sources]]
name = "inline"
kind = "inline"
tenant = "public"
[sources.pages]
"tides.md" = "# Tides\\n\\nThe harbour gate closes two hours before low tide."
"ferries.md" = "# Ferries\\n\\nThe morning ferry leaves the north quay at seven."
"""


def test_a_kind_defined_outside_kbflow_ingests_and_is_searchable(tmp_path, hash_embedder):
    config = write_config(tmp_path, INLINE_SOURCE)
    report = ingest(config_path=str(config))
    assert report["status"] == "published" and report["documents"]["new"] == 2
    (hits,) = search(load_config(config), ["harbour gate low tide"], k=5, mode="fts")
    assert hits and hits[0]["uri"] == "tides.md" and hits[0]["source"] == "inline"
    assert ingest(config_path=str(config))["status"] == "no_change"  # its change tokens: the diff as for any kind


def test_a_key_the_kind_does_not_have_is_named_with_the_kinds_that_have_it(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, INLINE_SOURCE.replace('tenant = "public"', 'table = "t"')))
    (line,) = [line for line in str(error.value).splitlines() if "table" in line]
    assert "sources.0.table (source 'inline', kind inline)" in line and 'for sql sources (kind = "sql") only' in line


def test_a_file_name_that_is_not_utf8_is_quarantined_and_the_run_goes_on(tmp_path, hash_embedder):
    """Issue 26 #3: one such name stopped every ingest of its source (make_doc_id could not encode it)."""
    config = write_config(tmp_path, DOCS_SOURCE)
    write(tmp_path, {f"docs/page{i}.md": f"# Page {i}\n\nThe harbour gate closes {i} hours before low tide.\n"
                     for i in range(4)})  # four good files: one set aside stays under max_quarantined_share
    (tmp_path / "docs").joinpath(b"caf\xe9.md".decode("utf-8", "surrogateescape")).write_text("# Caf\n\nCoffee.\n")
    report = ingest(config_path=str(config))
    assert report["status"] == "published" and report["documents"]["new"] == 4
    assert report["documents"]["quarantined"] == 1
    (record,) = Store(load_config(config).store).quarantine()
    assert record["reason"] == "bad_file_name" and record["uri"] == "caf\\xe9.md"
    assert "caf\\xe9.md" in record["detail"] and "rename" in record["detail"]


def test_byte_identical_documents_are_indexed_once_and_counted(tmp_path, hash_embedder):
    """Issue 26 #12: git-doc's index.html is git.html byte for byte; both were indexed."""
    page = "# Git\n\nGit is a fast, scalable, distributed revision control system.\n"
    write(tmp_path, {"docs/git.md": page, "docs/index.md": page, "docs/other.md": "# Other\n\nSomething else.\n"})
    config = write_config(tmp_path, DOCS_SOURCE)
    report = ingest(config_path=str(config))
    assert report["status"] == "published" and report["documents"]["new"] == 2
    assert report["documents"]["duplicate"] == 1
    assert report["duplicates"] == [{"source": "docs", "uri": "index.md", "same_as": "git.md"}]
    store = Store(load_config(config).store)
    assert {row["uri"] for row in store.documents(["docs"]).to_pylist()} == {"git.md", "other.md"}
    (last,) = store.runs(limit=1)
    assert json.loads(last["documents"])["duplicate"] == 1
    again = ingest(config_path=str(config))
    assert again["status"] == "no_change" and again["documents"]["duplicate"] == 1
